/**
 * The stored form of a key reference ({@link KeyRef}): where an identity key lives, as the agent
 * database keeps it. Apart from index.ts so that readers of the state (`sigil agent status`)
 * parse references without loading the PKCS#11 and TPM backends (issue #19).
 */
import { SigilError } from '../errors.js';
import type { Pkcs11KeyRef } from './pkcs11.js';
import type { TpmKeyRef } from './tpm.js';

export type KeyRef = { storage: 'software'; pkcs8Pem: string } | Pkcs11KeyRef | TpmKeyRef;

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
