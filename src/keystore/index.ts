/**
 * Key backends behind one {@link Signer}. The agent stores a {@link KeyRef} — a serialisable
 * pointer to where the key lives — next to its identity, and rebuilds the signer from it on
 * start. For software keys the reference *is* the key (PKCS#8); PKCS#11 references name the
 * module, token and key and where to read the PIN, never the PIN or private material.
 */
import { SigilError } from '../errors.js';
import { Pkcs11Signer, type Pkcs11KeyRef } from './pkcs11.js';
import { isIdentitySigner, type Signer } from './signer.js';
import { SoftwareSigner } from './software.js';
import type { TpmAccess, TpmAccesses } from './tpm-access.js';
import { TpmSigner, type TpmKeyRef } from './tpm.js';

export type { DeviceSignatureAlgorithm, DeviceSigner, KeyStorage, Signer, SignatureAlgorithm } from './signer.js';
export { isIdentitySigner } from './signer.js';
export { SoftwareSigner } from './software.js';
export { PemKeySigner, type RsaSignatureAlgorithm } from './pem-key.js';
export { Pkcs11Signer, type Pkcs11KeyRef } from './pkcs11.js';
export { formatPkcs11Uri, parsePkcs11Uri, type Pkcs11Uri } from './pkcs11/uri.js';
export { TpmSigner, identityKeyTemplate, tss2PemOfRef, type TpmKeyRef } from './tpm.js';
export { TpmAccess, TpmAccesses } from './tpm-access.js';
export { readTss2Pem, writeTss2Pem, type Tss2Key } from './tss2-pem.js';

export type KeyRef = { storage: 'software'; pkcs8Pem: string } | Pkcs11KeyRef | TpmKeyRef;

/** Options for a new PKCS#11 identity key: where to create it; label and id are generated. */
export type Pkcs11KeyOptions = Omit<Pkcs11KeyRef, 'storage' | 'keyLabel' | 'keyId'> & { keyLabel?: string };

/**
 * The signer of a stored reference. `opts.tpm`: the holder's TPMs (a `tpm` reference needs
 * them) — the key then uses the same {@link TpmAccess} as everything else the holder runs on
 * that TPM, never a queue of its own (tpm-access.ts TpmAccesses says why).
 */
export function loadSigner(ref: KeyRef, opts: { tpm?: TpmAccesses } = {}): Signer {
  switch (ref.storage) {
    case 'software':
      return SoftwareSigner.fromPkcs8Pem(ref.pkcs8Pem);
    case 'pkcs11': {
      const s = Pkcs11Signer.open(ref);
      if (!isIdentitySigner(s)) {
        s.close();
        throw new SigilError(
          'unsupported_key',
          `PKCS#11 key ${ref.keyLabel ?? ref.keyId} is ${s.algorithm}; identity keys must be ECDSA P-256 or P-384`,
        );
      }
      return s;
    }
    case 'tpm':
      if (!opts.tpm) throw new TypeError("loadSigner: a TPM key needs the holder's TpmAccesses");
      return TpmSigner.fromRef(ref, opts.tpm.for(ref.tcti));
    default: {
      // A reference written by a newer Sigil, or a corrupted row.
      const storage: unknown = (ref as { storage?: unknown }).storage;
      throw new SigilError('config_invalid', `unknown key storage ${JSON.stringify(storage)}`);
    }
  }
}

/**
 * A new identity key (ECDSA P-256) and its reference. PKCS#11 keys are generated on the token
 * (non-extractable); call {@link removeKey} on the old reference once a renewal replaced it.
 */
export function createSigner(storage: 'software'): { signer: Signer; ref: KeyRef };
export function createSigner(storage: 'pkcs11', opts: Pkcs11KeyOptions): { signer: Signer; ref: KeyRef };
export function createSigner(storage: 'software' | 'pkcs11', opts?: Pkcs11KeyOptions): { signer: Signer; ref: KeyRef } {
  if (storage === 'software') {
    const signer = SoftwareSigner.generate();
    return { signer, ref: { storage: 'software', pkcs8Pem: signer.toPkcs8Pem() } };
  }
  if (storage === 'pkcs11' && opts !== undefined) {
    const signer = Pkcs11Signer.generate(opts) as Pkcs11Signer & Signer; // generate() makes P-256 (ES256)
    return { signer, ref: signer.ref };
  }
  throw new TypeError(`createSigner: unsupported storage ${String(storage)}`);
}

