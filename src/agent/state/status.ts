/**
 * One row of counters the status command and the metrics endpoint read: how the renewal loop
 * is doing right now. Kept in the database (not memory) so `sigil agent status`, a separate
 * process, can read it and so backoff survives a restart instead of hammering the issuer.
 */
import type { Statement } from 'better-sqlite3';
import type { AgentDb } from './db.js';

export interface AgentStatus {
  consecutiveFailures: number;
  /** `code: message` of the last failure, or null after a success. */
  lastError: string | null;
  /** Unix ms, or null if never. */
  lastAttemptAt: number | null;
  nextAttemptAt: number | null;
  /** Transport used last ('https', 'mqtt'), or null. */
  transport: string | null;
}

/** Fields left undefined keep their stored value; null clears a nullable field. */
export type AgentStatusUpdate = Partial<AgentStatus>;

interface StatusRow {
  consecutive_failures: number;
  last_error: string | null;
  last_attempt_at: number | null;
  next_attempt_at: number | null;
  transport: string | null;
}

const INITIAL: AgentStatus = {
  consecutiveFailures: 0,
  lastError: null,
  lastAttemptAt: null,
  nextAttemptAt: null,
  transport: null,
};

export class StatusStore {
  readonly #db: AgentDb;
  readonly #get: Statement<[], StatusRow>;
  readonly #put: Statement<[StatusRow]>;

  constructor(db: AgentDb) {
    this.#db = db;
    this.#get = db.prepare('SELECT * FROM status WHERE id = 1');
    this.#put =
      db.prepare(`INSERT OR REPLACE INTO status (id, consecutive_failures, last_error, last_attempt_at, next_attempt_at, transport)
      VALUES (1, @consecutive_failures, @last_error, @last_attempt_at, @next_attempt_at, @transport)`);
  }

  get(): AgentStatus {
    const r = this.#get.get();
    if (!r) return { ...INITIAL };
    return {
      consecutiveFailures: r.consecutive_failures,
      lastError: r.last_error,
      lastAttemptAt: r.last_attempt_at,
      nextAttemptAt: r.next_attempt_at,
      transport: r.transport,
    };
  }

  /** Merge `update` into the stored row (read-modify-write in one transaction). */
  set(update: AgentStatusUpdate): void {
    if (
      update.consecutiveFailures !== undefined &&
      (!Number.isSafeInteger(update.consecutiveFailures) || update.consecutiveFailures < 0)
    ) {
      throw new TypeError('status: consecutiveFailures must be a non-negative integer');
    }
    for (const k of ['lastAttemptAt', 'nextAttemptAt'] as const) {
      const v = update[k];
      if (v !== undefined && v !== null && !Number.isSafeInteger(v))
        throw new TypeError(`status: ${k} must be an integer (unix ms) or null`);
    }
    this.#db.transaction(() => {
      const s = { ...this.get() };
      for (const k of Object.keys(INITIAL) as Array<keyof AgentStatus>) {
        if (update[k] !== undefined) (s as Record<keyof AgentStatus, unknown>)[k] = update[k];
      }
      this.#put.run({
        consecutive_failures: s.consecutiveFailures,
        last_error: s.lastError,
        last_attempt_at: s.lastAttemptAt,
        next_attempt_at: s.nextAttemptAt,
        transport: s.transport,
      });
    })();
  }
}
