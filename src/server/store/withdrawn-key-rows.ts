/**
 * How a withdrawn signing key (AdminCredentialStore.rememberWithdrawnKey) is kept in the `settings`
 * table of either backend: key `withdrawn_key:<kind>:<hex sha256 of the SPKI>`, value
 * `{"at": <ms>}`. One row per key, so concurrent compromise rotations only add rows.
 */
import { SigilError } from '../../errors.js';
import type { WithdrawnKeyRecord } from './types.js';

export const WITHDRAWN_KEY_PREFIX = 'withdrawn_key:';
/** A time a Date can hold (ECMA-262 §21.4.1.1): beyond it, toISOString throws. */
const validTime = (at: unknown): at is number =>
  typeof at === 'number' && Number.isSafeInteger(at) && at >= 0 && at <= 8.64e15;
const KINDS = new Set(['jwt', 'ssh-user', 'ssh-host']);

export function withdrawnKeyRow(k: WithdrawnKeyRecord): { key: string; value: string } {
  if (!KINDS.has(k.kind) || !/^[0-9a-f]{64}$/.test(k.spkiSha256) || !validTime(k.at))
    throw new TypeError(`not a withdrawn key record: ${JSON.stringify(k)}`);
  return { key: `${WITHDRAWN_KEY_PREFIX}${k.kind}:${k.spkiSha256}`, value: JSON.stringify({ at: k.at }) };
}

/** A row back; a row that is not one of ours (a database writer's) is refused loudly, not skipped. */
export function withdrawnKeyOf(row: { key: string; value: string }): WithdrawnKeyRecord {
  const [, kind, hash] = /^withdrawn_key:([a-z-]+):([0-9a-f]{64})$/.exec(row.key) ?? [];
  let at: unknown;
  try {
    at = (JSON.parse(row.value) as { at?: unknown }).at;
  } catch {
    at = undefined;
  }
  if (!kind || !KINDS.has(kind) || !hash || !validTime(at))
    throw new SigilError(
      'config_invalid',
      `the store's settings row ${JSON.stringify(row.key)} is not a withdrawn key as rotate-key writes it`,
    );
  return { kind, spkiSha256: hash, at };
}
