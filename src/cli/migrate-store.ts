/**
 * `sigil server migrate-store --from <data-dir> --to postgres://…` (issue #15): move a stopped
 * issuer's state from its SQLite file into an empty PostgreSQL database, then record the store in
 * issuer.json. The copy is one PostgreSQL transaction that commits only after the audit chain
 * verifies in its new home (server/store/postgres/copy-from-sqlite.ts); issuer.json is written
 * only after that commit. issuer.db is left untouched, as the backup (docs/store-postgres.md).
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { SigilError } from '../errors.js';
import { parseFormat, printJson, printKv } from './output.js';

export interface MigrateStoreResult {
  rows: Record<string, number>;
  auditVerified: number;
  store: string;
}

/** The move itself (exported for tests); `url` is the target database. */
export async function migrateStore(dataDir: string, url: string): Promise<MigrateStoreResult> {
  const [{ paths, readMeta }, { assertDataDirSecure }, { readAuditKey }, dds, { openSqlite }, pg] = await Promise.all([
    import('../server/data-dir.js'),
    import('../server/data-dir-perms.js'),
    import('../server/audit/audit-key.js'),
    import('../server/data-dir-store.js'),
    import('../server/store/sqlite/index.js'),
    import('../server/store/postgres/copy-from-sqlite.js'),
  ]);
  if (dds.storeKind(url) !== 'postgres')
    throw new SigilError('config_invalid', '--to must be a postgres://… (or postgresql://…) URL');
  const meta = readMeta(dataDir);
  assertDataDirSecure(dataDir);
  if (meta.store === 'postgres')
    throw new SigilError('already_initialized', `the issuer in ${dataDir} already keeps its state in PostgreSQL`);
  const p = paths(dataDir);
  if (!existsSync(p.db)) throw new SigilError('not_initialized', `${p.db} is missing: there is nothing to move`);
  const key = readAuditKey(p.auditKey);
  if (!key)
    throw new SigilError(
      'config_invalid',
      `${p.auditKey} is missing: start the issuer once on SQLite (it creates the audit key), stop it, then move it`,
    );
  // openSqlite brings an older file to the current schema first, as `server start` would.
  const db = openSqlite(p.db);
  let copied: Awaited<ReturnType<typeof pg.copySqliteToPostgres>>;
  try {
    copied = await pg.copySqliteToPostgres(db, url, key);
  } finally {
    db.close();
  }
  // Only now, after the commit: an issuer started from this directory needs --store from here on.
  dds.recordPostgresStore(p.meta, meta);
  return { ...copied, store: dds.redactStoreUrl(url) };
}

export function registerMigrateStore(server: Command, run: (fn: () => Promise<void> | void) => Promise<void>): void {
  server
    .command('migrate-store')
    .description(
      'move a stopped issuer from its SQLite file to an empty PostgreSQL database (audit chain verified after the move; all or nothing)',
    )
    .requiredOption('--from <data-dir>', 'the issuer data directory (its issuer.db is read, not changed)')
    .requiredOption(
      '--to <url>',
      'postgres://[user@]host[:port]/db of an empty database (password in PGPASSWORD or ~/.pgpass)',
    )
    .option('--format <fmt>', 'table or json')
    .action((o: { from: string; to: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        const r = await migrateStore(o.from, o.to);
        if (fmt === 'json') {
          printJson({ store: r.store, rows: r.rows, audit_rows_verified: r.auditVerified });
          return;
        }
        printKv({
          store: r.store,
          ...Object.fromEntries(Object.entries(r.rows).map(([t, n]) => [`rows ${t}`, n])),
          'audit chain': `verified in PostgreSQL (${r.auditVerified} rows)`,
          next: `sigil server start --data-dir ${o.from} --store <the same URL>`,
        });
      }),
    );
}
