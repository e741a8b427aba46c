/**
 * The hash-chained audit log on PostgreSQL: the same chain format as SQLite (../sqlite/audit.ts:
 * `auditRowHash`, canonical JSON, genesis hash, keyed rows from the audit key's fromSeq), so a
 * chain verifies the same on either backend and can be moved between them.
 *
 * One chain under concurrent appends from any number of issuers: `append` takes a
 * transaction-level advisory lock (AUDIT_LOCK_KEY) before it reads the head, and keeps it until
 * its transaction commits or rolls back. The next appender waits for the lock, then (READ
 * COMMITTED: a new snapshot per statement) reads the head the holder committed. The UNIQUE
 * prev_hash column would refuse a fork anyway. Inside `withWriteTx` the lock is held from the
 * first append to COMMIT, so the rows of one transaction are adjacent in the chain.
 */
import type { AuditAnchor, AuditEvent, AuditRecord, AuditStore, AuditVerifyResult, AuditWalk } from '../types.js';
import { SigilError } from '../../../errors.js';
import {
  AUDIT_GENESIS_HASH,
  auditContent,
  auditRowHash,
  toRecord,
  verifyAuditChunk,
  VERIFY_CHUNK_ROWS,
  type AuditContent,
  type AuditRow,
  type SqliteAuditOptions,
} from '../sqlite/audit.js';
import { TxDb, type Db } from './db.js';
import { AUDIT_HEAD_MOVED, type AuditTail, type ChainHead } from './audit-tail.js';
import type { Sql } from './connection.js';
import { PG_AUDIT_TRIGGERS } from './migrations.js';

/** The advisory lock serialising chain appends ("sigil" + 2). */
export const AUDIT_LOCK_KEY = 0x7369_6769_6c00_02n;

export type PgAuditOptions = SqliteAuditOptions;

export class PgAuditStore implements AuditStore {
  /** `tail`: the issuer's knowledge of the chain head (./audit-tail.ts); without it every append reads the head. */
  constructor(
    private readonly db: Db,
    private readonly key: PgAuditOptions['key'],
    private readonly tail?: AuditTail,
  ) {}

  async keyInfo(): Promise<{ id: string; fromSeq: number } | undefined> {
    return this.key ? { id: this.key.id, fromSeq: this.key.fromSeq } : undefined;
  }

  async anchor(): Promise<AuditAnchor | undefined> {
    const [a] = await this.db.sql<{ seq: number; hash: string; at: number; pruned: number; checkpoint: string }[]>`
      SELECT seq, hash, at, pruned, checkpoint FROM audit_anchor ORDER BY seq DESC LIMIT 1`;
    return a
      ? {
          seq: a.seq,
          hash: a.hash,
          at: a.at,
          pruned: a.pruned,
          checkpoint: JSON.parse(a.checkpoint) as Record<string, unknown>,
        }
      : undefined;
  }

  head(): Promise<{ seq: number; hash: string } | undefined> {
    return headOn(this.db.sql);
  }

  async lastSeqBefore(before: number): Promise<number | undefined> {
    const [row] = await this.db.sql<{ m: number | null }[]>`SELECT max(seq) AS m FROM audit_log WHERE at < ${before}`;
    return row?.m ?? undefined;
  }

  /** The append-only triggers that exist and are enabled (a disabled trigger protects nothing). */
  async triggers(): Promise<{ present: string[]; missing: string[] }> {
    const rows = await this.db.sql<{ tgname: string }[]>`
      SELECT tgname FROM pg_trigger
       WHERE tgrelid IN (to_regclass('audit_log'), to_regclass('audit_anchor'))
         AND NOT tgisinternal AND tgenabled <> 'D'`;
    const have = new Set(rows.map((r) => r.tgname));
    return {
      present: PG_AUDIT_TRIGGERS.filter((t) => have.has(t)),
      missing: PG_AUDIT_TRIGGERS.filter((t) => !have.has(t)),
    };
  }

  /** Anchor at row `seq` with the signed checkpoint, then delete the rows up to it, in one transaction. */
  pruneThrough(seq: number, checkpoint: string, now: number): Promise<number> {
    return this.db.atomic(async (sql) => {
      await sql`SELECT pg_advisory_xact_lock(${AUDIT_LOCK_KEY.toString()}::bigint)`;
      const [row] = await sql<{ hash: string }[]>`SELECT hash FROM audit_log WHERE seq = ${seq}`;
      if (!row) throw new SigilError('not_found', `no audit row ${seq} to prune through`);
      const [a] = await sql<{ m: number | null }[]>`SELECT max(seq) AS m FROM audit_anchor`;
      const before = a?.m ?? 0;
      if (seq <= before) return 0;
      const [c] = await sql<{ n: number }[]>`
        SELECT count(*) AS n FROM audit_log WHERE seq > ${before} AND seq <= ${seq}`;
      await sql`
        INSERT INTO audit_anchor (seq, hash, at, pruned, checkpoint) VALUES (${seq}, ${row.hash}, ${now}, ${c!.n}, ${checkpoint})`;
      return (await sql`DELETE FROM audit_log WHERE seq <= ${seq}`).count;
    });
  }

