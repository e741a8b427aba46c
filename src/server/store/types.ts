/**
 * The issuer's persistence, as narrow stores per aggregate (SPIRE's lesson: no 60-method god
 * interface). SQLite (better-sqlite3, synchronous) implements them today; every multi-step
 * decision runs inside `Stores.tx`, so it either commits whole or changes nothing.
 *
 * Times are unix milliseconds (numbers) everywhere in this layer.
 */
import type { KeyStorage } from '../../keystore/signer.js';

/** `role`, `bot`, `join_rule` — policy documents applied with `sigil ctl apply`. */
export type ResourceKind = 'role' | 'bot' | 'join_rule';

export interface Resource {
  kind: ResourceKind;
  name: string;
  /** Validated spec object (validation lives in server/policy, not here). */
  spec: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

export interface ResourceStore {
  /** Insert or replace; returns 'created' | 'updated' | 'unchanged' (spec deep-equal). */
  put(kind: ResourceKind, name: string, spec: Record<string, unknown>, now: number): 'created' | 'updated' | 'unchanged';
  get(kind: ResourceKind, name: string): Resource | undefined;
  list(kind: ResourceKind): Resource[];
  delete(kind: ResourceKind, name: string): boolean;
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
  | { ok: true; token: JoinTokenRecord }
  | { ok: false; reason: 'token_invalid' | 'token_expired' | 'token_reused' };

export interface TokenStore {
  create(rec: { hash: string; bot: string; createdAt: number; expiresAt: number }): void;
  /** Read-only lookup for an early, precise refusal; `consume` stays the deciding step. */
  get(hash: string): JoinTokenRecord | undefined;
  /**
   * Mark the token used, atomically: of N concurrent calls with one hash exactly one gets ok.
   * Must be a single conditional UPDATE (`... WHERE hash=? AND used_at IS NULL AND expires_at>?`)
   * so it stays single-use across processes too.
   */
  consume(hash: string, now: number, usedBy: string): ConsumeResult;
  list(): JoinTokenRecord[];
  /** Delete expired/used tokens older than `before`; returns how many. */
  prune(before: number): number;
}

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

export type ChallengeConsumeResult = { ok: true } | { ok: false; reason: 'challenge_invalid' | 'challenge_expired' | 'challenge_reused' };

export interface ChallengeStore {
  create(rec: Omit<ChallengeRecord, 'usedAt'>): void;
  /** Read-only lookup for early, precise refusals; `consume` stays the deciding step. */
  get(id: string): ChallengeRecord | undefined;
  /**
   * Mark used, atomically: one conditional UPDATE (`… WHERE id=? AND used_at IS NULL AND
   * expires_at>?`), so of N concurrent answers, in any number of processes, exactly one wins.
   */
  consume(id: string, now: number): ChallengeConsumeResult;
  /** Delete challenges that expired before `before`; returns how many. */
  prune(before: number): number;
}

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

export interface DeviceStore {
  getByFingerprint(fingerprint: string): DeviceRecord | undefined;
  /** Insert or update one device; 'unchanged' when identical. Callers run it inside `Stores.tx`. */
  put(rec: Omit<DeviceRecord, 'id'>): 'created' | 'updated' | 'unchanged';
  list(filter?: { rule?: string }): DeviceRecord[];
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

export interface KeyBindingStore {
  get(method: string, subject: string): KeyBindingRecord | undefined;
  /**
   * Bind if unbound, atomically (INSERT … ON CONFLICT DO NOTHING): of concurrent first joins
   * exactly one binds; returns the binding now in force, which the caller compares.
   */
  bind(rec: KeyBindingRecord): KeyBindingRecord;
  /** Remove a binding (admin reset); false when there was none. */
  reset(method: string, subject: string): boolean;
  list(filter?: { method?: string }): KeyBindingRecord[];
}

/**
 * Replay cache for signed tokens that carry a `jti` (join/jwt/replay.ts): a token is accepted
 * for one join only. Rows live until the token expires (plus skew), then are pruned.
 */
export interface TokenReplayStore {
  /** Whether (issuer, jti) was already used. Read-only, for an early refusal. */
  seen(issuer: string, jti: string): boolean;
  /** Record a use, atomically; false when it was already recorded (the replay). */
  record(issuer: string, jti: string, expiresAt: number, now: number): boolean;
  prune(before: number): number;
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

export interface InstanceStore {
  create(rec: Omit<InstanceRecord, 'locked' | 'lockReason' | 'updatedAt' | 'lastSeenAt' | 'currentSerial' | 'currentNotAfter'>): void;
  get(id: string): InstanceRecord | undefined;
  list(filter?: { bot?: string }): InstanceRecord[];
  /** After a successful issue: bump generation, record serial/expiry/key facts, touch timestamps. */
  recordIssue(id: string, u: { generation: number; serial: string; notAfter: number; keyStorage: KeyStorage; exportable: boolean; now: number }): void;
  setLocked(id: string, locked: boolean, reason: string | null, now: number): boolean;
  /** Merge facts (used when a re-attesting machine joins again with the same stable id). */
  updateFacts(id: string, facts: Record<string, unknown>, now: number): void;
}

export interface BotLockStore {
  setLocked(bot: string, locked: boolean, reason: string | null, now: number): void;
  isLocked(bot: string): boolean;
  listLocked(): Array<{ bot: string; reason: string | null; at: number }>;
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

export interface CertificateStore {
  insert(rec: CertificateRecord): void;
  get(serial: string): CertificateRecord | undefined;
  listByInstance(instanceId: string): CertificateRecord[];
  /** Current (newest-generation) certificates expiring before `before`, for metrics. */
  expiringBefore(before: number, now: number): Array<{ bot: string; count: number }>;
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

export interface IdempotencyStore {
  get(requestId: string): IdempotencyRecord | undefined;
  put(rec: IdempotencyRecord): void;
  prune(before: number): number;
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

export interface AuditStore {
  append(ev: AuditEvent, now: number): AuditRecord;
  list(opts?: { since?: number; limit?: number }): AuditRecord[];
  /** The whole chain at once (blocks for large logs: prefer server/audit/verify.ts). */
  verify(): AuditVerifyResult;
  startWalk(): AuditWalk;
  verifyStep(walk: AuditWalk, maxRows?: number, onRow?: (seq: number, hash: string) => void): AuditWalk;
  head(): { seq: number; hash: string } | undefined;
  anchor(): AuditAnchor | undefined;
  keyInfo(): { id: string; fromSeq: number } | undefined;
  triggers(): { present: string[]; missing: string[] };
  pruneThrough(seq: number, checkpoint: string, now: number): number;
  /** The newest row with `at < before` (undefined: none). */
  lastSeqBefore(before: number): number | undefined;
}

export interface AdminCredentialStore {
  /** Hex SHA-256 of the admin bearer token. */
  setAdminTokenHash(hash: string): void;
  getAdminTokenHash(): string | undefined;
}

export interface Stores {
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
  /**
   * Run `fn` in one write transaction (BEGIN IMMEDIATE). Throwing rolls everything back.
   * `fn` must be synchronous: better-sqlite3 transactions cannot span an await.
   */
  tx<T>(fn: () => T): T;
  close(): void;
}
