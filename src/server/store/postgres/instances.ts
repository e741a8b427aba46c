/** Joined machines on PostgreSQL (types.ts InstanceStore). */
import type { KeyStorage } from '../../../keystore/signer.js';
import { SigilError } from '../../../errors.js';
import type { InstanceRecord, InstanceStore, NewInstance } from '../types.js';
import { canonicalJson } from '../sqlite/canonical-json.js';
import { attestationOkOf } from '../fleet-query.js';
import { CHANGE_CHANNEL } from './change-feed.js';
import { TxDb, type Db } from './db.js';
import { mergeFactsText } from '../facts-merge.js';

interface InstanceRow {
  id: string;
  bot: string;
  join_method: string;
  spiffe_id: string;
  generation: number;
  locked: boolean;
  lock_reason: string | null;
  facts: string;
  key_storage: KeyStorage;
  exportable: boolean;
  created_at: number;
  updated_at: number;
  last_seen_at: number;
  current_serial: string | null;
  current_not_after: number | null;
}

type IssueUpdate = Parameters<InstanceStore['recordIssue']>[1];

export class PgInstanceStore implements InstanceStore {
  /**
   * Inside a transaction (this store set belongs to one: ./stores.ts pgStoreSet): the facts text
   * of each row this transaction holds FOR UPDATE, as it now stands. Read by recordIssue's facts
   * merge, so that it needs no read of its own; gone with the transaction.
   */
  private readonly lockedFacts = new Map<string, string>();

  constructor(private readonly db: Db) {}

  async create(rec: NewInstance): Promise<void> {
    await this.db.sql`
      INSERT INTO instances (id, bot, join_method, spiffe_id, generation, locked, lock_reason, facts, key_storage,
                             exportable, created_at, updated_at, last_seen_at, attestation_ok)
      VALUES (${rec.id}, ${rec.bot}, ${rec.joinMethod}, ${rec.spiffeId}, ${rec.generation}, false, NULL,
              ${canonicalJson(rec.facts)}, ${rec.keyStorage}, ${rec.exportable}, ${rec.createdAt}, ${rec.createdAt},
              ${rec.createdAt}, ${attestationOkOf(rec.facts)})`;
  }

  /**
   * Inside a transaction the row is read FOR UPDATE: the generation check that precedes
   * `recordIssue` (and the lock decisions) must see the newest committed generation and keep it
   * until COMMIT. Two issuers renewing one instance at once: the second waits here, then reads
   * the first one's generation and refuses — the "behave serially" rule of types.ts, by row lock.
   */
  async get(id: string): Promise<InstanceRecord | undefined> {
    const sql = this.db.sql;
    const [row] = this.db.inTx
      ? await sql<InstanceRow[]>`
          SELECT id, bot, join_method, spiffe_id, generation, locked, lock_reason, facts, key_storage, exportable,
                 created_at, updated_at, last_seen_at, current_serial, current_not_after
            FROM instances WHERE id = ${id} FOR UPDATE`
      : await sql<InstanceRow[]>`
          SELECT id, bot, join_method, spiffe_id, generation, locked, lock_reason, facts, key_storage, exportable,
                 created_at, updated_at, last_seen_at, current_serial, current_not_after
            FROM instances WHERE id = ${id}`;
    if (row && this.db instanceof TxDb) this.lockedFacts.set(id, row.facts);
    return row && toRecord(row);
  }

  async list(filter?: { bot?: string }): Promise<InstanceRecord[]> {
    const sql = this.db.sql;
    const rows =
      filter?.bot !== undefined
        ? await sql<InstanceRow[]>`
            SELECT id, bot, join_method, spiffe_id, generation, locked, lock_reason, facts, key_storage, exportable,
                   created_at, updated_at, last_seen_at, current_serial, current_not_after
              FROM instances WHERE bot = ${filter.bot} ORDER BY created_at, id COLLATE "C"`
        : await sql<InstanceRow[]>`
            SELECT id, bot, join_method, spiffe_id, generation, locked, lock_reason, facts, key_storage, exportable,
                   created_at, updated_at, last_seen_at, current_serial, current_not_after
              FROM instances ORDER BY created_at, id COLLATE "C"`;
    return rows.map(toRecord);
  }

  async recordIssue(id: string, u: IssueUpdate): Promise<void> {
    if (u.mergeFacts !== undefined) return this.recordIssueWithFacts(id, u, u.mergeFacts);
    // current_not_before (the fleet view's overdue check, migration 2) from the certificate row
    // the issue inserted just before on this connection (ops/issue.ts); NULL if there is none.
    if (this.db instanceof TxDb) {
      // Inside withWriteTx: sent without waiting for its round trip (./db.ts), like the
      // certificate before it; the renewal's next statements go out in the same network write.
      // An unknown instance must still fail the transaction: the statement divides by the number
      // of rows it updated, so zero rows is a division_by_zero (22012), reported as unknown instance.
      const update = this.db.sql`
        WITH u AS (
          UPDATE instances
             SET generation = ${u.generation}, current_serial = ${u.serial}, current_not_after = ${u.notAfter},
                 current_not_before = (SELECT not_before FROM certificates WHERE serial = ${u.serial}),
                 key_storage = ${u.keyStorage}, exportable = ${u.exportable}, updated_at = ${u.now}, last_seen_at = ${u.now}
           WHERE id = ${id} RETURNING 1)
        SELECT 1 / (SELECT count(*)::int FROM u) AS updated`;
      this.db.sendWithoutWaiting(update, (err) =>
        (err as { code?: unknown })?.code === '22012' ? unknownInstance('recordIssue', id) : err,
      );
      return;
    }
    const r = await this.db.sql`
      UPDATE instances
         SET generation = ${u.generation}, current_serial = ${u.serial}, current_not_after = ${u.notAfter},
             current_not_before = (SELECT not_before FROM certificates WHERE serial = ${u.serial}),
             key_storage = ${u.keyStorage}, exportable = ${u.exportable}, updated_at = ${u.now}, last_seen_at = ${u.now}
       WHERE id = ${id}`;
    if (r.count === 0) throw unknownInstance('recordIssue', id);
  }

