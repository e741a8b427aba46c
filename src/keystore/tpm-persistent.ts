/**
 * A device key living at a TPM *persistent handle* — the IDevID key `sigil factory provision`
 * makes persistent at 0x81000100 — as a {@link DeviceSigner}. The key never leaves the TPM
 * (`exportable: false`); the signer only asks TPM2_Sign (Part 3 §20.2) for signatures over
 * digests it computes itself, which a non-restricted signing key accepts.
 *
 * Named in the agent config as an RFC 7512-like URI or a block:
 *
 *   key_uri: "tpm:handle=0x81000100;tcti=device:/dev/tpmrm0"
 *   tpm: { handle: 0x81000100, tcti: "swtpm:host=127.0.0.1,port=2321" }
 *
 * The TPM is opened per operation and closed after (keystore/tpm-access.ts TpmAccess.run, which
 * also serialises the holder's operations on the TCTI): joins are rare, and a TPM without a
 * resource manager (swtpm, /dev/tpm0) serves one client at a time, so holding it open between
 * joins would lock out the tpm method, tpm2-tools and OpenSSL's tpm2 provider.
 *
 * `expectedSpki` lets the x509 config build the signer without touching the TPM (the agent
 * starts offline and fast); the key at the handle is checked against it at first use and a
 * different key is refused (`config_invalid`), never used.
 */
import { createHash } from 'node:crypto';
import { SigilError } from '../errors.js';
import { TPMA_OBJECT, TPM_ALG, TPM_ECC_CURVE } from '../tpm/constants.js';
import { eccSignatureToDer } from '../tpm/crypto/signature.js';
import { TPM_RC, isTpmRc } from '../tpm/errors.js';
import { publicKeySpki } from '../tpm/structures/keys.js';
import { isEccSignature, isRsaSignature } from '../tpm/structures/signature.js';
import type { Tpm, TpmKey } from '../tpm/tpm.js';
import type { DeviceSignatureAlgorithm, DeviceSigner } from './signer.js';
import type { TpmAccess } from './tpm-access.js';

export const DEFAULT_TCTI = 'device:/dev/tpmrm0';

export interface TpmPersistentKeyRef {
  /** tpm2-tools TCTI string; default device:/dev/tpmrm0. */
  tcti: string;
  /** Persistent handle, 0x81000000-0x81ffffff. */
  handle: number;
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

export function parseTpmHandle(v: string | number, what = 'TPM handle'): number {
  const n = typeof v === 'number' ? v : /^(0x[0-9a-fA-F]{1,8}|\d{1,10})$/.test(v.trim()) ? Number(v.trim()) : NaN;
  if (!Number.isInteger(n) || n >>> 24 !== 0x81)
    throw new SigilError('config_invalid', `${what} ${String(v)} is not a persistent handle (0x81xxxxxx)`);
  return n;
}

/** `tpm:handle=0x81000100;tcti=swtpm:host=127.0.0.1,port=2321` (tcti last: it may hold any character but ';'). */
export function parseTpmKeyUri(uri: string): TpmPersistentKeyRef {
  if (!uri.startsWith('tpm:')) throw new SigilError('config_invalid', 'a TPM key URI starts with "tpm:"');
  let handle: number | undefined;
  let tcti: string | undefined;
  for (const part of uri
    .slice(4)
    .split(';')
    .filter((p) => p.length > 0)) {
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    const v = eq < 0 ? '' : part.slice(eq + 1);
    if (k === 'handle') handle = parseTpmHandle(v, 'key_uri handle');
    else if (k === 'tcti') tcti = v;
    else throw new SigilError('config_invalid', `TPM key URI: unknown attribute "${k.slice(0, 20)}" (handle, tcti)`);
  }
  if (handle === undefined) throw new SigilError('config_invalid', 'TPM key URI needs handle=0x81…');
  return { handle, tcti: tcti || DEFAULT_TCTI };
}

interface KeyFacts {
  key: TpmKey;
  spki: Buffer;
  algorithm: DeviceSignatureAlgorithm;
}

function algorithmOf(key: TpmKey, where: string): DeviceSignatureAlgorithm {
  const pub = key.public.value;
  const a = pub.objectAttributes;
  if (!(a & TPMA_OBJECT.sign) || a & TPMA_OBJECT.restricted || a & TPMA_OBJECT.decrypt) {
    throw new SigilError(
      'unsupported_key',
      `the TPM key at ${where} is not a non-restricted signing key (attributes 0x${a.toString(16)})`,
    );
  }
  if (pub.type === TPM_ALG.ECC) {
    if (pub.parameters.curveId === TPM_ECC_CURVE.NIST_P256) return 'ES256';
    if (pub.parameters.curveId === TPM_ECC_CURVE.NIST_P384) return 'ES384';
    throw new SigilError(
      'unsupported_key',
      `the TPM key at ${where} is on an unsupported curve (0x${pub.parameters.curveId.toString(16)})`,
    );
  }
  if (pub.type === TPM_ALG.RSA) return 'RS256';
  throw new SigilError('unsupported_key', `the TPM key at ${where} is neither ECC nor RSA`);
}

export class TpmPersistentSigner implements DeviceSigner {
  readonly storage = 'tpm' as const;
  readonly exportable = false as const;
  readonly algorithm: DeviceSignatureAlgorithm;
  readonly ref: TpmPersistentKeyRef;
  readonly #spki: Buffer;
  #checked = false;
  /** The TPM the key lives in, as the holder of this signer reaches it. */
  readonly access: TpmAccess;

