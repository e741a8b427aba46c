/**
 * Secret sharing with a TPM key (Part 1 Annex B.10.3 RSA-OAEP, Annex C.6.4 ECDH): the seed
 * behind a salted session ("SECRET"), MakeCredential ("IDENTITY") and Import ("DUPLICATE").
 *
 *   RSA: encrypted = RSA-OAEP(key, seed, hash = nameAlg, label = "<label>\0")
 *   ECC: ephemeral Q_e on the key's curve; Z = x(d_e · Q_key);
 *        seed = KDFe(nameAlg, Z, label, x(Q_e), x(Q_key), digestBits);
 *        encrypted = TPMS_ECC_POINT(Q_e)
 */
import { constants, createECDH, publicEncrypt, randomBytes } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { TPM_ALG, TPM_ECC_CURVE } from '../constants.js';
import { marshal } from '../structures/codec.js';
import { curveInfo, eccUncompressedPoint, padInt, publicKeyObject } from '../structures/keys.js';
import { tpmsEccPoint } from '../structures/public.js';
import type { TpmtPublic } from '../structures/public.js';
import { digestSize, nodeHashName } from './hash.js';
import { kdfLabel } from './kdfa.js';
import { kdfe } from './kdfe.js';

export interface EncryptedSeed {
  /** The seed in the clear (the caller's secret). */
  seed: Buffer;
  /** The TPM2B_ENCRYPTED_SECRET content. */
  encrypted: Uint8Array;
}

const ECDH_CURVES: Record<number, string> = {
  [TPM_ECC_CURVE.NIST_P256]: 'prime256v1',
  [TPM_ECC_CURVE.NIST_P384]: 'secp384r1',
  [TPM_ECC_CURVE.NIST_P521]: 'secp521r1',
};

/** Make a seed only the TPM holding `key`'s private part can recover. */
export function encryptSeed(key: TpmtPublic, label: string): EncryptedSeed {
  const size = digestSize(key.nameAlg);
  if (key.type === TPM_ALG.RSA) {
    const seed = randomBytes(size);
    const pub = publicKeyObject(key);
    let encrypted: Buffer;
    try {
      encrypted = publicEncrypt(
        {
          key: pub,
          padding: constants.RSA_PKCS1_OAEP_PADDING,
          oaepHash: nodeHashName(key.nameAlg),
          oaepLabel: kdfLabel(label),
        },
        seed,
      );
    } catch (err) {
      // The public area may come from a peer (an EK sent for MakeCredential): OpenSSL refuses
      // an even modulus ("no inverse") or one too small for OAEP with this hash (Part 1 §B.10.3).
      throw new SigilError(
        'unsupported_key',
        `the RSA key cannot receive an OAEP-encrypted seed: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return { seed, encrypted };
  }
  if (key.type === TPM_ALG.ECC) {
    const curve = ECDH_CURVES[key.parameters.curveId];
    if (!curve)
      throw new SigilError('unsupported_key', `ECC curve 0x${key.parameters.curveId.toString(16)} is not supported`);
    const bytes = curveInfo(key.parameters.curveId).bytes;
    const ecdh = createECDH(curve);
    ecdh.generateKeys();
    const z = padInt(ecdh.computeSecret(eccUncompressedPoint(key)), bytes, 'ECDH Z');
    const ephemeral = ecdh.getPublicKey();
    const ex = ephemeral.subarray(1, 1 + bytes);
    const ey = ephemeral.subarray(1 + bytes);
    const seed = kdfe(key.nameAlg, z, label, ex, padInt(key.unique.x, bytes, 'ECC x'), size * 8);
    return { seed, encrypted: marshal(tpmsEccPoint, { x: ex, y: ey }) };
  }
  throw new SigilError('unsupported_key', 'only RSA and ECC keys can receive an encrypted seed');
}
