/**
 * The audit chain. Cheap by default — the newest {@link CHEAP_ROWS} rows re-hashed (with the
 * audit key), the append-only triggers present, and the checkpoint file present, parseable and
 * agreeing with the database at its latest signed checkpoint (no rows cut off the end, that row
 * not rewritten). `--full` is `sigil ctl audit --verify`: every row and every checkpoint
 * (server/audit/verify.ts), which takes about a second per 100k rows.
 */
import { existsSync } from 'node:fs';
import type BetterSqlite3 from 'better-sqlite3';
import { toSigilError } from '../../errors.js';
import type { AuditKey } from '../../server/audit/audit-key.js';
import type { SqliteAuditStore } from '../../server/store/sqlite/index.js';
import { sh } from '../file-modes.js';
import { fail, ok, warn, type Check, type CheckOutcome } from '../types.js';
import { splitFix, type IssuerDoctorContext } from './context.js';
import { openIssuerDbReadOnly, readStoreKind } from './store.js';

export const CHEAP_ROWS = 1000;

async function cheapVerify(
  ctx: IssuerDoctorContext,
  db: BetterSqlite3.Database,
  audit: SqliteAuditStore,
): Promise<CheckOutcome> {
  const [{ paths }, { AUDIT_GENESIS_HASH }, { readCheckpoints, checkpointSignatureOk }, { loadCheckpointVerifiers }] =
    await Promise.all([
      import('../../server/data-dir.js'),
      import('../../server/store/sqlite/index.js'),
      import('../../server/audit/checkpoints.js'),
      import('../../server/audit/signer.js'),
    ]);
  const verifyAll = `sigil ctl --data-dir ${sh(ctx.dataDir)} audit --verify (full report; docs/runbook.md "Audit log")`;
  const head = audit.head();
  if (!head) return ok('the audit log is empty');
  const anchor = audit.anchor();
  const start = Math.max((anchor?.seq ?? 0) + 1, head.seq - CHEAP_ROWS + 1);
  const before = start - 1;
  const prevHash =
    before === 0
      ? AUDIT_GENESIS_HASH
      : before === anchor?.seq
        ? anchor.hash
        : db.prepare<[number], string>('SELECT hash FROM audit_log WHERE seq = ?').pluck().get(before);
  if (prevHash === undefined) return fail(`audit_chain_broken: row ${before} is missing (sequence gap)`, verifyAll);
  let walk = { nextSeq: start, prevHash, rows: 0, done: false } as ReturnType<SqliteAuditStore['startWalk']>;
  while (!walk.done) walk = audit.verifyStep(walk);
  if (walk.brokenAt !== undefined)
    return fail(`audit_chain_broken: the chain does not verify at seq ${walk.brokenAt} (${walk.reason})`, verifyAll);
  const missing = audit.triggers().missing;
  if (missing.length)
    return fail(
      `append-only triggers dropped: ${missing.join(', ')} (someone wrote to issuer.db outside Sigil)`,
      verifyAll,
    );
  const verified = `newest ${walk.rows} rows verify (seq ${start}..${head.seq}${audit.keyInfo() ? ', keyed' : ''})`;

  const file = paths(ctx.dataDir).auditCheckpoints;
  if (!existsSync(file))
    return warn(
      `${verified}; no checkpoint file ${file} yet (the issuer writes it from its first start)`,
      `sigil server start --data-dir ${sh(ctx.dataDir)} (or --audit-checkpoint-file if you keep them elsewhere)`,
    );
  const lines = readCheckpoints(file);
  const bad = lines.find((l) => !l.cp);
  if (bad) return fail(`${verified}; ${file} line ${bad.line} does not parse: ${bad.error}`, verifyAll);
  const latest = lines.reduce<(typeof lines)[number]['cp']>((a, l) => (!a || l.cp!.seq >= a.seq ? l.cp : a), undefined);
  if (!latest)
    return warn(
      `${verified}; ${file} holds no checkpoint yet`,
      'the issuer writes one every --audit-checkpoint-interval (10 min) when rows were added',
    );
  if (!checkpointSignatureOk(latest, loadCheckpointVerifiers(ctx.dataDir)))
    return fail(
      `${verified}; the latest checkpoint (seq ${latest.seq}) is not signed by this issuer's intermediate`,
      verifyAll,
    );
  if (latest.seq > head.seq)
    return fail(
      `truncated: the latest signed checkpoint covers seq ${latest.seq} but the log ends at seq ${head.seq}`,
      verifyAll,
    );
  if (latest.seq > (anchor?.seq ?? 0)) {
    const h = db.prepare<[number], string>('SELECT hash FROM audit_log WHERE seq = ?').pluck().get(latest.seq);
    if (h !== latest.hash)
      return fail(`rewritten: row ${latest.seq} has another hash than its signed checkpoint`, verifyAll);
  }
  return ok(`${verified}; ${lines.length} checkpoints, latest (seq ${latest.seq}) signed and matching`);
}

