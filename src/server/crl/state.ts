/**
 * The CRL's persisted state in the data directory, `crl/`:
 *
 *   crl/state.json     {"crl_number": "<decimal>", "this_update": "<ISO>"} — the last number used
 *   crl/current.crl    the last CRL signed (DER), for local consumers and `ctl ca crl --cached`
 *
 * cRLNumber must increase monotonically for a CRL issuer (RFC 5280 §5.2.3). The next number is
 * max(now in ms, last + 1): it increases across restarts (the file), across a lost data
 * directory restored from backup (the clock), and between a running issuer and `sigil ctl ca crl`
 * signing one locally (both read and write this file).
 *
 * That alone let two workers (`server start --workers N`) or two issuers sharing an intermediate
 * sign different CRLs with one number (both read the same clock millisecond). So the number is
 * finally TAKEN from the store (takeCrlNumber): a counter per CRL issuer, bumped atomically, at
 * least the file/clock number above — never the same twice, across processes and issuers (issue
 * #15; store/issuer-registry-types.ts nextCrlNumber).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SigilError } from '../../errors.js';
import { subjectNameDer } from '../../pki/name.js';
import { ensureDir, writeFileAtomic } from '../../util/atomic-file.js';
import type { Stores } from '../store/types.js';

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

/** The store's counter key of a CRL issuer: its subject Name (RFC 5280 §5.2.3 numbers per CRL issuer). */
export function crlIssuerKey(caCertDer: Buffer): string {
  return 'crl:' + createHash('sha256').update(subjectNameDer(caCertDer)).digest('hex');
}

/** The number for the next CRL of `caCertDer`: from the store's counter, at least `atLeast`. */
export async function takeCrlNumber(stores: Stores, caCertDer: Buffer, atLeast: bigint): Promise<bigint> {
  const floor = atLeast > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Math.max(1, Number(atLeast));
  return BigInt(await stores.issuers.nextCrlNumber(crlIssuerKey(caCertDer), floor));
}