  /**
   * Extend the one chain (see the file header). Inside withWriteTx, when this issuer knows the head
   * (./audit-tail.ts), nothing is awaited: lock, head check and row go out with the COMMIT.
   * Otherwise: lock, read the head, insert.
   */
  append(ev: AuditEvent, now: number): Promise<AuditRecord> {
    const tail = this.tail;
    // This issuer's guessed append goes first (./audit-tail.ts); then decide again.
    const waitFor = tail?.guessInFlight(this.db);
    if (waitFor) return waitFor.then(() => this.append(ev, now));
    const guess = this.db instanceof TxDb ? tail?.guess() : undefined;
    if (guess && tail && this.db instanceof TxDb)
      return Promise.resolve(this.appendOnto(this.db, tail, guess, ev, now));
    tail?.start();
    let row: ChainHead | undefined;
    const done = (committed: boolean): void =>
      tail?.settle(row ?? { seq: 0, hash: '' }, committed ? 'committed' : 'failed');
    const appended = this.db.atomic(async (sql) => {
      // Pipelined, one round trip: the lock is SENT first (execute()), so the head is read only
      // after the lock is granted. (A query goes out when it is executed or awaited, not when made.)
      const [, last] = await Promise.all([
        sql`SELECT pg_advisory_xact_lock(${AUDIT_LOCK_KEY.toString()}::bigint)`.execute(),
        headOn(sql),
      ]);
      tail?.observed(last);
      const prevHash = last?.hash ?? AUDIT_GENESIS_HASH;
      const { content, detailsJson } = auditContent(ev, now, last);
      const hash = auditRowHash(prevHash, content, this.keyFor(content.seq));
      row = { seq: content.seq, hash };
      const insert = insertRow(sql, content, detailsJson, prevHash, hash);
      // Inside withWriteTx the row goes out with the next statement or the COMMIT (one round trip
      // less, and the chain lock held one round trip shorter: docs/scaling.md); its failure fails
      // the transaction. Alone, the append is its own transaction and waits for its row.
      if (this.db instanceof TxDb) this.db.sendWithoutWaiting(insert);
      else await insert;
      return { ...content, prevHash, hash };
    });
    if (tail && this.db instanceof TxDb) this.db.onEnd((committed) => done(committed));
    else if (tail)
      appended.then(
        () => done(true),
        () => done(false),
      );
    return appended;
  }

  /**
   * The guess path (./audit-tail.ts): the row computed on the head this issuer knows, sent without
   * waiting after the chain lock and a check that the head under the lock is `head` — a different
   * head makes the check divide by zero, which aborts the transaction with AUDIT_HEAD_MOVED (run
   * again, then reading the head). The row is the same as the read path would write.
   */
  private appendOnto(db: TxDb, tail: AuditTail, head: ChainHead, ev: AuditEvent, now: number): AuditRecord {
    const sql = db.sql;
    const { content, detailsJson } = auditContent(ev, now, head);
    const hash = auditRowHash(head.hash, content, this.keyFor(content.seq));
    tail.start(db);
    db.onEnd((committed, err) =>
      tail.settle(
        { seq: content.seq, hash },
        committed ? 'committed' : err instanceof AuditHeadMoved ? 'moved' : 'failed',
        true,
      ),
    );
    db.sendWithoutWaiting(sql`SELECT pg_advisory_xact_lock(${AUDIT_LOCK_KEY.toString()}::bigint)`);
    // A statement of its own, after the lock: its snapshot is taken once the lock is granted. The
    // row is inserted only through the check (a different head divides by zero before any insert;
    // `WHERE one = 1` makes the planner compute it, an unused column could be optimised away).
    const c = content;
    db.sendWithoutWaiting(
      sql`
        WITH head_unchanged AS (
          SELECT 1 / count(*)::int AS one FROM (${headSql(sql)}) h WHERE h.seq = ${head.seq} AND h.hash = ${head.hash})
        INSERT INTO audit_log (seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details,
                               prev_hash, hash)
        SELECT ${c.seq}::bigint, ${c.at}::bigint, ${c.action}::text, ${c.outcome}::text, ${c.code}::text,
               ${c.bot}::text, ${c.instanceId}::text, ${c.method}::text, ${c.actor}::text, ${c.remote}::text,
               ${detailsJson}::text, ${head.hash}::text, ${hash}::text
          FROM head_unchanged WHERE one = 1`,
      (err) => ((err as { code?: unknown })?.code === '22012' ? new AuditHeadMoved(head.seq) : err),
    );
    return { ...content, prevHash: head.hash, hash };
  }

