/** Joined machines: one row per instance, with its current certificate and lock state. */
import type BetterSqlite3 from 'better-sqlite3';
import type { KeyStorage } from '../../../keystore/signer.js';
import { SigilError } from '../../../errors.js';
import type { InstanceRecord } from '../types.js';
import type { SyncInstanceStore } from './sync-types.js';
import { canonicalJson } from './canonical-json.js';
import { attestationOkOf } from '../fleet-query.js';
import { mergeFactsText } from '../facts-merge.js';

interface InstanceRow {
  id: string;
  bot: string;
  join_method: string;
  spiffe_id: string;
  generation: number;
  locked: 0 | 1;
  lock_reason: string | null;
  facts: string;
  key_storage: KeyStorage;
  exportable: 0 | 1;
  created_at: number;
  updated_at: number;
  last_seen_at: number;
  current_serial: string | null;
  current_not_after: number | null;
}

type NewInstance = Parameters<SyncInstanceStore['create']>[0];
type IssueUpdate = Parameters<SyncInstanceStore['recordIssue']>[1];

const COLS =
  'id, bot, join_method, spiffe_id, generation, locked, lock_reason, facts, key_storage, exportable, ' +
  'created_at, updated_at, last_seen_at, current_serial, current_not_after';

export class SqliteInstanceStore implements SyncInstanceStore {
  private readonly insertStmt: BetterSqlite3.Statement<[NewInstanceRow]>;
  private readonly getStmt: BetterSqlite3.Statement<[string], InstanceRow>;
  private readonly listAllStmt: BetterSqlite3.Statement<[], InstanceRow>;
  private readonly listByBotStmt: BetterSqlite3.Statement<[string], InstanceRow>;
  private readonly recordIssueStmt: BetterSqlite3.Statement<[IssueRow]>;
  private readonly recordIssueWithFactsStmt: BetterSqlite3.Statement<[IssueRow & FactsColumns]>;
  private readonly setLockedStmt: BetterSqlite3.Statement<[0 | 1, string | null, number, string]>;
  private readonly getFactsStmt: BetterSqlite3.Statement<[string], string>;
  private readonly setFactsStmt: BetterSqlite3.Statement<[string, 0 | 1 | null, number, string]>;
  private readonly updateFactsTx: BetterSqlite3.Transaction<
    (id: string, facts: Record<string, unknown>, now: number) => void
  >;

  private readonly recordIssueWithFactsTx: BetterSqlite3.Transaction<
    (row: IssueRow, facts: Record<string, unknown>) => void
  >;

  constructor(private readonly db: BetterSqlite3.Database) {
    this.insertStmt = db.prepare(
      `INSERT INTO instances (${COLS}, attestation_ok) VALUES (
         @id, @bot, @join_method, @spiffe_id, @generation, 0, NULL, @facts, @key_storage, @exportable,
         @created_at, @created_at, @created_at, NULL, NULL, @attestation_ok)`,
    );
    this.getStmt = db.prepare(`SELECT ${COLS} FROM instances WHERE id = ?`);
    this.listAllStmt = db.prepare(`SELECT ${COLS} FROM instances ORDER BY created_at, id`);
    this.listByBotStmt = db.prepare(`SELECT ${COLS} FROM instances WHERE bot = ? ORDER BY created_at, id`);
    // current_not_before (the fleet view's overdue check, migration 7) from the certificate row
    // the issue inserted just before (ops/issue.ts); NULL if there is none.
    const issueSet = `generation = @generation, current_serial = @serial, current_not_after = @not_after,
              current_not_before = (SELECT not_before FROM certificates WHERE serial = @serial),
              key_storage = @key_storage, exportable = @exportable, updated_at = @now, last_seen_at = @now`;
    this.recordIssueStmt = db.prepare(`UPDATE instances SET ${issueSet} WHERE id = @id`);
    // A renewal's facts changes ride on its issue (types.ts recordIssue mergeFacts): one UPDATE of
    // the row instead of two (issue #16). Here about even in CPU (the second UPDATE hit a row already
    // dirty in the transaction; the merge is the cost, and it stays); on PostgreSQL, two round trips less.
    this.recordIssueWithFactsStmt = db.prepare(
      `UPDATE instances SET ${issueSet}, facts = @facts, attestation_ok = @attestation_ok WHERE id = @id`,
    );
    this.setLockedStmt = db.prepare('UPDATE instances SET locked = ?, lock_reason = ?, updated_at = ? WHERE id = ?');
    this.getFactsStmt = db.prepare<[string], string>('SELECT facts FROM instances WHERE id = ?').pluck();
    this.setFactsStmt = db.prepare('UPDATE instances SET facts = ?, attestation_ok = ?, updated_at = ? WHERE id = ?');
    this.recordIssueWithFactsTx = db.transaction((row: IssueRow, facts: Record<string, unknown>) =>
      this.recordIssueWithFacts(row, facts),
    );
    this.updateFactsTx = db.transaction((id: string, facts: Record<string, unknown>, now: number) => {
      const merged = this.merged('updateFacts', id, facts);
      this.setFactsStmt.run(merged.facts, merged.attestation_ok, now, id);
    });
  }

