/**
 * The issuer's persistence: narrow stores per aggregate (SPIRE's lesson: no 60-method god
 * interface), every method returning a Promise, behind one async, transactional contract
 * (issue #13) that a networked backend (PostgreSQL, issue #15) can implement. SQLite implements
 * it (sqlite/async.ts, over synchronous better-sqlite3 stores that stay internal to sqlite/);
 * docs/store-contract.md tells the history and the rules for callers.
 *
 * What every backend must guarantee (test/unit/store/conformance checks each point):
 *
 * - **One write transaction per `withWriteTx(fn)`.** `fn` gets transaction-scoped stores `tx`;
 *   reads through `tx` see the transaction's own writes; if `fn` throws (or rejects), everything
 *   it wrote is rolled back and `withWriteTx` rejects with that error. The promise resolves only
 *   after COMMIT succeeded. Using `tx` after `withWriteTx` settled is a caller bug (TypeError).
 * - **Isolation, serializable enough for the decisions made inside:** two transactions that
 *   read-then-write the same rows (the idempotency get-then-put, the instance generation check
 *   before `recordIssue`, the audit chain head) behave as if run one after the other. SQLite: write
 *   transactions are serialised, in process by a FIFO queue, across processes by BEGIN IMMEDIATE.
 *   PostgreSQL: SERIALIZABLE (or row locks taken by the store), and a serialization failure
 *   (40001) or deadlock (40P01) makes the STORE retry the whole `fn`, a bounded number of times.
 *   Hence `fn` may run more than once: it must not cause effects outside the transaction (no
 *   network I/O, no metrics, no answers sent) — do those after `withWriteTx` resolved. Keep `fn`
 *   short: on SQLite every other writer, in this and in other processes, waits for it.
 * - **No nesting.** Inside `fn` use `tx`, never the outer stores or a second `withWriteTx`: on
 *   SQLite those wait for `fn`'s own transaction to end (a deadlock); on PostgreSQL they would
 *   run on another connection, outside the transaction.
 * - **Each method is atomic.** A method that rejects changed nothing. After a rejected store call
 *   inside `fn` the transaction may be unusable (PostgreSQL aborts it): let the error propagate.
 *   If `fn` catches one and returns normally anyway, the backend commits the other writes
 *   (SQLite) or rejects `withWriteTx` (PostgreSQL) — it never resolves without committing.
 * - **Single use is one conditional UPDATE** (`… WHERE used_at IS NULL AND expires_at > now`) for
 *   `tokens.consume` and `challenges.consume`: of N concurrent consumers, in any number of
 *   processes or issuers, exactly one gets ok (the others: `*_reused`).
 * - **One audit chain.** Appends are serialised (SQLite: the write lock; PostgreSQL: a lock on the
 *   chain head row or table) so concurrent appends from any number of transactions and processes
 *   form one chain: contiguous seq, each row linked to the one before, `verify()` ok.
 * - **Reads outside a transaction** (the top-level stores' read methods) see only committed data,
 *   never an open transaction's writes, and do not wait for write transactions where the backend
 *   can avoid it (SQLite file: a separate read connection on the WAL snapshot).
 * - **Writes outside a transaction** (a top-level write method) run as a transaction of their
 *   own. A decision that spans several calls belongs in one `withWriteTx`.
 * - Errors: constraint violations (duplicate key, unknown instance for a certificate) reject
 *   with the backend's error; lock waits that time out reject as the backend reports them
 *   (SQLite: SQLITE_BUSY after busy_timeout).
 *
 * Times are unix milliseconds (numbers) everywhere in this layer.
 */
import type { KeyStorage } from '../../keystore/signer.js';
import type { SigilError } from '../../errors.js';

/**
 * `role`, `bot`, `join_rule`, `workload` (a workload registration entry, issue #17) — policy
 * documents applied with `sigil ctl apply`. A backend must accept every kind listed here
 * (SQLite: migration 6 widened the `kind` CHECK).
 */
