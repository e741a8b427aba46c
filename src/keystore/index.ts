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
import { TpmSigner } from './tpm.js';
import type { KeyRef } from './key-ref.js';

export type { DeviceSignatureAlgorithm, DeviceSigner, KeyStorage, Signer, SignatureAlgorithm } from './signer.js';
export { isIdentitySigner } from './signer.js';
export { SoftwareSigner } from './software.js';
export { PemKeySigner, type RsaSignatureAlgorithm } from './pem-key.js';
export { Pkcs11Signer, type Pkcs11KeyRef } from './pkcs11.js';
export { formatPkcs11Uri, parsePkcs11Uri, type Pkcs11Uri } from './pkcs11/uri.js';
export { TpmSigner, identityKeyTemplate, tss2PemOfRef, type TpmKeyRef } from './tpm.js';
export { TpmAccess, TpmAccesses } from './tpm-access.js';
export { readTss2Pem, writeTss2Pem, type Tss2Key } from './tss2-pem.js';
export { parseKeyRef, serializeKeyRef, withTcti, type KeyRef } from './key-ref.js';

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
 * A new software identity key (ECDSA P-256) and its reference. Keys on a PKCS#11 token or a TPM
 * are made by {@link createPkcs11Signer} and {@link createTpmSigner}: the device makes them, off
 * the event loop where it can.
 */
export function createSigner(storage: 'software'): { signer: Signer; ref: KeyRef } {
  if (storage !== 'software') throw new TypeError(`createSigner: unsupported storage ${String(storage)}`);
  const signer = SoftwareSigner.generate();
  return { signer, ref: { storage: 'software', pkcs8Pem: signer.toPkcs8Pem() } };
}

/**
 * A new identity key (ECDSA P-256) on a PKCS#11 token, generated off the event loop where the
 * module allows threads (key generation on a smart card takes seconds; a daemon must not stall).
 */
export async function createPkcs11Signer(opts: Pkcs11KeyOptions): Promise<{ signer: Signer; ref: KeyRef }> {
  const signer = (await Pkcs11Signer.generateAsync(opts)) as Pkcs11Signer & Signer; // P-256 (ES256)
  return { signer, ref: signer.ref };
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
