/**
 * Where an issuer keeps its state: the data directory's SQLite file (the embedded default) or a
 * PostgreSQL database shared by several issuers (`--store postgres://…`, issue #15;
 * docs/store-postgres.md). The CA material, audit key and admin credential stay in the data
 * directory either way; `issuer.json` records `"store": "postgres"` so that an issuer started
 * without `--store` is refused instead of silently opening an empty SQLite file next to it.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { SigilError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import type { AuditKey } from './audit/audit-key.js';
import type { AuditEvent, Stores } from './store/types.js';
export { checkDatabaseClaimable } from './store/postgres/index.js';
import { claimDatabase, isPostgresUrl, openPostgresStores, redactStoreUrl } from './store/postgres/index.js';
export { redactStoreUrl };

/** The environment variable `--store` defaults to (also read by `sigil ctl` through openIssuerStores). */
export const STORE_ENV = 'SIGIL_STORE';

export type StoreKind = 'sqlite' | 'postgres';

/** `--store` → its kind; undefined/empty is the data directory's SQLite file. */
export function storeKind(store: string | undefined): StoreKind {
  if (store === undefined || store === '' || store === 'sqlite') return 'sqlite';
  if (isPostgresUrl(store)) return 'postgres';
  throw new SigilError(
    'config_invalid',
    `--store must be postgres://… (or postgresql://…) or sqlite, got "${redactStoreUrl(store)}"`,
  );
}

/** Refuse a `--store` that does not match what `server init` recorded (state would be split or lost). */
export function checkStoreMatches(recorded: StoreKind, store: string | undefined, dir: string): void {
  const given = storeKind(store);
  if (given === recorded) return;
  throw new SigilError(
    'config_invalid',
    recorded === 'postgres'
      ? `the issuer in ${dir} keeps its state in PostgreSQL: set ${STORE_ENV}=postgres://… (server commands also take --store postgres://…; sigil ctl reads only ${STORE_ENV})`
      : `the issuer in ${dir} keeps its state in ${dir}/issuer.db; --store ${redactStoreUrl(store ?? '')} would start it on an empty database (to move it: sigil server migrate-store --from ${dir} --to postgres://…)`,
  );
}

/** The issuer's stores on PostgreSQL, refusing (before the first call) an audit key the database was not claimed with. */
export function openPostgresIssuerStores(url: string, key: AuditKey | undefined): Stores {
  if (!key)
    throw new SigilError(
      'config_invalid',
      'the data directory has no audit.key; every issuer on one database needs the audit.key of the first (copy it)',
    );
  return openPostgresStores(url, { audit: { key }, checkAuditKey: true });
}

/**
 * Write a new audit key file (0600, never replacing one) chained from seq 1, in the format of
 * server/audit/audit-key.ts, and claim the database with it; the file is removed again when the
 * claim fails, so a refused init leaves no key behind.
 */
export async function initPostgresStore(
  url: string,
  keyPath: string,
  o: { adminTokenHash: string; event: AuditEvent; now: number },
): Promise<void> {
  const secret = randomBytes(32);
  const key: AuditKey = { secret, fromSeq: 1, id: createHash('sha256').update(secret).digest('hex').slice(0, 16) };
  const text =
    JSON.stringify({
      v: 1,
      alg: 'HMAC-SHA256',
      key: secret.toString('base64'),
      from_seq: 1,
      created_at: new Date(o.now).toISOString(),
    }) + '\n';
  const fd = fs.openSync(keyPath, 'wx', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    await claimDatabase(url, { key, adminTokenHash: o.adminTokenHash, event: o.event, now: o.now });
  } catch (err) {
    fs.rmSync(keyPath, { force: true });
    throw err;
  }
}

/**
 * After `server migrate-store` committed: issuer.json records `"store": "postgres"`, so the
 * directory is refused without `--store` from now on (checkStoreMatches) and never again opens
 * its issuer.db, whose tokens and generations are out of date.
 */
export function recordPostgresStore(metaPath: string, meta: object): void {
  writeFileAtomic(metaPath, JSON.stringify({ ...meta, store: 'postgres' }, null, 2) + '\n', { mode: 0o644 });
}