  private constructor(
    ref: TpmPersistentKeyRef,
    spki: Buffer,
    algorithm: DeviceSignatureAlgorithm,
    checked: boolean,
    access: TpmAccess,
  ) {
    this.ref = ref;
    this.access = access;
    this.#spki = spki;
    this.algorithm = algorithm;
    this.#checked = checked;
  }

  /**
   * Open the TPM now, read the key and check it can sign. `access` is the holder's access to
   * the TPM at `ref.tcti`.
   */
  static async open(ref: TpmPersistentKeyRef, access: TpmAccess): Promise<TpmPersistentSigner> {
    const tpm = accessFor(ref, access);
    const probe = new TpmPersistentSigner(ref, Buffer.alloc(0), 'ES256', true, tpm);
    const facts = await tpm.run((t) => probe.#read(t));
    return new TpmPersistentSigner(ref, facts.spki, facts.algorithm, true, tpm);
  }

  /**
   * A signer for the key the device certificate names, without opening the TPM yet: the key
   * at the handle is checked against `expectedSpki` on first use. `algorithm` follows the SPKI.
   */
  static forCertificateKey(
    ref: TpmPersistentKeyRef,
    expectedSpki: Buffer,
    algorithm: DeviceSignatureAlgorithm,
    access: TpmAccess,
  ): TpmPersistentSigner {
    return new TpmPersistentSigner(ref, Buffer.from(expectedSpki), algorithm, false, accessFor(ref, access));
  }

  publicKeySpki(): Buffer {
    return Buffer.from(this.#spki);
  }

  async #read(tpm: Tpm): Promise<KeyFacts> {
    const where = `${hex(this.ref.handle)} (${this.ref.tcti})`;
    let key: TpmKey;
    try {
      key = await tpm.readPublic(this.ref.handle);
    } catch (e) {
      if (isTpmRc(e, TPM_RC.HANDLE))
        throw new SigilError(
          'config_invalid',
          `no key at TPM handle ${where}; was the device provisioned (sigil factory provision)?`,
        );
      throw e;
    }
    const algorithm = algorithmOf(key, where);
    const spki = publicKeySpki(key.public.value);
    if (!this.#checked && !spki.equals(this.#spki)) {
      throw new SigilError(
        'config_invalid',
        `the TPM key at ${where} is not the key of the device certificate (their public keys differ)`,
      );
    }
    return { key, spki, algorithm };
  }

  /** The key's public area and Name, as TPM2_Certify needs them (the tpm+x509 binding). */
  async key(tpm: Tpm): Promise<TpmKey> {
    const facts = await this.#read(tpm);
    this.#checked = true;
    return facts.key;
  }

  sign(data: Buffer): Promise<Buffer> {
    return this.access.run((tpm) => this.signWith(tpm, data));
  }

  /** Sign on an already open TPM (the caller holds the connection). */
  async signWith(tpm: Tpm, data: Buffer): Promise<Buffer> {
    const { key } = await this.#read(tpm);
    this.#checked = true;
    const [hash, hashAlg] =
      this.algorithm === 'ES384' ? (['sha384', TPM_ALG.SHA384] as const) : (['sha256', TPM_ALG.SHA256] as const);
    const digest = createHash(hash).update(data).digest();
    const scheme =
      key.public.value.type === TPM_ALG.RSA ? { scheme: TPM_ALG.RSASSA, hashAlg } : { scheme: TPM_ALG.ECDSA, hashAlg };
    const sig = await tpm.sign(key, digest, scheme);
    if (isEccSignature(sig)) return eccSignatureToDer(sig);
    if (isRsaSignature(sig)) return Buffer.from(sig.sig);
    throw new SigilError('keystore_error', `the TPM returned a signature of algorithm 0x${sig.sigAlg.toString(16)}`);
  }
}

function accessFor(ref: TpmPersistentKeyRef, access: TpmAccess): TpmAccess {
  if (access.tcti !== ref.tcti)
    throw new TypeError(`TpmPersistentSigner: the TpmAccess is for ${access.tcti}, the key for ${ref.tcti}`);
  return access;
}
