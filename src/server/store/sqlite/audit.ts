/**
 * The append-only, hash-chained audit log (ARCHITECTURE principle 6).
 *
 * Each row commits to its predecessor:
 *   hash = hex sha256(prevHash + "\n" + canonicalJson({seq, at, action, outcome, code, bot,
 *                                                      instanceId, method, actor, remote, details}))
 * with prevHash of the first row = 64 zeros and canonicalJson = keys sorted recursively, no
 * whitespace (./canonical-json.ts). Editing, deleting or reordering any row breaks the chain
 * from that row on; `verify()` finds the first such row.
 *
 * Keyed rows (issue #11 item 6a): from the audit key's `fromSeq` on, `hash` is hex
 * HMAC-SHA256(key, the same input) with the key kept outside the database
 * (server/audit/audit-key.ts), so re-chaining after a rewrite needs the key.
 *
 * Pruning (item 4): `pruneThrough(seq)` records an anchor (the last removed row's seq and hash,
 * with the signed checkpoint written before) and deletes the rows up to it in one transaction;
 * the chain then starts at the newest anchor. Cutting rows off the *end* still leaves a valid
 * shorter chain: the signed checkpoints outside the database (server/audit/checkpoints.ts)
 * are what detect that.
 */
import { hash } from 'node:crypto';
import { hmacSha256Hex } from '../../../util/hmac-sha256.js';
import type BetterSqlite3 from 'better-sqlite3';
import type { AuditAnchor, AuditEvent, AuditRecord, AuditVerifyResult, AuditWalk } from '../types.js';
import type { SyncAuditStore } from './sync-types.js';
import { SigilError } from '../../../errors.js';
import { canonicalJson } from './canonical-json.js';
import { schemaVersion } from './migrations.js';

export const AUDIT_GENESIS_HASH = '0'.repeat(64);

/** Stored when an event names no actor (AuditRecord.actor is a non-null string). */
const DEFAULT_ACTOR = 'system';

/** A stored audit row, column for column (the same columns on every backend). */
export interface AuditRow {
  seq: number;
  at: number;
  action: string;
  outcome: string;
  code: string | null;
  bot: string | null;
  instance_id: string | null;
  method: string | null;
  actor: string;
  remote: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

const COLS = 'seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details, prev_hash, hash';

/** The hashed content of a row, exactly the fields and names the chain format defines. */
export type AuditContent = Omit<AuditRecord, 'prevHash' | 'hash'>;

/**
 * Names of the append-only triggers (migrations 1, 5 and 9) and of the trigger that refuses a row
 * not linked to its predecessor (migration 9); `verify` reports any that is gone.
 */
export const AUDIT_TRIGGERS = [
  'audit_log_no_update',
  'audit_log_no_delete',
  'audit_log_linked',
  'audit_anchor_no_update',
  'audit_anchor_no_delete',
] as const;

/** Rows one `verifyStep` reads by default: at most ~30 ms of work on this machine kind at 100k rows (5,000 held the loop ~75 ms; bench/audit-verify.ts), then the caller yields. */
export const VERIFY_CHUNK_ROWS = 1000;

/** `key` is given for rows at or after the audit key's fromSeq: then the hash is an HMAC. */
export function auditRowHash(prevHash: string, content: AuditContent, key?: Buffer): string {
  // The reference form, through the generic encoder: verify() uses it, so a row appended through
  // the hand-ordered canonicalContent below that differed by one byte would not verify.
  const c = content;
  const canonical = canonicalJson({
    seq: c.seq,
    at: c.at,
    action: c.action,
    outcome: c.outcome,
    code: c.code,
    bot: c.bot,
    instanceId: c.instanceId,
    method: c.method,
    actor: c.actor,
    remote: c.remote,
    details: c.details,
  });
  return chainHash(prevHash, canonical, key);
}

/**
 * canonicalJson of a row's hashed content with its details already in canonical form: the keys
 * written in sorted order by hand (action, actor, at, bot, code, details, instanceId, method,
 * outcome, remote, seq — UTF-16 order, as canonicalJson sorts them), so an append does not
 * encode its details twice. Every other field is a string, a number or null, which
 * JSON.stringify writes exactly as canonicalJson does. Must stay byte-identical to
 * canonicalJson(content): verify() recomputes each row through auditRowHash, and a unit test
 * compares both forms (test/unit/server/audit-append-fast.test.ts).
 */
function canonicalContent(c: AuditContent, detailsCanonical: string): string {
  const j = JSON.stringify;
  return (
    `{"action":${j(c.action)},"actor":${j(c.actor)},"at":${j(c.at)},"bot":${j(c.bot)},"code":${j(c.code)},` +
    `"details":${detailsCanonical},"instanceId":${j(c.instanceId)},"method":${j(c.method)},` +
    `"outcome":${j(c.outcome)},"remote":${j(c.remote)},"seq":${j(c.seq)}}`
  );
}

// One-shot hashes, no Hash/Hmac object per row: those are freed in V8's GC pause (issue #14;
// ../../../util/hmac-sha256.ts).
function chainHash(prevHash: string, canonical: string, key?: Buffer): string {
  const input = `${prevHash}\n${canonical}`;
  return key ? hmacSha256Hex(key, input) : hash('sha256', input, 'hex');
}

export interface SqliteAuditOptions {
  /** The chain key (server/audit/audit-key.ts); without it every row is plain SHA-256. */
  key?: { secret: Buffer; fromSeq: number; id: string };
}

export class SqliteAuditStore implements SyncAuditStore {
  private readonly lastStmt: BetterSqlite3.Statement<[], { seq: number; hash: string }>;
  private readonly insertStmt: BetterSqlite3.Statement<[AuditRow]>;
  private readonly listStmt: BetterSqlite3.Statement<[number, number], AuditRow>;
  private readonly listAfterStmt: BetterSqlite3.Statement<[number, number, number], AuditRow>;
  private readonly chunkStmt: BetterSqlite3.Statement<[number, number], AuditRow>;
  private readonly anchorStmt: BetterSqlite3.Statement<
    [],
    { seq: number; hash: string; at: number; pruned: number; checkpoint: string }
  >;
  private readonly appendTx: BetterSqlite3.Transaction<(ev: AuditEvent, now: number) => AuditRecord>;
  private readonly pruneTx: BetterSqlite3.Transaction<(seq: number, checkpoint: string, now: number) => number>;
  private readonly key: SqliteAuditOptions['key'];

