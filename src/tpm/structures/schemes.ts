/**
 * Algorithm parameter unions (Part 2 §11.1 symmetric, §11.2 asymmetric, §11.1.19 keyed hash).
 * Each TPMT_*_SCHEME is a discriminated union on its selector, so a scheme that needs a hash
 * cannot be written without one.
 */
import { TPM_ALG } from '../constants.js';
import type { TpmReader } from '../marshal.js';
import { codec } from './codec.js';
import type { Codec } from './codec.js';

type A = typeof TPM_ALG;
type Null = A['NULL'];

// ---------------------------------------------------------------- symmetric (§11.1)

export type BlockCipherAlg = A['AES'] | A['SM4'] | A['CAMELLIA'];

/** Part 2 §11.1.7 TPMT_SYM_DEF_OBJECT: a storage key's or a symcipher's block cipher. */
export type TpmtSymDefObject = { algorithm: Null } | { algorithm: BlockCipherAlg; keyBits: number; mode: number };

/** Part 2 §11.1.6 TPMT_SYM_DEF: as above, plus XOR obfuscation (a session's parameter encryption). */
export type TpmtSymDef = TpmtSymDefObject | { algorithm: A['XOR']; hashAlg: number };

function isBlockCipher(alg: number): alg is BlockCipherAlg {
  return alg === TPM_ALG.AES || alg === TPM_ALG.SM4 || alg === TPM_ALG.CAMELLIA;
}

/**
 * Part 2 §11.1.3 TPMI_AES_KEY_BITS, TPMI_SM4_KEY_BITS, TPMI_CAMELLIA_KEY_BITS: interface types
 * whose only values are the key sizes a TPM implements (a TPM answers TPM_RC_VALUE otherwise).
 * Checked here because the verifier derives keys from a public area an agent sent (an EK's
 * symmetric definition sizes MakeCredential's AES key, Part 1 §24).
 */
const KEY_BITS: Readonly<Record<BlockCipherAlg, readonly number[]>> = {
  [TPM_ALG.AES]: [128, 192, 256],
  [TPM_ALG.SM4]: [128],
  [TPM_ALG.CAMELLIA]: [128, 192, 256],
};

function readKeyBits(r: TpmReader, algorithm: BlockCipherAlg, field: string): number {
  const bits = r.u16(field);
  if (!KEY_BITS[algorithm].includes(bits))
    r.fail(`${field} ${bits} is not a key size of algorithm 0x${algorithm.toString(16)}`);
  return bits;
}

export const tpmtSymDefObject: Codec<TpmtSymDefObject> = codec(
  'TPMT_SYM_DEF_OBJECT',
  (r) => {
    const algorithm = r.u16('TPMT_SYM_DEF_OBJECT.algorithm');
    if (algorithm === TPM_ALG.NULL) return { algorithm };
    if (!isBlockCipher(algorithm)) return r.fail(`unsupported symmetric algorithm 0x${algorithm.toString(16)}`);
    return {
      algorithm,
      keyBits: readKeyBits(r, algorithm, 'TPMT_SYM_DEF_OBJECT.keyBits'),
      mode: r.u16('TPMT_SYM_DEF_OBJECT.mode'),
    };
  },
  (w, v) => {
    w.u16(v.algorithm);
    if (v.algorithm !== TPM_ALG.NULL) w.u16(v.keyBits).u16(v.mode);
  },
);

export const tpmtSymDef: Codec<TpmtSymDef> = codec(
  'TPMT_SYM_DEF',
  (r) => {
    const algorithm = r.u16('TPMT_SYM_DEF.algorithm');
    if (algorithm === TPM_ALG.XOR) return { algorithm, hashAlg: r.u16('TPMT_SYM_DEF.keyBits.xor') };
    if (algorithm === TPM_ALG.NULL) return { algorithm };
    if (!isBlockCipher(algorithm))
      return r.fail(`TPMT_SYM_DEF: unsupported symmetric algorithm 0x${algorithm.toString(16)}`);
    return { algorithm, keyBits: readKeyBits(r, algorithm, 'TPMT_SYM_DEF.keyBits'), mode: r.u16('TPMT_SYM_DEF.mode') };
  },
  (w, v) => {
    w.u16(v.algorithm);
    if (v.algorithm === TPM_ALG.XOR) w.u16(v.hashAlg);
    else if (v.algorithm !== TPM_ALG.NULL) w.u16(v.keyBits).u16(v.mode);
  },
);