  /**
   * recordIssue with `mergeFacts` (types.ts): merged in JavaScript exactly as updateFacts merges
   * ({@link mergeFactsText}), written by the issue's own UPDATE. Inside withWriteTx, when this
   * transaction already read the row FOR UPDATE (`get`: every renewal does, before it decides),
   * the stored text it read is still the row's (the lock keeps other writers out, and this
   * transaction's own facts writes go through this store, which keeps {@link lockedFacts} up to
   * date), so no read is needed and the UPDATE is sent without waiting, as recordIssue's: no round
   * trip added. Otherwise the row is read FOR UPDATE first, as updateFacts reads it.
   *
   * Not merged by SQL: `jsonb` (`facts::jsonb || patch`) and the `json` functions refuse
   * \u0000 and lone surrogates, which canonicalJson writes and the stored facts may hold (a
   * failed attestation's message can quote event-log text): every later renewal would fail. And
   * `jsonb` would not keep the stored text canonical.
   */
  private async recordIssueWithFacts(id: string, u: IssueUpdate, patch: Record<string, unknown>): Promise<void> {
    const stored = this.db instanceof TxDb ? this.lockedFacts.get(id) : undefined;
    if (stored === undefined || !(this.db instanceof TxDb)) {
      return this.db.atomic(async (sql) => {
        const [row] = await sql<{ facts: string }[]>`SELECT facts FROM instances WHERE id = ${id} FOR UPDATE`;
        if (!row) throw unknownInstance('recordIssue', id);
        const merged = mergeFactsText(row.facts, patch);
        await sql`
          UPDATE instances
             SET generation = ${u.generation}, current_serial = ${u.serial}, current_not_after = ${u.notAfter},
                 current_not_before = (SELECT not_before FROM certificates WHERE serial = ${u.serial}),
                 key_storage = ${u.keyStorage}, exportable = ${u.exportable}, updated_at = ${u.now}, last_seen_at = ${u.now},
                 facts = ${merged.facts}, attestation_ok = ${merged.attestationOk}
           WHERE id = ${id}`;
        if (this.db.inTx) this.lockedFacts.set(id, merged.facts);
      });
    }
    const merged = mergeFactsText(stored, patch);
    this.lockedFacts.set(id, merged.facts);
    // As recordIssue's: zero rows updated divides by zero (22012), failing the transaction.
    const update = this.db.sql`
      WITH u AS (
        UPDATE instances
           SET generation = ${u.generation}, current_serial = ${u.serial}, current_not_after = ${u.notAfter},
               current_not_before = (SELECT not_before FROM certificates WHERE serial = ${u.serial}),
               key_storage = ${u.keyStorage}, exportable = ${u.exportable}, updated_at = ${u.now}, last_seen_at = ${u.now},
               facts = ${merged.facts}, attestation_ok = ${merged.attestationOk}
         WHERE id = ${id} RETURNING 1)
      SELECT 1 / (SELECT count(*)::int FROM u) AS updated`;
    this.db.sendWithoutWaiting(update, (err) =>
      (err as { code?: unknown })?.code === '22012' ? unknownInstance('recordIssue', id) : err,
    );
  }

  async setLocked(id: string, locked: boolean, reason: string | null, now: number): Promise<boolean> {
    // An unlock clears the reason: a stale reason on an unlocked instance would only mislead.
    // Every issuer is told in the same statement (./change-feed.ts: their CRL and pushed events
    // look at the audit log at once); the lock itself is read from the row by every renewal.
    const rows = await this.db.sql`
      WITH u AS (UPDATE instances SET locked = ${locked}, lock_reason = ${locked ? reason : null}, updated_at = ${now}
        WHERE id = ${id} RETURNING 1)
      SELECT pg_notify(${CHANGE_CHANNEL}, 'instances')::text AS notified FROM u`;
    if (rows.length === 0) return false;
    this.db.wrote('instances');
    return true;
  }

  /** Shallow merge, read FOR UPDATE and written in one transaction (a concurrent merge waits, then sees this one). */
  updateFacts(id: string, facts: Record<string, unknown>, now: number): Promise<void> {
    return this.db.atomic(async (sql) => {
      const [row] = await sql<{ facts: string }[]>`SELECT facts FROM instances WHERE id = ${id} FOR UPDATE`;
      if (!row) throw unknownInstance('updateFacts', id);
      const merged = mergeFactsText(row.facts, facts);
      await sql`UPDATE instances SET facts = ${merged.facts}, attestation_ok = ${merged.attestationOk},
                updated_at = ${now} WHERE id = ${id}`;
      if (this.db instanceof TxDb) this.lockedFacts.set(id, merged.facts);
    });
  }
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
    locked: row.locked,
    lockReason: row.lock_reason,
    facts: JSON.parse(row.facts) as Record<string, unknown>,
    keyStorage: row.key_storage,
    exportable: row.exportable,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastSeenAt: row.last_seen_at,
    currentSerial: row.current_serial,
    currentNotAfter: row.current_not_after,
  };
}
