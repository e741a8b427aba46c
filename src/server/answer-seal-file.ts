/**
 * `<data-dir>/answer-seal.json`: since when this data directory's issuer seals the answers it
 * stores (ops/answer-seal.ts). Answers stored before that have no seal and are replayed only
 * when older than this time and within the retention; the time must survive restarts (else a
 * database writer could plant an unsealed row dated just before any restart), so it lives in the
 * data directory beside audit.key, outside the database, and is written once, never replaced.
 *
 * Format: {"v":1,"since":"<ISO time>"}. `server init` writes it with since = 0 (no legacy rows),
 * `server add-issuer` copies the first issuer's, and a directory from before sealing gets it
 * (since = then) at its next `server start`.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { SigilError } from '../errors.js';
import { createFileExclusive } from '../util/atomic-file.js';
import type { AuditKey } from './audit/audit-key.js';
import { AnswerSeal } from './ops/answer-seal.js';

export const ANSWER_SEAL_FILE = 'answer-seal.json';

/**
 * The seal of the issuer serving `dir`. A directory from before sealing gets the file at its
 * first start (since = `now`). `since` is never taken later than `now`: a clock that ran fast
 * when the file was written must not keep the legacy window open.
 */
export function ensureAnswerSeal(dir: string, auditKey: AuditKey, now: number): AnswerSeal {
  let since = readAnswerSealSince(dir);
  if (since === undefined) {
    writeAnswerSealFile(dir, now);
    // Created here, or by a racing process a moment ago: read what won.
    since = readAnswerSealSince(dir)!;
  }
  return new AnswerSeal(auditKey.secret, Math.min(since, now));
}

/**
 * Write `<dir>/answer-seal.json` unless it exists. `server init` writes since = 0: a new data
 * directory has no answers stored before sealing, so it accepts no unsealed row at all.
 */
export function writeAnswerSealFile(dir: string, since: number): void {
  createFileExclusive(
    join(dir, ANSWER_SEAL_FILE),
    JSON.stringify({ v: 1, since: new Date(since).toISOString() }) + '\n',
    0o600,
  );
}

/** The `since` of `<dir>/answer-seal.json` (unix ms), or undefined when there is none. */
export function readAnswerSealSince(dir: string): number | undefined {
  return readSince(join(dir, ANSWER_SEAL_FILE));
}

function readSince(path: string): number | undefined {
  let text: string;
  try {
    const st = fs.lstatSync(path);
    if (!st.isFile()) throw new SigilError('unsafe_path', `${path} is not a regular file`);
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (e instanceof SigilError) throw e;
    throw new SigilError('config_invalid', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let since = NaN;
  try {
    const f = JSON.parse(text) as { v?: unknown; since?: unknown };
    if (f.v === 1 && typeof f.since === 'string') since = Date.parse(f.since);
  } catch {
    // reported below
  }
  if (!Number.isFinite(since))
    throw new SigilError('config_invalid', `${path} is not a Sigil answer-seal file ({"v":1,"since":"<ISO time>"})`);
  return since;
}