/** AES-128-CFB, the storage-key and session default. */
export const AES_128_CFB: TpmtSymDefObject = { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB };
export const SYM_NULL: TpmtSymDefObject = { algorithm: TPM_ALG.NULL };

// ---------------------------------------------------------------- KDF (§11.2.3)

export type KdfAlg = A['MGF1'] | A['KDF1_SP800_56A'] | A['KDF2'] | A['KDF1_SP800_108'];

/** Part 2 §11.2.3.3 TPMT_KDF_SCHEME. */
export type TpmtKdfScheme = { scheme: Null } | { scheme: KdfAlg; hashAlg: number };

const KDFS: ReadonlySet<number> = new Set([TPM_ALG.MGF1, TPM_ALG.KDF1_SP800_56A, TPM_ALG.KDF2, TPM_ALG.KDF1_SP800_108]);

export const tpmtKdfScheme: Codec<TpmtKdfScheme> = codec(
  'TPMT_KDF_SCHEME',
  (r) => {
    const scheme = r.u16('TPMT_KDF_SCHEME.scheme');
    if (scheme === TPM_ALG.NULL) return { scheme };
    if (!KDFS.has(scheme)) return r.fail(`unsupported KDF 0x${scheme.toString(16)}`);
    return { scheme: scheme as KdfAlg, hashAlg: r.u16('TPMT_KDF_SCHEME.hashAlg') };
  },
  (w, v) => {
    w.u16(v.scheme);
    if (v.scheme !== TPM_ALG.NULL) w.u16(v.hashAlg);
  },
);

// ---------------------------------------------------------------- asymmetric schemes (§11.2)

export type RsaHashSchemeAlg = A['RSASSA'] | A['RSAPSS'] | A['OAEP'];
/** Part 2 §11.2.4.2 TPMT_RSA_SCHEME. */
export type TpmtRsaScheme = { scheme: Null } | { scheme: A['RSAES'] } | { scheme: RsaHashSchemeAlg; hashAlg: number };

export type EccHashSchemeAlg = A['ECDSA'] | A['ECDH'] | A['ECSCHNORR'] | A['SM2'] | A['ECMQV'];
/** Part 2 §11.2.5.6 TPMT_ECC_SCHEME. */
export type TpmtEccScheme =
  | { scheme: Null }
  | { scheme: EccHashSchemeAlg; hashAlg: number }
  | { scheme: A['ECDAA']; hashAlg: number; count: number };

export type SigHashSchemeAlg = A['RSASSA'] | A['RSAPSS'] | A['ECDSA'] | A['ECSCHNORR'] | A['SM2'] | A['HMAC'];
/** Part 2 §11.2.1.5 TPMT_SIG_SCHEME. */
export type TpmtSigScheme =
  | { scheme: Null }
  | { scheme: SigHashSchemeAlg; hashAlg: number }
  | { scheme: A['ECDAA']; hashAlg: number; count: number };

/** Part 2 §11.1.21 TPMT_KEYEDHASH_SCHEME. */
export type TpmtKeyedHashScheme =
  { scheme: Null } | { scheme: A['HMAC']; hashAlg: number } | { scheme: A['XOR']; hashAlg: number; kdf: number };

const RSA_HASH: ReadonlySet<number> = new Set([TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.OAEP]);
const ECC_HASH: ReadonlySet<number> = new Set([
  TPM_ALG.ECDSA,
  TPM_ALG.ECDH,
  TPM_ALG.ECSCHNORR,
  TPM_ALG.SM2,
  TPM_ALG.ECMQV,
]);
const SIG_HASH: ReadonlySet<number> = new Set([
  TPM_ALG.RSASSA,
  TPM_ALG.RSAPSS,
  TPM_ALG.ECDSA,
  TPM_ALG.ECSCHNORR,
  TPM_ALG.SM2,
  TPM_ALG.HMAC,
]);