  async list(opts?: { since?: number; limit?: number; afterSeq?: number }): Promise<AuditRecord[]> {
    const since = opts?.since ?? Number.MIN_SAFE_INTEGER;
    // A tail's new rows by the primary key (issue #14; store contract: list).
    const afterSeq = opts?.afterSeq ?? Number.MIN_SAFE_INTEGER;
    const sql = this.db.sql;
    const rows =
      opts?.limit !== undefined && opts.limit >= 0
        ? await sql<AuditRow[]>`
            SELECT seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details, prev_hash, hash
              FROM audit_log WHERE seq > ${afterSeq} AND at >= ${since} ORDER BY seq LIMIT ${opts.limit}`
        : await sql<AuditRow[]>`
            SELECT seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details, prev_hash, hash
              FROM audit_log WHERE seq > ${afterSeq} AND at >= ${since} ORDER BY seq`;
    return rows.map(toRecord);
  }

  async verify(): Promise<AuditVerifyResult> {
    let walk = await this.startWalk();
    while (!walk.done) walk = await this.verifyStep(walk);
    return walk.brokenAt === undefined
      ? { ok: true, rows: walk.rows }
      : { ok: false, rows: walk.rows, brokenAt: walk.brokenAt, reason: walk.reason! };
  }

  async startWalk(): Promise<AuditWalk> {
    const a = await this.anchor();
    return { nextSeq: (a?.seq ?? 0) + 1, prevHash: a?.hash ?? AUDIT_GENESIS_HASH, rows: 0, done: false };
  }

  /** As SqliteAuditStore.verifyStep: 'sequence gap', 'broken link' or 'hash mismatch' at the first bad row. */
  async verifyStep(
    walk: AuditWalk,
    maxRows: number = VERIFY_CHUNK_ROWS,
    onRow?: (seq: number, hash: string) => void,
  ): Promise<AuditWalk> {
    if (walk.done) return walk;
    const chunk = await this.db.sql<AuditRow[]>`
      SELECT seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details, prev_hash, hash
        FROM audit_log WHERE seq > ${walk.nextSeq - 1} ORDER BY seq LIMIT ${maxRows}`;
    return verifyAuditChunk(walk, chunk, maxRows, (seq) => this.keyFor(seq), onRow);
  }

  private keyFor(seq: number): Buffer | undefined {
    return this.key && seq >= this.key.fromSeq ? this.key.secret : undefined;
  }
}

/** The last row, or the newest anchor when every row after it was pruned, as a fragment. */
function headSql(sql: Sql): ReturnType<Sql> {
  return sql`
    SELECT seq, hash FROM (
      (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1)
      UNION ALL
      (SELECT seq, hash FROM audit_anchor ORDER BY seq DESC LIMIT 1)
    ) h ORDER BY seq DESC LIMIT 1`;
}

/** The head as headSql gives it; one statement. */
async function headOn(sql: Sql): Promise<{ seq: number; hash: string } | undefined> {
  const [row] = await sql<{ seq: number; hash: string }[]>`
    SELECT seq, hash FROM (
      (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1)
      UNION ALL
      (SELECT seq, hash FROM audit_anchor ORDER BY seq DESC LIMIT 1)
    ) h ORDER BY seq DESC LIMIT 1`;
  return row ? { seq: row.seq, hash: row.hash } : undefined;
}

function insertRow(sql: Sql, c: AuditContent, detailsJson: string, prevHash: string, hash: string): ReturnType<Sql> {
  return sql`
    INSERT INTO audit_log (seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details,
                           prev_hash, hash)
    VALUES (${c.seq}, ${c.at}, ${c.action}, ${c.outcome}, ${c.code}, ${c.bot}, ${c.instanceId}, ${c.method},
            ${c.actor}, ${c.remote}, ${detailsJson}, ${prevHash}, ${hash})`;
}

/** A guessed chain head that was not the head under the lock: retried (SQLSTATE 40001, ./db.ts withRetries). */
export class AuditHeadMoved extends Error {
  readonly code = AUDIT_HEAD_MOVED;
  constructor(seq: number) {
    super(`the audit chain head moved past row ${seq} (another issuer appended); the transaction is run again`);
    this.name = 'AuditHeadMoved';
  }
}
