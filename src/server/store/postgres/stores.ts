/**
 * The async store contract (../types.ts) on PostgreSQL.
 *
 * - `withWriteTx(fn)`: BEGIN on one reserved pooled connection (READ COMMITTED), sent with the
 *   first statement (./transaction.ts), `fn` gets stores bound to that connection, COMMIT when it
 *   resolves, ROLLBACK when it throws. A failed statement aborts
 *   the transaction; if `fn` swallows the error the COMMIT is answered with ROLLBACK and
 *   `withWriteTx` rejects (never success without commit). A serialization failure (40001) or
 *   deadlock (40P01) runs `fn` again, at most TX_ATTEMPTS (./db.ts) times in all.
 * - Serial behaviour of read-then-write decisions comes from locks the stores take inside a
 *   transaction, not from SERIALIZABLE (which would make 20 concurrent audit appends retry each
 *   other in turn): the instance row FOR UPDATE (generation check → recordIssue), an advisory
 *   lock per request id (idempotency get → put), an advisory lock for the audit chain head.
 *   Single use is the conditional UPDATE itself.
 * - Reads outside a transaction go to any pooled connection and see committed data only; a write
 *   outside is a statement that autocommits (or its own BEGIN … COMMIT when it has several).
 * - Opening is synchronous (no connection yet); the first call waits for `ready` (migrations and
 *   the opening checks), and every call rejects with its error if that failed.
 * - Connection trouble rejects with SigilError `store_unavailable` (./connection.ts).
 */
import type {
  AdminCredentialStore,
  AuditStore,
  BotLockStore,
  CertificateStore,
  ChallengeStore,
  DeviceStore,
  IdempotencyStore,
  InstanceStore,
  KeyBindingStore,
  ResourceStore,
  Stores,
  TokenReplayStore,
  TokenStore,
  TxStores,
} from '../types.js';
import { PgAdminCredentialStore } from './admin.js';
import { PgAuditStore, type PgAuditOptions } from './audit.js';
import { PgBotLockStore } from './bot-locks.js';
import { PgCertificateStore } from './certificates.js';
import { PgChallengeStore } from './challenges.js';
import type { PgChangeFeed } from './change-feed.js';
import { toStoreError, type Pool } from './connection.js';
import { poolDb, withRetries, type Db } from './db.js';
import { runTransaction } from './transaction.js';
import { AuditTail } from './audit-tail.js';
import { PgDeviceStore } from './devices.js';
import { PgFleetStore } from './fleet.js';
import { PgIssuerRegistry } from './issuers.js';
import { PgUiSessionStore } from './ui-sessions.js';
import type { UiSessionStore } from '../ui-session-types.js';
import type { IssuerRegistryStore } from '../issuer-registry-types.js';
import type { FleetStore } from '../fleet-types.js';
import { PgIdempotencyStore } from './idempotency.js';
import { PgInstanceStore } from './instances.js';
import { PgKeyBindingStore } from './key-bindings.js';
import { PolicyCache } from './policy-cache.js';
import { PgResourceStore } from './resources.js';
import { PgTokenReplayStore } from './token-replay.js';
import { PgTokenStore } from './tokens.js';

/** The per-aggregate stores over one `Db` (the pool, or one transaction). */
/** `tail`: the issuer's knowledge of the audit chain head (./audit-tail.ts), shared by all its sets. */
export function pgStoreSet(db: Db, audit: PgAuditOptions, tail?: AuditTail): TxStores {
  return {
    resources: new PgResourceStore(db),
    tokens: new PgTokenStore(db),
    challenges: new PgChallengeStore(db),
    devices: new PgDeviceStore(db),
    keyBindings: new PgKeyBindingStore(db),
    tokenReplay: new PgTokenReplayStore(db),
    instances: new PgInstanceStore(db),
    botLocks: new PgBotLockStore(db),
    certificates: new PgCertificateStore(db),
    idempotency: new PgIdempotencyStore(db),
    audit: new PgAuditStore(db, audit.key, tail),
    admin: new PgAdminCredentialStore(db),
  };
}

export class PostgresStores implements Stores {
  readonly resources: ResourceStore;
  readonly tokens: TokenStore;
  readonly challenges: ChallengeStore;
  readonly devices: DeviceStore;
  readonly keyBindings: KeyBindingStore;
  readonly tokenReplay: TokenReplayStore;
  readonly instances: InstanceStore;
  readonly botLocks: BotLockStore;
  readonly certificates: CertificateStore;
  readonly idempotency: IdempotencyStore;
  readonly audit: AuditStore;
  readonly admin: AdminCredentialStore;

  /** The fleet view's reads (issue #18), on any pooled connection, never in a transaction. */
  readonly fleet: FleetStore;
  /** The issuer registry and cRLNumber counters (issue #15; ./issuers.ts), outside transactions. */
  readonly issuers: IssuerRegistryStore;
  /** Fleet-view sessions (./ui-sessions.ts), shared by every issuer on the database. */
  readonly uiSessions: UiSessionStore;

