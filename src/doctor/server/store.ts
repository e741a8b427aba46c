/**
 * `issuer.db` opens and its schema is the one this Sigil writes. Opened read-only, without
 * migrating: doctor reports an old schema (the next `server start` migrates it) instead of
 * changing it, and refuses nothing. `--full` adds SQLite's `quick_check` (reads every page).
 */
import { existsSync } from 'node:fs';
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
