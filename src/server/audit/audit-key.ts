/**
 * The audit chain key (issue #11 item 6a). Rows from `from_seq` on are chained with
 * HMAC-SHA256 under a key kept in `<data-dir>/audit.key` (0600), outside issuer.db: whoever can
 * write the database but not read this file cannot rewrite a row and re-chain the rows after
 * it. `server init` creates it before the first row (from_seq 1); a data directory from before
 * this version gets it at the next `server start`, from the next row on, and that switch-over is
 * recorded as an `audit_key_enabled` row (the first keyed one).
 *
 * File format (JSON, one object): {"v":1,"alg":"HMAC-SHA256","key":"<base64 32 bytes>",
 * "from_seq":N,"created_at":"<ISO>"}. Back it up with the CA keys: without it the keyed rows
 * cannot be verified.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type BetterSqlite3 from 'better-sqlite3';
import { SigilError } from '../../errors.js';
import { createFileExclusive } from '../../util/atomic-file.js';

export const AUDIT_KEY_FILE = 'audit.key';

export interface AuditKey {
  secret: Buffer;
  /** The first row chained with the key. */
  fromSeq: number;
  /** First 16 hex digits of sha256(secret): names the key in rows and reports, reveals nothing. */
  id: string;
}

interface KeyFile {
  v: 1;
  alg: 'HMAC-SHA256';
  key: string;
  from_seq: number;
  created_at: string;
}

const keyId = (secret: Buffer): string => createHash('sha256').update(secret).digest('hex').slice(0, 16);

/** The key at `path`, or undefined when there is none. Refuses a file others can read. */
export function readAuditKey(path: string): AuditKey | undefined {
  let text: string;
  try {
    const st = fs.lstatSync(path);
    if (!st.isFile()) throw new SigilError('unsafe_path', `${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0)
      throw new SigilError('config_invalid', `${path} is readable by group or others; run: chmod 600 ${path}`);
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (e instanceof SigilError) throw e;
    throw new SigilError(
      'config_invalid',
      `cannot read the audit key ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  let f: KeyFile;
  try {
    f = JSON.parse(text) as KeyFile;
  } catch {
    throw new SigilError('config_invalid', `${path} is not a Sigil audit key (not JSON)`);
  }
  const secret = typeof f.key === 'string' ? Buffer.from(f.key, 'base64') : Buffer.alloc(0);
  if (
    f.v !== 1 ||
    f.alg !== 'HMAC-SHA256' ||
    secret.length !== 32 ||
    !Number.isSafeInteger(f.from_seq) ||
    f.from_seq < 1
  ) {
    throw new SigilError(
      'config_invalid',
      `${path} is not a valid Sigil audit key (v 1, HMAC-SHA256, 32-byte key, from_seq ≥ 1)`,
    );
  }
  return { secret, fromSeq: f.from_seq, id: keyId(secret) };
}

/**
 * The key at `path`, created when missing. Creation reads the chain head under the database
 * write lock, so no row can be appended between choosing `from_seq` and the file existing; the
 * file is linked into place, never renamed over, so when two processes race the loser reads the
 * winner's key. `created` tells the caller to record the switch-over row.
 */
export function ensureAuditKey(
  path: string,
  db: BetterSqlite3.Database,
  now: number,
): { key: AuditKey; created: boolean } {
  const existing = readAuditKey(path);
  if (existing) return { key: existing, created: false };
  return db
    .transaction(() => {
      const again = readAuditKey(path);
      if (again) return { key: again, created: false };
      const head = db.prepare<[], number | null>('SELECT max(seq) FROM audit_log').pluck().get() ?? 0;
      const secret = randomBytes(32);
      const file: KeyFile = {
        v: 1,
        alg: 'HMAC-SHA256',
        key: secret.toString('base64'),
        from_seq: head + 1,
        created_at: new Date(now).toISOString(),
      };
      if (!createFileExclusive(path, JSON.stringify(file) + '\n', 0o600))
        return { key: readAuditKey(path)!, created: false };
      return { key: { secret, fromSeq: head + 1, id: keyId(secret) }, created: true };
    })
    .immediate();
}