/**
 * An issuer on PostgreSQL keeps its chain there. Its directory may still hold `issuer.db` — after
 * `migrate-store` it is the backup, frozen at the move — and checking that file against the
 * checkpoints the PostgreSQL issuers signed since reports "truncated", a tampering alarm that is
 * false. So the chain is walked where it lives, whole (what `sigil ctl audit --verify` does there:
 * the cheap newest-rows walk is SQLite's), with the same checkpoints.
 */
async function postgresAudit(ctx: IssuerDoctorContext, key: AuditKey | undefined): Promise<CheckOutcome> {
  const [
    { paths },
    { STORE_ENV, storeKind, openPostgresIssuerStores },
    { verifyAuditLog },
    { loadCheckpointVerifiers },
  ] = await Promise.all([
    import('../../server/data-dir.js'),
    import('../../server/data-dir-store.js'),
    import('../../server/audit/verify.js'),
    import('../../server/audit/signer.js'),
  ]);
  const url = process.env[STORE_ENV];
  if (!url || storeKind(url) !== 'postgres')
    return fail(
      `not checked: the chain is in PostgreSQL and ${STORE_ENV} names no postgres://… database`,
      'see the store check',
    );
  const p = paths(ctx.dataDir);
  let stores;
  try {
    stores = openPostgresIssuerStores(url, key);
  } catch (e) {
    const err = toSigilError(e);
    return fail(`${err.code}: ${err.message}`, 'see the store check');
  }
  try {
    const r = await verifyAuditLog(stores.audit, {
      verifiers: loadCheckpointVerifiers(ctx.dataDir),
      ...(existsSync(p.auditCheckpoints) ? { checkpointFile: p.auditCheckpoints } : {}),
    });
    const verifyAll = `SIGIL_STORE=… sigil ctl --data-dir ${sh(ctx.dataDir)} audit --verify --format json (every problem); docs/runbook.md "Audit log"`;
    if (!r.ok) return fail(`audit_chain_broken: ${r.problems.slice(0, 3).join('; ')}`, verifyAll);
    const cps = r.checkpoints
      ? `; ${r.checkpoints.verified} of ${r.checkpoints.lines} checkpoints verified`
      : '; no checkpoint file yet';
    return ok(
      `PostgreSQL: the whole chain verifies, ${r.rows} rows (seq ${r.first_seq ?? '-'}..${r.last_seq ?? '-'})${cps}`,
    );
  } catch (e) {
    const err = toSigilError(e);
    return fail(`cannot read the audit log: ${err.code}: ${err.message}`, 'see the store check');
  } finally {
    await stores.close().catch(() => undefined);
  }
}

export const auditCheck: Check<IssuerDoctorContext> = {
  name: 'audit',
  timeoutMs: 600_000,
  async run(ctx): Promise<CheckOutcome> {
    const [{ paths }, { readAuditKey }, { SqliteAuditStore, asyncAuditStore }] = await Promise.all([
      import('../../server/data-dir.js'),
      import('../../server/audit/audit-key.js'),
      import('../../server/store/sqlite/index.js'),
    ]);
    const p = paths(ctx.dataDir);
    let key;
    try {
      key = readAuditKey(p.auditKey);
    } catch (e) {
      const err = toSigilError(e);
      const { detail, fix } = splitFix(err.message);
      return fail(`${err.code}: ${detail}`, fix ?? `restore ${sh(p.auditKey)} from your backup (mode 0600)`);
    }
    if (readStoreKind(p.meta) === 'postgres') return postgresAudit(ctx, key);
    if (!existsSync(p.db)) return fail(`${p.db} is missing`, 'see the store check');
    const db = await openIssuerDbReadOnly(p.db);
    try {
      const audit = new SqliteAuditStore(db, key ? { key } : {});
      if (!ctx.full) {
        const r = await cheapVerify(ctx, db, audit);
        return key || r.status === 'fail'
          ? r
          : warn(
              `${r.detail}; no audit.key: the chain is plain SHA-256`,
              'sigil server start creates audit.key (rows from then on are keyed)',
            );
      }
      const [{ verifyAuditLog }, { loadCheckpointVerifiers }] = await Promise.all([
        import('../../server/audit/verify.js'),
        import('../../server/audit/signer.js'),
      ]);
      const r = await verifyAuditLog(asyncAuditStore(audit), {
        verifiers: loadCheckpointVerifiers(ctx.dataDir),
        ...(existsSync(p.auditCheckpoints) ? { checkpointFile: p.auditCheckpoints } : {}),
      });
      if (!r.ok)
        return fail(
          `audit_chain_broken: ${r.problems.slice(0, 3).join('; ')}`,
          `sigil ctl --data-dir ${sh(ctx.dataDir)} audit --verify --format json (every problem); docs/runbook.md "Audit log"`,
        );
      const cps = r.checkpoints
        ? `; ${r.checkpoints.verified} of ${r.checkpoints.lines} checkpoints verified`
        : '; no checkpoint file yet';
      return ok(
        `full chain verifies: ${r.rows} rows (seq ${r.first_seq ?? '-'}..${r.last_seq ?? '-'})${r.key ? `, keyed from seq ${r.key.from_seq}` : ''}${cps}`,
      );
    } finally {
      db.close();
    }
  },
};
