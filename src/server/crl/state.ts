/**
 * The CRL's persisted state in the data directory, `crl/`:
 *
 *   crl/state.json     {"crl_number": "<decimal>", "this_update": "<ISO>"} — the last number used
 *   crl/current.crl    the last CRL signed (DER), for local consumers and `ctl ca crl --cached`
 *
 * cRLNumber must increase monotonically for a CRL issuer (RFC 5280 §5.2.3). The next number is
 * max(now in ms, last + 1): it increases across restarts (the file), across a lost data
 * directory restored from backup (the clock), and between a running issuer and `sigil ctl ca crl`
 * signing one locally (both read and write this file). Several issuers sharing one PostgreSQL
 * store and one intermediate each keep their own file; with synchronised clocks their numbers
 * stay in step (docs/crl.md).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SigilError } from '../../errors.js';
import { ensureDir, writeFileAtomic } from '../../util/atomic-file.js';

export interface CrlFiles {
  dir: string;
  state: string;
  current: string;
}

export function crlFiles(dataDir: string): CrlFiles {
  const dir = join(dataDir, 'crl');
  return { dir, state: join(dir, 'state.json'), current: join(dir, 'current.crl') };
}

/** The last cRLNumber used, 0n when none was. */
export function lastCrlNumber(files: CrlFiles): bigint {
  if (!existsSync(files.state)) return 0n;
  try {
    const s = JSON.parse(readFileSync(files.state, 'utf8')) as { crl_number?: unknown };
    if (typeof s.crl_number === 'string' && /^\d{1,40}$/.test(s.crl_number)) return BigInt(s.crl_number);
  } catch {
    // fall through: an unreadable state must not silently restart the numbering at 0
  }
  throw new SigilError(
    'config_invalid',
    `${files.state} is not a CRL state file; restore it or remove it (numbering then continues from the clock)`,
  );
}

/** The number for a CRL made at `now` (see the file comment). */
export function nextCrlNumber(files: CrlFiles, now: number): bigint {
  const last = lastCrlNumber(files);
  const fromClock = BigInt(Math.floor(now));
  return fromClock > last ? fromClock : last + 1n;
}

/** Record a signed CRL: the number first, so a crash in between never reuses it. */
export function recordCrl(files: CrlFiles, der: Buffer, crlNumber: bigint, thisUpdate: number): void {
  ensureDir(files.dir, 0o700);
  writeFileAtomic(
    files.state,
    JSON.stringify({ crl_number: crlNumber.toString(), this_update: new Date(thisUpdate).toISOString() }) + '\n',
    { mode: 0o600 },
  );
  writeFileAtomic(files.current, der, { mode: 0o644 });
}
