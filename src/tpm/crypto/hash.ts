/**
 * TPM hash algorithm identifiers ↔ node:crypto names and digest sizes (TCG Algorithm Registry).
 */
import { createHash, createHmac } from 'node:crypto';
import { TPM_ALG, hex32 } from '../constants.js';

interface HashInfo {
  readonly node: string;
  readonly size: number;
}

const HASHES: ReadonlyMap<number, HashInfo> = new Map([
  [TPM_ALG.SHA1, { node: 'sha1', size: 20 }],
  [TPM_ALG.SHA256, { node: 'sha256', size: 32 }],
  [TPM_ALG.SHA384, { node: 'sha384', size: 48 }],
  [TPM_ALG.SHA512, { node: 'sha512', size: 64 }],
  [TPM_ALG.SM3_256, { node: 'sm3', size: 32 }],
  [TPM_ALG.SHA3_256, { node: 'sha3-256', size: 32 }],
  [TPM_ALG.SHA3_384, { node: 'sha3-384', size: 48 }],
  [TPM_ALG.SHA3_512, { node: 'sha3-512', size: 64 }],
]);

export function isHashAlg(alg: number): boolean {
  return HASHES.has(alg);
}

function info(alg: number): HashInfo {
  const h = HASHES.get(alg);
  if (!h) throw new TypeError(`not a TPM hash algorithm: ${hex32(alg)}`);
  return h;
}

/** Node's name for a TPM hash algorithm ("sha256"). */
export function nodeHashName(alg: number): string {
  return info(alg).node;
}

export function digestSize(alg: number): number {
  return info(alg).size;
}

/** The TPM hash algorithm for a node hash name, or undefined. */
export function tpmHashAlg(nodeName: string): number | undefined {
  const n = nodeName.toLowerCase().replace(/^sha-/, 'sha');
  for (const [alg, h] of HASHES) if (h.node === n) return alg;
  return undefined;
}

/** H_alg(parts[0] || parts[1] || …). */
export function hash(alg: number, ...parts: Uint8Array[]): Buffer {
  const h = createHash(info(alg).node);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** HMAC_alg(key, parts[0] || parts[1] || …). */
export function hmac(alg: number, key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac(info(alg).node, key);
  for (const p of parts) h.update(p);
  return h.digest();
}
