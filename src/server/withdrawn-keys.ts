/**
 * The store's memory of withdrawn signing keys (AdminCredentialStore.rememberWithdrawnKey).
 *
 * A compromise rotation (`rotate-key --overlap 0`) lists the keys it withdraws in
 * ca/rotating-keys.json, which is enough for the data directory it ran in. Two cases it cannot
 * reach: a `ca/` restored from a backup taken before the rotation (the list comes back with the
 * stolen key, without the withdrawal), and the other issuers of a shared PostgreSQL store until an
 * operator copies the new files to them. So the rotation also records each withdrawn key in the
 * store, before it writes any file, and:
 *
 *   - `server start` refuses a signing key the store remembers (as it refuses one the list names);
 *   - a running issuer looks at the store with every key poll and halts such a key at once
 *     (./key-reload.ts): on PostgreSQL every issuer stops signing with the stolen key within
 *     seconds of the rotation, before any file is copied;
 *   - `rotate-key` refuses a planned step on such a key (only `--overlap 0` replaces it).
 *
 * Never forgotten: a stolen key must never sign again, and a row is ~100 bytes. A database
 * writer can add rows (halting a kind: a denial of service, which they have anyway) or delete
 * them (back to what the file list alone gives), but cannot make the issuer sign or publish
 * anything: the memory only ever refuses.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import type { RotatableKey } from './rotating-keys.js';
import type { WithdrawnKeyRecord } from './store/types.js';

/** The hex SHA-256 of a key's DER SubjectPublicKeyInfo: how the store names it. */
export function spkiSha256(k: KeyObject): string {
  const pub = k.type === 'private' ? createPublicKey(k) : k;
  return createHash('sha256')
    .update(pub.export({ format: 'der', type: 'spki' }) as Buffer)
    .digest('hex');
}

/** A signing key the store remembers as withdrawn. */
export interface StoreWithdrawal {
  kind: RotatableKey;
  at: number;
}

/** The kinds whose signing key is one of `remembered`. */
export function withdrawnSigningKeys(
  signing: Record<RotatableKey, KeyObject>,
  remembered: readonly WithdrawnKeyRecord[],
): StoreWithdrawal[] {
  if (remembered.length === 0) return [];
  const out: StoreWithdrawal[] = [];
  for (const kind of Object.keys(signing) as RotatableKey[]) {
    const mine = spkiSha256(signing[kind]);
    const hit = remembered.find((r) => r.kind === kind && r.spkiSha256 === mine);
    if (hit) out.push({ kind, at: hit.at });
  }
  return out;
}

/** What to do about it, naming where the memory is. */
export function storeWithdrawalMessage(dir: string, w: StoreWithdrawal): string {
  return `the ${w.kind} signing key in ${join(dir, 'ca')} was withdrawn by a compromise rotation on ${new Date(w.at).toISOString()} (the store remembers it: an issuer not yet given the files the rotation wrote, or a ca/ restored from before it): copy the current key file and ca/rotating-keys.json from the issuer where the rotation ran; only if no issuer has it, make a fresh one: sigil server rotate-key --data-dir ${dir} --key ${w.kind} --overlap 0`;
}
