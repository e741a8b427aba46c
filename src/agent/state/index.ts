/**
 * The agent's durable state in `<data-dir>/agent.db`: identity, trust bundle and issuer pin,
 * request outbox, renewal history and status counters. One SQLite connection, narrow stores
 * per aggregate (db.ts explains the durability settings); this file composes them and owns the
 * one cross-store operation, {@link AgentState.completeRenewal}.
 */
import { SigilError } from '../../errors.js';
import { BundleStore } from './bundle.js';
import type { IssuerPin, TrustBundle } from './bundle.js';
import { openAgentDb } from './db.js';
import type { AgentDb } from './db.js';
import { openAgentDbReadOnly } from './db-readonly.js';
import { HistoryStore } from './history.js';
import type { HistoryEntry, HistoryRecord } from './history.js';
import { IdentityStore } from './identity.js';
import type { Identity, TransportCert } from './identity.js';
import { OutboxStore } from './outbox.js';
import type { OutboxEntry } from './outbox.js';
import { SettingsStore } from './settings.js';
import { StatusStore } from './status.js';
import type { AgentStatus, AgentStatusUpdate } from './status.js';
import { WorkloadStore } from './workload.js';

export type {
  AgentStatus,
  AgentStatusUpdate,
  HistoryEntry,
  HistoryRecord,
  Identity,
  IssuerPin,
  OutboxEntry,
  TransportCert,
  TrustBundle,
};
export { AGENT_DB_FILE, AGENT_SCHEMA_VERSION } from './db.js';
export { HISTORY_KEEP } from './history.js';

export interface AgentState {
  getIdentity(): Identity | undefined;
  /** The identity the current one replaced, if any. */
  getPreviousIdentity(): Identity | undefined;
  /** Atomically make `id` current; the replaced identity becomes 'previous'. */
  saveIdentity(id: Identity): void;

  getBundle(): TrustBundle | undefined;
  saveBundle(bundle: TrustBundle): void;
  getIssuerPin(): IssuerPin | undefined;
  /** First contact records the pin; a different pin later throws `pin_mismatch`. */
  pinIssuer(pin: string, at: number): void;
  /** Replace the pin after a verified CA rotation or an operator reset. */
  replaceIssuerPin(pin: string, at: number): void;

  /** Persist a request before sending it (idempotent for an identical entry). */
  putOutbox(entry: OutboxEntry): void;
  /** Pending requests, oldest first, optionally for one op. */
  getOutbox(op?: string): OutboxEntry[];
  deleteOutbox(requestId: string): boolean;
  /**
   * In ONE transaction: save `identity`, delete outbox row `requestId`, append an 'ok' history
   * row. Throws `conflict` (changing nothing) when no such request is pending.
   */
  completeRenewal(requestId: string, identity: Identity, at?: number): void;

  appendHistory(entry: HistoryEntry): void;
  /** Newest first. */
  listHistory(limit: number): HistoryRecord[];
  lastSuccess(): HistoryRecord | undefined;

  getStatus(): AgentStatus;
  /** Merge: undefined fields keep their value, null clears. */
  setStatus(update: AgentStatusUpdate): void;

  /** Durable small settings (see settings.ts). */
  getSetting(key: string): string | undefined;
  setSetting(key: string, value: string): void;
  /** The stored value, or `make()` stored now if there is none. */
  getOrCreateSetting(key: string, make: () => string): string;
  /** Every setting whose key starts with `prefix`. */
  listSettings(prefix: string): Array<{ key: string; value: string }>;

  /** The Workload API's cache (state/workload.ts, agent/workload/). */
  readonly workloads: WorkloadStore;

  close(): void;
}

/** Open (creating and migrating if needed) the agent state in `dataDir`. */
export function openAgentState(dataDir: string): AgentState {
  return new SqliteAgentState(openAgentDb(dataDir));
}

/** The agent state in `dataDir` for reading only, creating nothing (db-readonly.ts); undefined when there is none. */
export function openAgentStateReadOnly(dataDir: string): AgentState | undefined {
  const db = openAgentDbReadOnly(dataDir);
  return db ? new SqliteAgentState(db) : undefined;
}

class SqliteAgentState implements AgentState {
  readonly #db: AgentDb;
  readonly #identity: IdentityStore;
  readonly #bundle: BundleStore;
  readonly #outbox: OutboxStore;
  readonly #history: HistoryStore;
  readonly #status: StatusStore;
  readonly #settings: SettingsStore;
  readonly workloads: WorkloadStore;

  constructor(db: AgentDb) {
    this.#db = db;
    this.#identity = new IdentityStore(db);
    this.#bundle = new BundleStore(db);
    this.#outbox = new OutboxStore(db);
    this.#history = new HistoryStore(db);
    this.#status = new StatusStore(db);
    this.#settings = new SettingsStore(db);
    this.workloads = new WorkloadStore(db);
  }

  getIdentity(): Identity | undefined {
    return this.#identity.get();
  }

  getPreviousIdentity(): Identity | undefined {
    return this.#identity.getPrevious();
  }

  saveIdentity(id: Identity): void {
    this.#identity.save(id);
  }

  getBundle(): TrustBundle | undefined {
    return this.#bundle.get();
  }

  saveBundle(bundle: TrustBundle): void {
    this.#bundle.save(bundle);
  }

  getIssuerPin(): IssuerPin | undefined {
    return this.#bundle.getPin();
  }

  pinIssuer(pin: string, at: number): void {
    this.#bundle.pin(pin, at);
  }

  replaceIssuerPin(pin: string, at: number): void {
    this.#bundle.replacePin(pin, at);
  }

  putOutbox(entry: OutboxEntry): void {
    this.#outbox.put(entry);
  }

  getOutbox(op?: string): OutboxEntry[] {
    return this.#outbox.list(op);
  }

  deleteOutbox(requestId: string): boolean {
    return this.#outbox.delete(requestId);
  }

  completeRenewal(requestId: string, identity: Identity, at: number = Date.now()): void {
    // IMMEDIATE: take the write lock up front so the read of the outbox row and the writes
    // cannot interleave with another writer. Nested store transactions become savepoints.
    this.#db
      .transaction(() => {
        const pending = this.#outbox.get(requestId);
        if (!pending) throw new SigilError('conflict', `no pending request ${requestId} in the outbox`);
        this.#outbox.delete(requestId);
        // Through the public method on purpose: whatever saveIdentity does, it commits or rolls
        // back together with the outbox delete and the history row.
        this.saveIdentity(identity);
        this.#history.append({ at, op: pending.op, outcome: 'ok', serial: identity.serial });
      })
      .immediate();
  }

  appendHistory(entry: HistoryEntry): void {
    this.#history.append(entry);
  }

  listHistory(limit: number): HistoryRecord[] {
    return this.#history.list(limit);
  }

  lastSuccess(): HistoryRecord | undefined {
    return this.#history.lastSuccess();
  }

  getStatus(): AgentStatus {
    return this.#status.get();
  }

  setStatus(update: AgentStatusUpdate): void {
    this.#status.set(update);
  }

  getSetting(key: string): string | undefined {
    return this.#settings.get(key);
  }

  setSetting(key: string, value: string): void {
    this.#settings.set(key, value);
  }

  getOrCreateSetting(key: string, make: () => string): string {
    return this.#settings.getOrCreate(key, make);
  }

  listSettings(prefix: string): Array<{ key: string; value: string }> {
    return this.#settings.list(prefix);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
