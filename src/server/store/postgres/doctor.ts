/**
 * What `sigil doctor --data-dir` checks in an issuer's PostgreSQL database
 * (src/doctor/server/store.ts): reachable, schema current (read only: doctor never migrates),
 * claimed, and claimed with this data directory's audit key.
 */
import { openPool, redactStoreUrl, toStoreError } from './connection.js';
import { AUDIT_KEY_SETTING } from './issuer-claim.js';
import { latestPgVersion, pgSchemaVersion } from './migrations.js';

export interface StoreInspection {
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}

export async function inspectPostgresStore(url: string, auditKeyId: string | undefined): Promise<StoreInspection> {
  const where = redactStoreUrl(url);
  const pool = openPool(url, { max: 1, connectTimeoutS: 5, queryTimeoutS: 10, applicationName: 'sigil-doctor' });
  try {
    const have = await pgSchemaVersion(pool);
    const want = latestPgVersion();
    if (have > want)
      return {
        status: 'fail',
        detail: `${where} has schema version ${have}, newer than this Sigil (${want})`,
        fix: 'run the Sigil version that wrote it, or a newer one',
      };
    if (have === 0)
      return {
        status: 'fail',
        detail: `${where} holds no issuer schema`,
        fix: 'point SIGIL_STORE at the database the issuer was initialised on (sigil server init --store …)',
      };
    const [claim] = await pool<{ value: string }[]>`SELECT value FROM settings WHERE key = ${AUDIT_KEY_SETTING}`;
    if (!claim)
      return {
        status: 'fail',
        detail: `${where} holds no issuer (never claimed by server init or migrate-store)`,
        fix: 'point SIGIL_STORE at the database the issuer was initialised on',
      };
    const claimedId = (JSON.parse(claim.value) as { id: string }).id;
    if (claimedId !== auditKeyId)
      return {
        status: 'fail',
        detail: `${where} keeps its audit chain with key ${claimedId}, this data directory has ${auditKeyId ?? 'no audit.key'}`,
        fix: "copy audit.key from the first issuer's data directory (every issuer on one database needs the same key)",
      };
    if (have < want)
      return {
        status: 'warn',
        detail: `${where} has schema version ${have}; this Sigil writes ${want}`,
        fix: 'sigil server start migrates it (back the database up first: pg_dump)',
      };
    return { status: 'ok', detail: `${where}: PostgreSQL, schema version ${have} (current), audit key ${claimedId}` };
  } catch (e) {
    const err = toStoreError(e, where) as Error;
    return {
      status: 'fail',
      detail: `cannot read ${where}: ${err.message}`,
      fix: 'check that PostgreSQL is running and reachable, and the user and password (PGPASSWORD, ~/.pgpass)',
    };
  } finally {
    await pool.end({ timeout: 5 });
  }
}