  create(rec: NewInstance): void {
    this.insertStmt.run({
      id: rec.id,
      bot: rec.bot,
      join_method: rec.joinMethod,
      spiffe_id: rec.spiffeId,
      generation: rec.generation,
      facts: canonicalJson(rec.facts),
      key_storage: rec.keyStorage,
      exportable: rec.exportable ? 1 : 0,
      created_at: rec.createdAt,
      attestation_ok: okColumn(attestationOkOf(rec.facts)),
    });
  }

  get(id: string): InstanceRecord | undefined {
    const row = this.getStmt.get(id);
    return row && toRecord(row);
  }

  list(filter?: { bot?: string }): InstanceRecord[] {
    const rows = filter?.bot !== undefined ? this.listByBotStmt.all(filter.bot) : this.listAllStmt.all();
    return rows.map(toRecord);
  }

  recordIssue(id: string, u: IssueUpdate): void {
    const row: IssueRow = {
      id,
      generation: u.generation,
      serial: u.serial,
      not_after: u.notAfter,
      key_storage: u.keyStorage,
      exportable: u.exportable ? 1 : 0,
      now: u.now,
    };
    if (u.mergeFacts === undefined) {
      if (this.recordIssueStmt.run(row).changes === 0) throw unknownInstance('recordIssue', id);
      return;
    }
    // The facts read and the UPDATE must not be split by another writer: inside the caller's
    // write transaction (the issuer's case: the renewal's) they are already one unit, and no
    // savepoint is spent on them; called alone, they run as a transaction of their own.
    if (this.db.inTransaction) this.recordIssueWithFacts(row, u.mergeFacts);
    else this.recordIssueWithFactsTx.immediate(row, u.mergeFacts);
  }

  private recordIssueWithFacts(row: IssueRow, facts: Record<string, unknown>): void {
    const merged = this.merged('recordIssue', row.id, facts);
    this.recordIssueWithFactsStmt.run({ ...row, ...merged });
  }

  /** The stored facts with `facts` merged in (shallow: given keys replace, others stay), as stored. */
  private merged(op: string, id: string, facts: Record<string, unknown>): FactsColumns {
    const current = this.getFactsStmt.get(id);
    if (current === undefined) throw unknownInstance(op, id);
    const merged = mergeFactsText(current, facts);
    return { facts: merged.facts, attestation_ok: okColumn(merged.attestationOk) };
  }

  /** Returns false when there is no such instance. */
  setLocked(id: string, locked: boolean, reason: string | null, now: number): boolean {
    // An unlock clears the reason: a stale reason on an unlocked instance would only mislead.
    return this.setLockedStmt.run(locked ? 1 : 0, locked ? reason : null, now, id).changes > 0;
  }

  /** Shallow merge: keys in `facts` replace the stored ones, other stored keys stay. */
  updateFacts(id: string, facts: Record<string, unknown>, now: number): void {
    this.updateFactsTx.immediate(id, facts, now);
  }
}

interface NewInstanceRow {
  id: string;
  bot: string;
  join_method: string;
  spiffe_id: string;
  generation: number;
  facts: string;
  key_storage: KeyStorage;
  exportable: 0 | 1;
  created_at: number;
  /** facts.attestation.ok, kept in its own column for the fleet view (migration 7). */
  attestation_ok: 0 | 1 | null;
}

/** The facts column and the fleet view's attestation state derived from it (migration 7). */
interface FactsColumns {
  facts: string;
  attestation_ok: 0 | 1 | null;
}

interface IssueRow {
  id: string;
  generation: number;
  serial: string;
  not_after: number;
  key_storage: KeyStorage;
  exportable: 0 | 1;
  now: number;
}

function okColumn(ok: boolean | null): 0 | 1 | null {
  return ok === null ? null : ok ? 1 : 0;
}

/** The service checks existence inside its transaction first; reaching this is a bug. */
function unknownInstance(op: string, id: string): SigilError {
  return new SigilError('internal', `${op}: no instance with id ${JSON.stringify(id)}`);
}

function toRecord(row: InstanceRow): InstanceRecord {
  return {
    id: row.id,
    bot: row.bot,
    joinMethod: row.join_method,
    spiffeId: row.spiffe_id,
    generation: row.generation,
    locked: row.locked === 1,
    lockReason: row.lock_reason,
    facts: JSON.parse(row.facts) as Record<string, unknown>,
    keyStorage: row.key_storage,
    exportable: row.exportable === 1,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastSeenAt: row.last_seen_at,
    currentSerial: row.current_serial,
    currentNotAfter: row.current_not_after,
  };
}