  constructor(
    private readonly db: BetterSqlite3.Database,
    opts: SqliteAuditOptions = {},
  ) {
    this.key = opts.key;
    this.lastStmt = db.prepare('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1');
    this.insertStmt = db.prepare(
      `INSERT INTO audit_log (${COLS}) VALUES (
         @seq, @at, @action, @outcome, @code, @bot, @instance_id, @method, @actor, @remote,
         @details, @prev_hash, @hash)`,
    );
    this.listStmt = db.prepare(`SELECT ${COLS} FROM audit_log WHERE at >= ? ORDER BY seq LIMIT ?`);
    // `+at`: the time bound is only a filter, so SQLite walks the primary key from afterSeq on
    // instead of the (at, seq) index over the whole window.
    this.listAfterStmt = db.prepare(`SELECT ${COLS} FROM audit_log WHERE seq > ? AND +at >= ? ORDER BY seq LIMIT ?`);
    this.chunkStmt = db.prepare(`SELECT ${COLS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?`);
    this.anchorStmt = db.prepare(
      'SELECT seq, hash, at, pruned, checkpoint FROM audit_anchor ORDER BY seq DESC LIMIT 1',
    );
    this.appendTx = db.transaction((ev: AuditEvent, now: number) => this.appendLocked(ev, now));
    this.pruneTx = db.transaction((seq: number, checkpoint: string, now: number) =>
      this.pruneLocked(seq, checkpoint, now),
    );
  }

  /** The key in use: its id and first keyed row (undefined: plain SHA-256 chain). */
  keyInfo(): { id: string; fromSeq: number } | undefined {
    return this.key ? { id: this.key.id, fromSeq: this.key.fromSeq } : undefined;
  }

