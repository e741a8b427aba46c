/**
 * `<data-dir>/answer-seal.json`: since when this data directory's issuer seals the answers it
 * stores (ops/answer-seal.ts). Answers stored before that have no seal and are replayed only
 * when older than this time and within the retention; the time must survive restarts (else a
 * database writer could plant an unsealed row dated just before any restart), so it lives in the
 * data directory beside audit.key, outside the database, and is written once, never replaced.
 *
 * Format: {"v":1,"since":"<ISO time>"}. `server init` writes it with the directory; a directory
 * from before sealing gets it at the next `server start`.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { SigilError } from '../errors.js';
import { createFileExclusive } from '../util/atomic-file.js';
import type { AuditKey } from './audit/audit-key.js';
import { AnswerSeal } from './ops/answer-seal.js';

export const ANSWER_SEAL_FILE = 'answer-seal.json';

/** The seal of the issuer serving `dir` (the file created at `now` when missing). */
export function ensureAnswerSeal(dir: string, auditKey: AuditKey, now: number): AnswerSeal {
  const path = join(dir, ANSWER_SEAL_FILE);
  let since = readSince(path);
  if (since === undefined) {
    createFileExclusive(path, JSON.stringify({ v: 1, since: new Date(now).toISOString() }) + '\n', 0o600);
    // Created here, or by a racing process a moment ago: read what won.
    since = readSince(path)!;
  }
  return new AnswerSeal(auditKey.secret, since);
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
