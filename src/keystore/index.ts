/**
 * Key backends behind one {@link Signer}. The agent stores a {@link KeyRef} — a serialisable
 * pointer to where the key lives — next to its identity, and rebuilds the signer from it on
 * start. For software keys the reference *is* the key (PKCS#8); TPM and PKCS#11 references
 * (a handle or a token URI) join this union later and never contain private material.
 */
import { SigilError } from '../errors.js';
import type { Signer } from './signer.js';
import { SoftwareSigner } from './software.js';

export type { KeyStorage, Signer, SignatureAlgorithm } from './signer.js';
export { SoftwareSigner } from './software.js';

export type KeyRef = { storage: 'software'; pkcs8Pem: string };

export function loadSigner(ref: KeyRef): Signer {
  switch (ref.storage) {
    case 'software':
      return SoftwareSigner.fromPkcs8Pem(ref.pkcs8Pem);
    default: {
      // A reference written by a newer Sigil, or a corrupted row.
      const storage: unknown = (ref as { storage?: unknown }).storage;
      throw new SigilError('config_invalid', `unknown key storage ${JSON.stringify(storage)}`);
    }
  }
}

export function createSigner(storage: 'software'): { signer: Signer; ref: KeyRef } {
  if (storage !== 'software') throw new TypeError(`createSigner: unsupported storage ${String(storage)}`);
  const signer = SoftwareSigner.generate();
  return { signer, ref: { storage: 'software', pkcs8Pem: signer.toPkcs8Pem() } };
}

/** The JSON form stored in the agent database (`Identity.keyRef`, outbox `pendingKeyRef`). */
export function serializeKeyRef(ref: KeyRef): string {
  return JSON.stringify(ref);
}

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
    if (o.storage === 'software' && typeof o.pkcs8Pem === 'string') return { storage: 'software', pkcs8Pem: o.pkcs8Pem };
    throw new SigilError('config_invalid', `stored key reference has unknown storage ${JSON.stringify(o.storage)}`);
  }
  throw new SigilError('config_invalid', 'stored key reference is not an object');
}