export const tpmtRsaScheme: Codec<TpmtRsaScheme> = codec(
  'TPMT_RSA_SCHEME',
  (r) => {
    const scheme = r.u16('TPMT_RSA_SCHEME.scheme');
    if (scheme === TPM_ALG.NULL || scheme === TPM_ALG.RSAES) return { scheme };
    if (!RSA_HASH.has(scheme)) return r.fail(`unsupported RSA scheme 0x${scheme.toString(16)}`);
    return { scheme: scheme as RsaHashSchemeAlg, hashAlg: r.u16('TPMT_RSA_SCHEME.hashAlg') };
  },
  (w, v) => {
    w.u16(v.scheme);
    if ('hashAlg' in v) w.u16(v.hashAlg);
  },
);

export const tpmtEccScheme: Codec<TpmtEccScheme> = codec(
  'TPMT_ECC_SCHEME',
  (r) => {
    const scheme = r.u16('TPMT_ECC_SCHEME.scheme');
    if (scheme === TPM_ALG.NULL) return { scheme };
    if (scheme === TPM_ALG.ECDAA) return { scheme, hashAlg: r.u16('hashAlg'), count: r.u16('count') };
    if (!ECC_HASH.has(scheme)) return r.fail(`unsupported ECC scheme 0x${scheme.toString(16)}`);
    return { scheme: scheme as EccHashSchemeAlg, hashAlg: r.u16('TPMT_ECC_SCHEME.hashAlg') };
  },
  (w, v) => {
    w.u16(v.scheme);
    if (v.scheme === TPM_ALG.NULL) return;
    w.u16(v.hashAlg);
    if (v.scheme === TPM_ALG.ECDAA) w.u16(v.count);
  },
);

export const tpmtSigScheme: Codec<TpmtSigScheme> = codec(
  'TPMT_SIG_SCHEME',
  (r) => {
    const scheme = r.u16('TPMT_SIG_SCHEME.scheme');
    if (scheme === TPM_ALG.NULL) return { scheme };
    if (scheme === TPM_ALG.ECDAA) return { scheme, hashAlg: r.u16('hashAlg'), count: r.u16('count') };
    if (!SIG_HASH.has(scheme)) return r.fail(`unsupported signature scheme 0x${scheme.toString(16)}`);
    return { scheme: scheme as SigHashSchemeAlg, hashAlg: r.u16('TPMT_SIG_SCHEME.hashAlg') };
  },
  (w, v) => {
    w.u16(v.scheme);
    if (v.scheme === TPM_ALG.NULL) return;
    w.u16(v.hashAlg);
    if (v.scheme === TPM_ALG.ECDAA) w.u16(v.count);
  },
);

export const tpmtKeyedHashScheme: Codec<TpmtKeyedHashScheme> = codec(
  'TPMT_KEYEDHASH_SCHEME',
  (r) => {
    const scheme = r.u16('TPMT_KEYEDHASH_SCHEME.scheme');
    if (scheme === TPM_ALG.NULL) return { scheme };
    if (scheme === TPM_ALG.HMAC) return { scheme, hashAlg: r.u16('hashAlg') };
    if (scheme === TPM_ALG.XOR) return { scheme, hashAlg: r.u16('hashAlg'), kdf: r.u16('kdf') };
    return r.fail(`unsupported keyed-hash scheme 0x${scheme.toString(16)}`);
  },
  (w, v) => {
    w.u16(v.scheme);
    if (v.scheme === TPM_ALG.HMAC) w.u16(v.hashAlg);
    else if (v.scheme === TPM_ALG.XOR) w.u16(v.hashAlg).u16(v.kdf);
  },
);

export const SCHEME_NULL = { scheme: TPM_ALG.NULL } as const;