export type ResourceKind = 'role' | 'bot' | 'join_rule' | 'workload';

export interface Resource {
  kind: ResourceKind;
  name: string;
  /** Validated spec object (validation lives in server/policy, not here). */
  spec: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

export interface JoinTokenRecord {
  /** Hex SHA-256 of the token secret; the secret itself is never stored. */
  hash: string;
  bot: string;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
  /** Instance that used it (set on consume). */
  usedBy: string | null;
}

export type ConsumeResult =
  { ok: true; token: JoinTokenRecord } | { ok: false; reason: 'token_invalid' | 'token_expired' | 'token_reused' };

/** A challenge a join method asked the agent to answer (join/challenge.ts). Single use, short TTL. */
export interface ChallengeRecord {
  /** base64url, 128 random bits. */
  id: string;
  method: string;
  /** The join request (request id) and new key (sha256:<hex> of its SPKI) it was issued to. */
  requestId: string;
  spkiHash: string;
  /** The issuer's nonce (32 random bytes). */
  nonce: Buffer;
  /** Method state kept server-side (never sent), e.g. the chain the challenge was issued for. */
  state: Record<string, unknown>;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
}

export type ChallengeConsumeResult =
  { ok: true } | { ok: false; reason: 'challenge_invalid' | 'challenge_expired' | 'challenge_reused' };

/** A device pre-registered from a factory manifest (`sigil ctl devices import`). */
export interface DeviceRecord {
  id: number;
  /** join_rule the registration is limited to; null = any x509 rule with registered_only. */
  rule: string | null;
  /** The device serial number from the manifest. */
  serial: string;
  /** sha256:<hex> of the EK public area, when the factory read one. */
  ekPublicHash: string | null;
  /** sha256:<hex> of the IDevID certificate DER: what a join is matched by. */
  idevidFingerprint: string;
  /** The manifest line as imported (canonical JSON), for the record. */
  manifest: Record<string, unknown>;
  importedAt: number;
}

/**
 * "The first join binds this subject to that key" (TOFU bindings), for join methods whose
 * evidence is static and can be copied: an AWS instance identity document is the same bytes for
 * the instance's whole life, so the first join binds the instance id to a key the agent keeps,
 * and later joins must prove that key (join/aws-iid/). An administrator resets a binding.
 */
export interface KeyBindingRecord {
  /** Join method, e.g. 'aws_iid'. */
  method: string;
  /** What is bound, e.g. the EC2 instance id. */
  subject: string;
  /** sha256:<hex> of the bound key's SubjectPublicKeyInfo. */
  keyHash: string;
  /** The join rule and facts at binding time, for the record. */
  rule: string;
  facts: Record<string, unknown>;
  createdAt: number;
}

export interface InstanceRecord {
  id: string;
  bot: string;
  joinMethod: string;
  spiffeId: string;
  /** Generation of the newest certificate issued to this instance (1 after join). */
  generation: number;
  locked: boolean;
  lockReason: string | null;
  /** Method facts (e.g. EK hash, firmware profile) as JSON. */
  facts: Record<string, unknown>;
  keyStorage: KeyStorage;
  exportable: boolean;
  createdAt: number;
  updatedAt: number;
  lastSeenAt: number;
  currentSerial: string | null;
  currentNotAfter: number | null;
}

export interface CertificateRecord {
  /** Lowercase hex, no separators. */
  serial: string;
  instanceId: string;
  bot: string;
  generation: number;
  notBefore: number;
  notAfter: number;
  /** 'x509-svid' now; later 'ssh-user', 'db', ... */
  kind: string;
  keyStorage: KeyStorage;
  exportable: boolean;
  /** sha256:<hex> of the subject public key info. */
  spkiHash: string;
  requestId: string;
  issuedAt: number;
}

export interface IdempotencyRecord {
  requestId: string;
  /**
   * Hex SHA-256 of the request's JWS signing input (protocol/request-hash.ts), to detect a
   * reused id with other content or another signer. Legacy rows (signer ''): of the payload only.
   */
  requestHash: string;
  /** Who signed the request (server/ops/respond.ts signerOf); '' in rows from before migration 4. */
  signer: string;
  op: string;
  /** The exact response body (already serialised) returned the first time. */
  response: string;
  createdAt: number;
}

export interface AuditEvent {
  /** join | issue | renew | refuse | lock | unlock | token_create | apply | ... */
  action: string;
  /** ok | refused | error */
  outcome: string;
  /** Error code for refusals. */
  code?: string | null;
  bot?: string | null;
  instanceId?: string | null;
  method?: string | null;
  /** Free-form facts; never secrets. */
  details?: Record<string, unknown>;
  /** Who: 'agent', 'admin', 'system'. */
  actor?: string;
  remote?: string | null;
}

export interface AuditRecord extends Required<Omit<AuditEvent, 'details'>> {
  seq: number;
  at: number;
  details: Record<string, unknown>;
  /** Hex SHA-256 of the previous row's hash + this row's canonical content. */
  prevHash: string;
  hash: string;
}

export interface AuditVerifyResult {
  ok: boolean;
  rows: number;
  /** First sequence number whose hash or link does not verify. */
  brokenAt?: number;
  reason?: string;
}

/** A prune point: rows up to `seq` were removed; the chain goes on from `hash`. */
export interface AuditAnchor {
  seq: number;
  hash: string;
  at: number;
  pruned: number;
  /** The signed checkpoint written before the rows were removed (server/audit/checkpoints.ts). */
  checkpoint: Record<string, unknown>;
}

/** State of a chunked chain verification (AuditStore.verifyStep). */
export interface AuditWalk {
  nextSeq: number;
  prevHash: string;
  rows: number;
  done: boolean;
  brokenAt?: number;
  reason?: string;
}

// The stores.
export type PutResult = 'created' | 'updated' | 'unchanged';

export interface ResourceStore {
  /** Insert or replace; 'unchanged' when the spec is deep-equal (any key order). */
  put(kind: ResourceKind, name: string, spec: Record<string, unknown>, now: number): Promise<PutResult>;
  get(kind: ResourceKind, name: string): Promise<Resource | undefined>;
  /** Ordered by name. */
  list(kind: ResourceKind): Promise<Resource[]>;
  delete(kind: ResourceKind, name: string): Promise<boolean>;
}

export interface TokenStore {
  /** Rejects on a duplicate hash. */
  create(rec: { hash: string; bot: string; createdAt: number; expiresAt: number }): Promise<void>;
  /** Read-only lookup for an early, precise refusal; `consume` stays the deciding step. */
  get(hash: string): Promise<JoinTokenRecord | undefined>;
  /** Single use: one conditional UPDATE (see the header); expiry is exclusive; reuse wins over expiry. */
  consume(hash: string, now: number, usedBy: string): Promise<ConsumeResult>;
  /** Ordered by creation time. */
  list(): Promise<JoinTokenRecord[]>;
  /** Delete tokens expired before `before` and tokens used before `before`; returns how many. */
  prune(before: number): Promise<number>;
}

export interface ChallengeStore {
  create(rec: Omit<ChallengeRecord, 'usedAt'>): Promise<void>;
  get(id: string): Promise<ChallengeRecord | undefined>;
  /** Single use, as `TokenStore.consume`. */
  consume(id: string, now: number): Promise<ChallengeConsumeResult>;
  prune(before: number): Promise<number>;
}

export interface DeviceStore {
  getByFingerprint(fingerprint: string): Promise<DeviceRecord | undefined>;
  put(rec: Omit<DeviceRecord, 'id'>): Promise<PutResult>;
  list(filter?: { rule?: string }): Promise<DeviceRecord[]>;
}

export interface KeyBindingStore {
  get(method: string, subject: string): Promise<KeyBindingRecord | undefined>;
  /** Bind if unbound (INSERT … ON CONFLICT DO NOTHING); returns the binding now in force. */
  bind(rec: KeyBindingRecord): Promise<KeyBindingRecord>;
  reset(method: string, subject: string): Promise<boolean>;
  /** Ordered by method, then subject. */
  list(filter?: { method?: string }): Promise<KeyBindingRecord[]>;
}

export interface TokenReplayStore {
  seen(issuer: string, jti: string): Promise<boolean>;
  /** Record a use, atomically; false when it was already recorded (the replay). */
  record(issuer: string, jti: string, expiresAt: number, now: number): Promise<boolean>;
  prune(before: number): Promise<number>;
}

export type NewInstance = Omit<
  InstanceRecord,
  'locked' | 'lockReason' | 'updatedAt' | 'lastSeenAt' | 'currentSerial' | 'currentNotAfter'
>;

export interface InstanceStore {
  create(rec: NewInstance): Promise<void>;
  get(id: string): Promise<InstanceRecord | undefined>;
  /** Ordered by creation time, then id. */
  list(filter?: { bot?: string }): Promise<InstanceRecord[]>;
  /**
   * After a successful issue: set generation, serial, expiry, key facts; touch timestamps. The
   * generation check that precedes it must run in the same `withWriteTx` (see the header).
   * `mergeFacts`, when given, is merged into the stored facts BY THE SAME UPDATE, exactly as
   * {@link updateFacts} merges (and with the same fleet attestation state): a renewal's facts
   * changes (its attestation record, carrier, agent version) cost no statement of their own (issue #16).
   */
  recordIssue(
    id: string,
    u: {
      generation: number;
      serial: string;
      notAfter: number;
      keyStorage: KeyStorage;
      exportable: boolean;
      now: number;
      mergeFacts?: Record<string, unknown>;
    },
  ): Promise<void>;
  setLocked(id: string, locked: boolean, reason: string | null, now: number): Promise<boolean>;
  /**
   * Shallow merge into the stored facts: the given keys replace the stored ones (a key whose value
   * is undefined is removed: canonical JSON drops it), the others stay; rejects for an unknown instance.
   */
  updateFacts(id: string, facts: Record<string, unknown>, now: number): Promise<void>;
}

export interface BotLockStore {
  setLocked(bot: string, locked: boolean, reason: string | null, now: number): Promise<void>;
  isLocked(bot: string): Promise<boolean>;
  listLocked(): Promise<Array<{ bot: string; reason: string | null; at: number }>>;
}

export interface CertificateStore {
  /** Rejects on a duplicate serial, a serial that is not lowercase hex, an unknown instance (checked at commit). */
  insert(rec: CertificateRecord): Promise<void>;
  get(serial: string): Promise<CertificateRecord | undefined>;
  listByInstance(instanceId: string): Promise<CertificateRecord[]>;
  /** Current (newest-generation) unexpired certificates expiring before `before`, per bot. */
  expiringBefore(before: number, now: number): Promise<Array<{ bot: string; count: number }>>;
}

export interface IdempotencyStore {
  get(requestId: string): Promise<IdempotencyRecord | undefined>;
  /** Rejects when the request id is already stored (the first answer stays): `get` first, in the same transaction. */
  put(rec: IdempotencyRecord): Promise<void>;
  /**
   * Delete rows created before `before`, the oldest first, at most `limit` of them (all when
   * omitted); returns how many. The issuer prunes in chunks (issue #14): an hour of stored
   * answers at 1,000 renewals/s is 3.6 million rows, seconds of one DELETE holding the writer.
   */
  prune(before: number, limit?: number): Promise<number>;
}

export interface AuditStore {
  /** Extend the one chain (serialised, see the header). */
  append(ev: AuditEvent, now: number): Promise<AuditRecord>;
  /**
   * Rows with `at >= since` and `seq > afterSeq` (each bound optional), in seq order, at most
   * `limit`. `afterSeq` (issue #14) lets a tail read only what is new, by the primary key, instead
   * of every row of its time window again (server/events/audit-watcher.ts).
   */
  list(opts?: { since?: number; limit?: number; afterSeq?: number }): Promise<AuditRecord[]>;
  verify(): Promise<AuditVerifyResult>;
  startWalk(): Promise<AuditWalk>;
  verifyStep(walk: AuditWalk, maxRows?: number, onRow?: (seq: number, hash: string) => void): Promise<AuditWalk>;
  head(): Promise<{ seq: number; hash: string } | undefined>;
  anchor(): Promise<AuditAnchor | undefined>;
  keyInfo(): Promise<{ id: string; fromSeq: number } | undefined>;
  /** Which append-only protections exist (SQLite: triggers; PostgreSQL: its own equivalents). */
  triggers(): Promise<{ present: string[]; missing: string[] }>;
  pruneThrough(seq: number, checkpoint: string, now: number): Promise<number>;
  lastSeqBefore(before: number): Promise<number | undefined>;
}

export interface AdminCredentialStore {
  setAdminTokenHash(hash: string): Promise<void>;
  getAdminTokenHash(): Promise<string | undefined>;
  /**
   * Remember a credential signing key a compromise rotation withdrew (`rotate-key --overlap 0`),
   * by kind and the hex SHA-256 of its SubjectPublicKeyInfo; idempotent, never forgotten. Kept in
   * the store as well as in ca/rotating-keys.json so that a ca/ restored from before the rotation,
   * or a peer issuer not yet given the new files, cannot sign with the stolen key
   * (server/withdrawn-keys.ts).
   */
  rememberWithdrawnKey(key: WithdrawnKeyRecord): Promise<void>;
  /** Every key remembered as withdrawn, oldest first. */
  withdrawnKeys(): Promise<WithdrawnKeyRecord[]>;
}

/** A signing key a compromise rotation took out of service (AdminCredentialStore). */
export interface WithdrawnKeyRecord {
  /** jwt | ssh-user | ssh-host */
  kind: string;
  /** Hex SHA-256 of the key's DER SubjectPublicKeyInfo. */
  spkiSha256: string;
  /** When it was withdrawn (ms). */
  at: number;
}

/** The stores, per aggregate. Inside `withWriteTx` they are bound to that one transaction. */
export interface TxStores {
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
}

/**
 * A backend: the stores for reads (and single writes) outside a transaction, and the write transaction.
 * Also `fleet: FleetStore`, the fleet view's read model (issue #18), declared in fleet-types.ts by
 * module augmentation (it uses AuditRecord from here; an import back would be a cycle).
 * And `issuers: IssuerRegistryStore` (issue #15: the intermediates of several issuers and the
 * per-CRL-issuer cRLNumber counters), declared the same way in issuer-registry-types.ts.
 */
export interface Stores extends TxStores {
  /** Run `fn` in one write transaction; see the header for the guarantees. */
  withWriteTx<T>(fn: (tx: TxStores) => Promise<T>): Promise<T>;
  /**
   * Resolves once every write committed so far would survive a power loss. A backend whose
   * COMMIT returns only then (PostgreSQL, SQLite with synchronous=FULL) has none; the SQLite
   * store that flushes its WAL off the event loop does (./sqlite/wal-sync.ts): its reads can see a
   * commit before it is flushed, so an answer built from a read alone waits for this.
   */
  whenDurable?(): Promise<void>;
  /** A flush to disk that failed, after which the store refuses every write until a restart (./sqlite/wal-sync.ts). */
  durabilityFailure?(): SigilError | undefined;
  /** Wait for the running and queued transactions, then release the connections. Later calls reject. */
  close(): Promise<void>;
}