/**
 * A new identity key in the TPM the holder reaches through `access` — ECDSA P-256 under the
 * SRK, non-exportable — and its reference; asynchronous, unlike {@link createSigner}, because
 * the TPM makes the key.
 */
export async function createTpmSigner(access: TpmAccess): Promise<{ signer: Signer; ref: KeyRef }> {
  const signer = await TpmSigner.create(access);
  return { signer, ref: signer.ref };
}

/**
 * Delete a key that is no longer needed (PKCS#11: destroy the objects on the token; software
 * and TPM: nothing to do — a TPM key exists only as its blobs, which the caller forgets).
 * Returns whether something was destroyed; a PKCS#11 key already gone is not an error, so a
 * removal repeated after a crash is harmless.
 */
export function removeKey(ref: KeyRef): boolean {
  return ref.storage === 'pkcs11' ? Pkcs11Signer.remove(ref) : false;
}

/**
 * A stored key reference with the TPM reached through `tcti` (the agent's configured one) rather
 * than the path it was made through: the key blob is bound to the TPM (its SRK), not to the
 * way there, so a switch from tabrmd to the device or back must not strand the identity
 * (issue #12: every renewal failed `keystore_unavailable … tabrmd` after such a switch).
 */
export function withTcti(ref: KeyRef, tcti: string | undefined): KeyRef {
  return ref.storage === 'tpm' && tcti ? { ...ref, tcti } : ref;
}

/** The JSON form stored in the agent database (`Identity.keyRef`, outbox `pendingKeyRef`). */
export function serializeKeyRef(ref: KeyRef): string {
  return JSON.stringify(ref);
}

const PKCS11_FIELDS = ['module', 'tokenLabel', 'keyLabel', 'keyId', 'pinFile', 'pinEnv'] as const;

/** Parse a stored key reference; a malformed one is `config_invalid`, never a raw SyntaxError. */
export function parseKeyRef(json: string): KeyRef {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (err) {
    throw new SigilError('config_invalid', 'stored key reference is not valid JSON', { cause: err });
  }
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (o.storage === 'software' && typeof o.pkcs8Pem === 'string')
      return { storage: 'software', pkcs8Pem: o.pkcs8Pem };
    if (o.storage === 'pkcs11') {
      const ref: Pkcs11KeyRef = { storage: 'pkcs11', module: '', tokenLabel: '' };
      for (const f of PKCS11_FIELDS) {
        if (o[f] === undefined) continue;
        if (typeof o[f] !== 'string')
          throw new SigilError('config_invalid', `stored PKCS#11 key reference: ${f} must be a string`);
        ref[f] = o[f] as string;
      }
      if (!ref.module || !ref.tokenLabel || (ref.keyLabel === undefined && ref.keyId === undefined)) {
        throw new SigilError(
          'config_invalid',
          'stored PKCS#11 key reference needs module, tokenLabel and keyLabel or keyId',
        );
      }
      return ref;
    }
    if (o.storage === 'tpm') return parseTpmKeyRef(o);
    throw new SigilError('config_invalid', `stored key reference has unknown storage ${JSON.stringify(o.storage)}`);
  }
  throw new SigilError('config_invalid', 'stored key reference is not an object');
}

function parseTpmKeyRef(o: Record<string, unknown>): TpmKeyRef {
  const { tcti, parent, publicB64, privateB64 } = o;
  if (typeof tcti !== 'string' || tcti === '' || typeof publicB64 !== 'string' || typeof privateB64 !== 'string') {
    throw new SigilError('config_invalid', 'stored TPM key reference needs tcti, publicB64 and privateB64 strings');
  }
  if (typeof parent !== 'number' || !Number.isInteger(parent) || parent < 0 || parent > 0xffffffff) {
    throw new SigilError('config_invalid', 'stored TPM key reference: parent must be a TPM handle');
  }
  return { storage: 'tpm', tcti, parent, publicB64, privateB64 };
}