  /** The newest prune anchor: the chain starts right after it. */
  anchor(): AuditAnchor | undefined {
    const a = this.anchorStmt.get();
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

  /** The last row (or the anchor when every row after it was pruned); undefined when empty. */
  head(): { seq: number; hash: string } | undefined {
    const last = this.lastStmt.get();
    if (last) return last;
    const a = this.anchor();
    return a ? { seq: a.seq, hash: a.hash } : undefined;
  }

  lastSeqBefore(before: number): number | undefined {
    return (
      this.db.prepare<[number], number | null>('SELECT max(seq) FROM audit_log WHERE at < ?').pluck().get(before) ??
      undefined
    );
  }

  /**
   * Which append-only triggers exist right now (someone with write access can drop them). The
   * link trigger is expected from schema version 9 on: a database `sigil doctor` opens without
   * migrating may be older (its UNIQUE prev_hash index then guards the chain).
   */
  triggers(): { present: string[]; missing: string[] } {
    const rows = this.db.prepare<[], string>("SELECT name FROM sqlite_schema WHERE type = 'trigger'").pluck().all();
    const have = new Set(rows);
    const expected =
      schemaVersion(this.db) >= 9 ? AUDIT_TRIGGERS : AUDIT_TRIGGERS.filter((t) => t !== 'audit_log_linked');
    return { present: expected.filter((t) => have.has(t)), missing: expected.filter((t) => !have.has(t)) };
  }

  /**
   * Record an anchor at row `seq` carrying `checkpoint` (the signed record written before, as
   * JSON) and delete the rows up to it, in one transaction. Returns the rows removed. The delete
   * trigger lets through only rows at or below the newest anchor (migration 5).
   */
  pruneThrough(seq: number, checkpoint: string, now: number): number {
    return this.pruneTx.immediate(seq, checkpoint, now);
  }

  /**
   * Append one event. Reading the chain head and inserting happen in one write transaction
   * (BEGIN IMMEDIATE, or the caller's write transaction when there is one), so two processes can never
   * both extend the same head; the seq primary key and the audit_log_linked trigger (migration 9)
   * would refuse it anyway.
   */
  append(ev: AuditEvent, now: number): AuditRecord {
    // Inside a caller's write transaction (a renewal's, under its group commit) that transaction
    // already holds the write lock and makes the head read and the insert atomic; a nested
    // SAVEPOINT would add two statements and protect nothing: the one INSERT either lands whole
    // or fails whole (SQLite statement atomicity), and nothing else is written here.
    if (this.db.inTransaction) return this.appendLocked(ev, now);
    return this.appendTx.immediate(ev, now);
  }

  /**
   * Rows with `at >= since` and `seq > afterSeq`, in chain (seq) order, at most `limit` of them
   * (default: all). With `afterSeq` the rows are found by the primary key, never by a scan of the
   * time window: a tail looking every few seconds reads only the new rows (issue #14).
   */
  list(opts?: { since?: number; limit?: number; afterSeq?: number }): AuditRecord[] {
    const since = opts?.since ?? Number.MIN_SAFE_INTEGER;
    const limit = opts?.limit ?? -1;
    if (opts?.afterSeq !== undefined) return this.listAfterStmt.all(opts.afterSeq, since, limit).map(toRecord);
    return this.listStmt.all(since, limit).map(toRecord);
  }

  /**
   * Walk every row from the newest anchor on, in seq order. `rows` counts the rows that
   * verified; on failure `brokenAt` is the first row that does not, with reason 'sequence gap'
   * (a row is missing before it), 'broken link' (its prevHash is not the previous row's hash) or
   * 'hash mismatch' (its content was changed, or it was re-hashed without the key). Synchronous:
   * for large logs use `verifyStep` and yield between chunks (server/audit/verify.ts).
   */
  verify(): AuditVerifyResult {
    let walk = this.startWalk();
    while (!walk.done) walk = this.verifyStep(walk);
    return walk.brokenAt === undefined
      ? { ok: true, rows: walk.rows }
      : { ok: false, rows: walk.rows, brokenAt: walk.brokenAt, reason: walk.reason! };
  }

  /** Where a verification starts: after the newest anchor, or at seq 1 from the genesis hash. */
  startWalk(): AuditWalk {
    const a = this.anchor();
    return { nextSeq: (a?.seq ?? 0) + 1, prevHash: a?.hash ?? AUDIT_GENESIS_HASH, rows: 0, done: false };
  }

  /**
   * Verify up to `maxRows` rows from `walk`; returns the state to continue from. `onRow` sees
   * each verified row's seq and hash (checkpoint comparison).
   */
  verifyStep(
    walk: AuditWalk,
    maxRows: number = VERIFY_CHUNK_ROWS,
    onRow?: (seq: number, hash: string) => void,
  ): AuditWalk {
    if (walk.done) return walk;
    return verifyAuditChunk(
      walk,
      this.chunkStmt.all(walk.nextSeq - 1, maxRows),
      maxRows,
      (seq) => this.keyFor(seq),
      onRow,
    );
  }

  private keyFor(seq: number): Buffer | undefined {
    return this.key && seq >= this.key.fromSeq ? this.key.secret : undefined;
  }

  private pruneLocked(seq: number, checkpoint: string, now: number): number {
    const row = this.db.prepare<[number], { hash: string }>('SELECT hash FROM audit_log WHERE seq = ?').get(seq);
    if (!row) throw new SigilError('not_found', `no audit row ${seq} to prune through`);
    const before = this.anchor()?.seq ?? 0;
    if (seq <= before) return 0;
    const removed = this.db
      .prepare<[number, number], { n: number }>('SELECT count(*) AS n FROM audit_log WHERE seq > ? AND seq <= ?')
      .get(before, seq)!.n;
    this.db
      .prepare<[number, string, number, number, string]>(
        'INSERT INTO audit_anchor (seq, hash, at, pruned, checkpoint) VALUES (?, ?, ?, ?, ?)',
      )
      .run(seq, row.hash, now, removed, checkpoint);
    return this.db.prepare<[number]>('DELETE FROM audit_log WHERE seq <= ?').run(seq).changes;
  }

  private appendLocked(ev: AuditEvent, now: number): AuditRecord {
    // After a prune of every row the chain continues from the anchor.
    const last = this.head();
    const prevHash = last?.hash ?? AUDIT_GENESIS_HASH;
    // Round-trip details through canonical JSON so the returned record equals what list()
    // reads back (and what the hash covers).
    const { content, detailsJson } = auditContent(ev, now, last);
    const hash = chainHash(prevHash, canonicalContent(content, detailsJson), this.keyFor(content.seq));
    this.insertStmt.run({
      seq: content.seq,
      at: content.at,
      action: content.action,
      outcome: content.outcome,
      code: content.code,
      bot: content.bot,
      instance_id: content.instanceId,
      method: content.method,
      actor: content.actor,
      remote: content.remote,
      details: detailsJson,
      prev_hash: prevHash,
      hash,
    });
    return { ...content, prevHash, hash };
  }
}

/** A stored row as the store contract's record (details parsed). */
export function toRecord(row: AuditRow): AuditRecord {
  return {
    seq: row.seq,
    at: row.at,
    action: row.action,
    outcome: row.outcome,
    code: row.code,
    bot: row.bot,
    instanceId: row.instance_id,
    method: row.method,
    actor: row.actor,
    remote: row.remote,
    details: JSON.parse(row.details) as Record<string, unknown>,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/**
 * Verify one chunk of rows continuing `walk` — the chain check every backend runs, written once:
 * consecutive seq (sequence gap), each row linked to the previous hash (broken link), each hash
 * recomputed over the row's content with the key in force at its seq (hash mismatch; a row whose
 * details no longer parse was edited). `chunk` holds up to `maxRows` rows from walk.nextSeq on.
 */
export function verifyAuditChunk(
  walk: AuditWalk,
  chunk: readonly AuditRow[],
  maxRows: number,
  keyFor: (seq: number) => Buffer | undefined,
  onRow?: (seq: number, hash: string) => void,
): AuditWalk {
  let { nextSeq, prevHash, rows } = walk;
  for (const row of chunk) {
    const broken = (reason: string): AuditWalk => ({ nextSeq, prevHash, rows, done: true, brokenAt: row.seq, reason });
    if (row.seq !== nextSeq) return broken('sequence gap');
    if (row.prev_hash !== prevHash) return broken('broken link');
    let record: AuditRecord;
    try {
      record = toRecord(row);
    } catch {
      return broken('hash mismatch'); // details no longer parse: the row was edited
    }
    if (auditRowHash(row.prev_hash, record, keyFor(row.seq)) !== row.hash) return broken('hash mismatch');
    onRow?.(row.seq, row.hash);
    prevHash = row.hash;
    nextSeq++;
    rows++;
  }
  return { nextSeq, prevHash, rows, done: chunk.length < maxRows };
}

/**
 * The hashed content of the row that appends `ev` after `last` (the chain head, or none), with
 * its details in canonical JSON — round-tripped so the returned record equals what list() reads
 * back and what the hash covers. One definition for every backend: the chain format.
 */
export function auditContent(
  ev: AuditEvent,
  now: number,
  last: { seq: number } | undefined,
): { content: AuditContent; detailsJson: string } {
  const detailsJson = canonicalJson(ev.details ?? {});
  const content: AuditContent = {
    seq: (last?.seq ?? 0) + 1,
    at: now,
    action: ev.action,
    outcome: ev.outcome,
    code: ev.code ?? null,
    bot: ev.bot ?? null,
    instanceId: ev.instanceId ?? null,
    method: ev.method ?? null,
    actor: ev.actor ?? DEFAULT_ACTOR,
    remote: ev.remote ?? null,
    details: JSON.parse(detailsJson) as Record<string, unknown>,
  };
  return { content, detailsJson };
}
