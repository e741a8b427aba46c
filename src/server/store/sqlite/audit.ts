/**
 * The append-only, hash-chained audit log (ARCHITECTURE principle 6).
 *
 * Each row commits to its predecessor:
 *   hash = hex sha256(prevHash + "\n" + canonicalJson({seq, at, action, outcome, code, bot,
 *                                                      instanceId, method, actor, remote, details}))
 * with prevHash of the first row = 64 zeros and canonicalJson = keys sorted recursively, no
 * whitespace (./canonical-json.ts). Editing, deleting or reordering any row breaks the chain
 * from that row on; `verify()` finds the first such row. Cutting rows off the *end* keeps a
 * valid (shorter) chain: detecting that needs the head hash anchored elsewhere.
 */
import { createHash } from 'node:crypto';
import type BetterSqlite3 from 'better-sqlite3';
import type { AuditEvent, AuditRecord, AuditStore, AuditVerifyResult } from '../types.js';
import { canonicalJson } from './canonical-json.js';

export const AUDIT_GENESIS_HASH = '0'.repeat(64);

/** Stored when an event names no actor (AuditRecord.actor is a non-null string). */
const DEFAULT_ACTOR = 'system';

interface AuditRow {
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
type AuditContent = Omit<AuditRecord, 'prevHash' | 'hash'>;

export function auditRowHash(prevHash: string, content: AuditContent): string {
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
  return createHash('sha256').update(`${prevHash}\n${canonical}`, 'utf8').digest('hex');
}

export class SqliteAuditStore implements AuditStore {
  private readonly lastStmt: BetterSqlite3.Statement<[], { seq: number; hash: string }>;
  private readonly insertStmt: BetterSqlite3.Statement<[AuditRow]>;
  private readonly listStmt: BetterSqlite3.Statement<[number, number], AuditRow>;
  private readonly walkStmt: BetterSqlite3.Statement<[], AuditRow>;
  private readonly appendTx: BetterSqlite3.Transaction<(ev: AuditEvent, now: number) => AuditRecord>;

  constructor(db: BetterSqlite3.Database) {
    this.lastStmt = db.prepare('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1');
    this.insertStmt = db.prepare(
      `INSERT INTO audit_log (${COLS}) VALUES (
         @seq, @at, @action, @outcome, @code, @bot, @instance_id, @method, @actor, @remote,
         @details, @prev_hash, @hash)`,
    );
    this.listStmt = db.prepare(`SELECT ${COLS} FROM audit_log WHERE at >= ? ORDER BY seq LIMIT ?`);
    this.walkStmt = db.prepare(`SELECT ${COLS} FROM audit_log ORDER BY seq`);
    this.appendTx = db.transaction((ev: AuditEvent, now: number) => this.appendLocked(ev, now));
  }

  /**
   * Append one event. Reading the chain head and inserting happen in one write transaction
   * (BEGIN IMMEDIATE, or a savepoint inside an outer `Stores.tx`), so two processes can never
   * both extend the same head; the UNIQUE prev_hash column would refuse it anyway.
   */
  append(ev: AuditEvent, now: number): AuditRecord {
    return this.appendTx.immediate(ev, now);
  }

  /** Rows with `at >= since`, in chain (seq) order, at most `limit` of them (default: all). */
  list(opts?: { since?: number; limit?: number }): AuditRecord[] {
    return this.listStmt.all(opts?.since ?? Number.MIN_SAFE_INTEGER, opts?.limit ?? -1).map(toRecord);
  }

  /**
   * Walk every row in seq order. `rows` counts the rows that verified; on failure `brokenAt`
   * is the first row that does not, with reason 'sequence gap' (a row is missing before it),
   * 'broken link' (its prevHash is not the previous row's hash) or 'hash mismatch' (its
   * content was changed).
   */
  verify(): AuditVerifyResult {
    let expectedSeq = 1;
    let prevHash = AUDIT_GENESIS_HASH;
    let rows = 0;
    for (const row of this.walkStmt.iterate()) {
      const broken = (reason: string): AuditVerifyResult => ({ ok: false, rows, brokenAt: row.seq, reason });
      if (row.seq !== expectedSeq) return broken('sequence gap');
      if (row.prev_hash !== prevHash) return broken('broken link');
      let record: AuditRecord;
      try {
        record = toRecord(row);
      } catch {
        return broken('hash mismatch'); // details no longer parse: the row was edited
      }
      if (auditRowHash(row.prev_hash, record) !== row.hash) return broken('hash mismatch');
      prevHash = row.hash;
      expectedSeq++;
      rows++;
    }
    return { ok: true, rows };
  }

  private appendLocked(ev: AuditEvent, now: number): AuditRecord {
    const last = this.lastStmt.get();
    const prevHash = last?.hash ?? AUDIT_GENESIS_HASH;
    // Round-trip details through canonical JSON so the returned record equals what list()
    // reads back (and what the hash covers).
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
    const hash = auditRowHash(prevHash, content);
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

function toRecord(row: AuditRow): AuditRecord {
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
