/**
 * Append-only log of join/renew attempts, for `sigil agent status` and for diagnosing a device
 * in the field ("when did it last renew, and what failed since?"). Bounded: an edge device
 * retrying every few seconds for weeks must not fill its disk, so only the newest
 * {@link HISTORY_KEEP} rows are kept.
 */
import type { Statement } from 'better-sqlite3';
import type { AgentDb } from './db.js';

export const HISTORY_KEEP = 1000;
/** Messages are for humans; cap them so a huge upstream error cannot bloat the database. */
const MAX_MESSAGE = 1000;

export interface HistoryEntry {
  /** Unix ms. */
  at: number;
  op: string;
  outcome: 'ok' | 'error';
  /** Error code (SigilError code) when outcome is 'error'. */
  code?: string;
  /** Serial of the certificate obtained, when outcome is 'ok'. */
  serial?: string;
  message?: string;
}

/** A stored entry; `id` increases with insertion order. */
export interface HistoryRecord extends HistoryEntry {
  id: number;
}

interface HistoryRow {
  id: number;
  at: number;
  op: string;
  outcome: 'ok' | 'error';
  code: string | null;
  serial: string | null;
  message: string | null;
}

export class HistoryStore {
  readonly #db: AgentDb;
  readonly #insert: Statement<[Omit<HistoryRow, 'id'>]>;
  readonly #prune: Statement<[number]>;
  readonly #list: Statement<[number], HistoryRow>;
  readonly #lastOk: Statement<[], HistoryRow>;

  constructor(db: AgentDb) {
    this.#db = db;
    this.#insert = db.prepare(`INSERT INTO history (at, op, outcome, code, serial, message)
      VALUES (@at, @op, @outcome, @code, @serial, @message)`);
    this.#prune = db.prepare('DELETE FROM history WHERE id <= (SELECT MAX(id) FROM history) - ?');
    // Newest first; id breaks ties between entries in the same millisecond.
    this.#list = db.prepare('SELECT * FROM history ORDER BY at DESC, id DESC LIMIT ?');
    this.#lastOk = db.prepare("SELECT * FROM history WHERE outcome = 'ok' ORDER BY at DESC, id DESC LIMIT 1");
  }

  /** Nests (as a savepoint) when called inside another transaction, e.g. completeRenewal. */
  append(e: HistoryEntry): void {
    if (!Number.isSafeInteger(e.at)) throw new TypeError('history: at must be an integer (unix ms)');
    if (e.outcome !== 'ok' && e.outcome !== 'error')
      throw new TypeError(`history: invalid outcome ${String(e.outcome)}`);
    const row = {
      at: e.at,
      op: e.op,
      outcome: e.outcome,
      code: e.code ?? null,
      serial: e.serial ?? null,
      message: e.message === undefined ? null : e.message.slice(0, MAX_MESSAGE),
    };
    this.#db.transaction(() => {
      this.#insert.run(row);
      this.#prune.run(HISTORY_KEEP);
    })();
  }

  /** Newest first. */
  list(limit: number): HistoryRecord[] {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new TypeError('history: limit must be a non-negative integer');
    return this.#list.all(limit).map(toRecord);
  }

  lastSuccess(): HistoryRecord | undefined {
    const r = this.#lastOk.get();
    return r ? toRecord(r) : undefined;
  }
}

function toRecord(r: HistoryRow): HistoryRecord {
  const e: HistoryRecord = { id: r.id, at: r.at, op: r.op, outcome: r.outcome };
  if (r.code !== null) e.code = r.code;
  if (r.serial !== null) e.serial = r.serial;
  if (r.message !== null) e.message = r.message;
  return e;
}