  /** Settles once the database is migrated and the opening checks passed. */
  readonly ready: Promise<void>;
  /**
   * The LISTEN/NOTIFY feed of other issuers' changes (./change-feed.ts), when this issuer caches
   * policy (./policy-cache.ts); the service subscribes to it for the CRL and pushed events.
   */
  readonly changes: PgChangeFeed | undefined;
  /** The policy cache, when there is a change feed to keep it correct. */
  readonly cache: PolicyCache | undefined;
  #isReady = false;
  /** This issuer's knowledge of the audit chain head: appends without reading it (./audit-tail.ts). */
  readonly #auditTail = new AuditTail();
  #closed: Promise<void> | undefined;

  /**
   * `pool`: from ./connection.ts openPool. `prepare`: what must succeed before the first call
   * (migrations, the audit key check), run once, now. `where`: the redacted URL, for messages.
   */
  constructor(
    private readonly pool: Pool,
    private readonly auditOpts: PgAuditOptions,
    prepare: () => Promise<void>,
    private readonly where: string,
    changes?: PgChangeFeed,
  ) {
    this.changes = changes;
    const cache = changes ? new PolicyCache(() => changes.live) : undefined;
    this.cache = cache;
    if (changes && cache) changes.subscribe((event) => cache.invalidate(event));
    this.ready = prepare().then(
      () => {
        this.#isReady = true;
      },
      (err: unknown) => {
        throw toStoreError(err, where);
      },
    );
    // A failure is reported to whoever calls first (or awaits `ready`), not as an unhandled rejection.
    this.ready.catch(() => undefined);
    const top = guarded(pgStoreSet(poolDb(pool, this.cache), auditOpts, this.#auditTail), this);
    this.resources = top.resources;
    this.tokens = top.tokens;
    this.challenges = top.challenges;
    this.devices = top.devices;
    this.keyBindings = top.keyBindings;
    this.tokenReplay = top.tokenReplay;
    this.instances = top.instances;
    this.botLocks = top.botLocks;
    this.certificates = top.certificates;
    this.idempotency = top.idempotency;
    this.audit = top.audit;
    this.admin = top.admin;
    this.fleet = new PgFleetStore(poolDb(pool), (call) => this.enter(call));
    this.issuers = new PgIssuerRegistry(poolDb(pool), (call) => this.enter(call));
    this.uiSessions = new PgUiSessionStore(poolDb(pool), (call) => this.enter(call));
  }

  /** Wait for `ready`, refuse after close; then run `call`, mapping connection trouble. */
  async enter<T>(call: () => Promise<T>): Promise<T> {
    if (this.#closed) throw closedError();
    if (!this.#isReady) await this.ready;
    try {
      return await call();
    } catch (err) {
      throw toStoreError(err, this.where);
    }
  }

  withWriteTx<T>(fn: (tx: TxStores) => Promise<T>): Promise<T> {
    return this.enter(() => withRetries(() => this.#once(fn)));
  }

  async #once<T>(fn: (tx: TxStores) => Promise<T>): Promise<T> {
    // BEGIN goes out with the first statement (./transaction.ts): no round trip of its own.
    const { value, tx } = await runTransaction(this.pool, this.cache, (txDb) =>
      fn(pgStoreSet(txDb, this.auditOpts, this.#auditTail)),
    );
    // Committed: this issuer sees its own policy and lock changes at once (the others through NOTIFY).
    for (const topic of tx.wroteTopics) this.cache?.invalidate(topic);
    return value;
  }

  /** Waits for running calls' statements (the driver ends the pool after its queries), then closes. */
  close(): Promise<void> {
    this.#closed ??= this.ready
      .catch(() => undefined)
      .then(() => Promise.all([this.changes?.close(), this.pool.end({ timeout: 5 })]))
      .then(() => undefined);
    return this.#closed;
  }
}

/**
 * The top-level stores: each method waits for `ready` and maps connection errors (through
 * `owner.enter`). Built once per PostgresStores from the stores' own prototypes.
 */
function guarded(set: TxStores, owner: PostgresStores): TxStores {
  const out: Record<string, object> = {};
  for (const [name, store] of Object.entries(set) as Array<[string, object]>) {
    const view: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
    const proto = Object.getPrototypeOf(store) as Record<string, unknown>;
    for (const method of Object.getOwnPropertyNames(proto)) {
      if (method === 'constructor' || typeof proto[method] !== 'function') continue;
      const fn = proto[method] as (...args: unknown[]) => Promise<unknown>;
      view[method] = (...args) => owner.enter(() => fn.apply(store, args));
    }
    out[name] = view;
  }
  // Every method of every store class is wrapped above (private helpers are module functions).
  return out as unknown as TxStores;
}

function closedError(): TypeError {
  return new TypeError('the store is closed');
}
