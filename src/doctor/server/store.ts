/**
 * `issuer.db` opens and its schema is the one this Sigil writes. Opened read-only, without
 * migrating: doctor reports an old schema (the next `server start` migrates it) instead of
 * changing it, and refuses nothing. `--full` adds SQLite's `quick_check` (reads every page).
 *
 * An issuer whose issuer.json says `"store": "postgres"` (docs/store-postgres.md) is checked in
 * its database instead, found through $SIGIL_STORE as `server start` finds it: reachable, schema
 * current, claimed with this data directory's audit key. Read-only there too (no migration).
 */
import { existsSync, readFileSync } from 'node:fs';
import type BetterSqlite3 from 'better-sqlite3';
import { sh } from '../file-modes.js';
import { fail, ok, warn, type Check, type CheckOutcome } from '../types.js';
import type { IssuerDoctorContext } from './context.js';

/** Open issuer.db read-only (busy_timeout: the running issuer may hold the write lock). */
export async function openIssuerDbReadOnly(file: string): Promise<BetterSqlite3.Database> {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  return db;
}

export const storeCheck: Check<IssuerDoctorContext> = {
  name: 'store',
  timeoutMs: 120_000,
  async run(ctx): Promise<CheckOutcome> {
    const [{ paths }, { latestVersion, schemaVersion }] = await Promise.all([
      import('../../server/data-dir.js'),
      import('../../server/store/sqlite/index.js'),
    ]);
    if (readStoreKind(paths(ctx.dataDir).meta) === 'postgres') return postgresStoreCheck(ctx.dataDir);
    const file = paths(ctx.dataDir).db;
    if (!existsSync(file))
      return fail(
        `${file} is missing`,
        `restore it from your backup (docs/runbook.md "Back up"); a new one means new policy, tokens and audit log`,
      );
    let db: BetterSqlite3.Database;
    try {
      db = await openIssuerDbReadOnly(file);
    } catch (e) {
      return fail(
        `cannot open ${file}: ${(e as Error).message}`,
        `check its owner and mode (ls -l ${sh(file)}*: owned by the issuer's user, 0600)`,
      );
    }
    try {
      const have = schemaVersion(db);
      const want = latestVersion();
      if (have > want)
        return fail(
          `${file} has schema version ${have}, newer than this Sigil (${want})`,
          'run the Sigil version that wrote it, or a newer one',
        );
      let integrity = '';
      if (ctx.full) {
        const r = db.pragma('quick_check', { simple: true });
        if (r !== 'ok')
          return fail(
            `${file}: SQLite quick_check: ${String(r)}`,
            `restore ${sh(file)} from your backup (docs/runbook.md "Back up")`,
          );
        integrity = ', quick_check ok';
      }
      if (have < want)
        return warn(
          `${file} has schema version ${have}; this Sigil writes ${want}${integrity}`,
          'sigil server start migrates it (back it up first: docs/runbook.md "Back up")',
        );
      return ok(`${file}: schema version ${have} (current)${integrity}`);
    } catch (e) {
      return fail(`${file} cannot be read: ${(e as Error).message}`, `restore ${sh(file)} from your backup`);
    } finally {
      db.close();
    }
  },
};

/** issuer.json's `store` ('postgres' or the SQLite default); an unreadable issuer.json is the data_dir check's to report. */
export function readStoreKind(metaFile: string): 'sqlite' | 'postgres' {
  try {
    return (JSON.parse(readFileSync(metaFile, 'utf8')) as { store?: string }).store === 'postgres'
      ? 'postgres'
      : 'sqlite';
  } catch {
    return 'sqlite';
  }
}

async function postgresStoreCheck(dataDir: string): Promise<CheckOutcome> {
  const [{ STORE_ENV, storeKind }, pg, { readAuditKey }, { paths }] = await Promise.all([
    import('../../server/data-dir-store.js'),
    import('../../server/store/postgres/doctor.js'),
    import('../../server/audit/audit-key.js'),
    import('../../server/data-dir.js'),
  ]);
  const url = process.env[STORE_ENV];
  if (!url || storeKind(url) !== 'postgres')
    return fail(
      `${dataDir}/issuer.json keeps the state in PostgreSQL, and ${STORE_ENV} names no postgres://… database`,
      `run doctor with ${STORE_ENV}=postgres://… (the URL the issuer is started with; password in PGPASSWORD or ~/.pgpass)`,
    );
  let key;
  try {
    key = readAuditKey(paths(dataDir).auditKey);
  } catch (e) {
    return fail(`cannot read the audit key: ${(e as Error).message}`, 'the audit check says how to fix it');
  }
  const r = await pg.inspectPostgresStore(url, key?.id);
  const fix = r.fix ?? '';
  return r.status === 'ok' ? ok(r.detail) : r.status === 'warn' ? warn(r.detail, fix) : fail(r.detail, fix);
}
