/**
 * The synchronous stores SQLite implements with better-sqlite3 (one class per aggregate in this
 * folder). Internal to sqlite/: the issuer uses the async contract of ../types.ts, which
 * ./async.ts builds over these (its write queue and read connection); `SyncStores.tx` runs a
 * synchronous function in one BEGIN IMMEDIATE transaction (better-sqlite3 cannot span an await).
 */
import type { KeyStorage } from '../../../keystore/signer.js';
import type {
  AuditAnchor,
  AuditEvent,
  AuditRecord,
  AuditVerifyResult,
  AuditWalk,
  CertificateRecord,
  ChallengeConsumeResult,
  ChallengeRecord,
  ConsumeResult,
  DeviceRecord,
  IdempotencyRecord,
  InstanceRecord,
  JoinTokenRecord,
  KeyBindingRecord,
  Resource,
  ResourceKind,
  WithdrawnKeyRecord,
} from '../types.js';

export interface SyncResourceStore {
  /** Insert or replace; returns 'created' | 'updated' | 'unchanged' (spec deep-equal). */
  put(
    kind: ResourceKind,
    name: string,
    spec: Record<string, unknown>,
    now: number,
  ): 'created' | 'updated' | 'unchanged';
  get(kind: ResourceKind, name: string): Resource | undefined;
  list(kind: ResourceKind): Resource[];
  delete(kind: ResourceKind, name: string): boolean;
}

export interface SyncTokenStore {
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

export interface SyncChallengeStore {
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

export interface SyncDeviceStore {
  getByFingerprint(fingerprint: string): DeviceRecord | undefined;
  /** Insert or update one device; 'unchanged' when identical. Callers run it inside `SyncStores.tx`. */
  put(rec: Omit<DeviceRecord, 'id'>): 'created' | 'updated' | 'unchanged';
  list(filter?: { rule?: string }): DeviceRecord[];
}

export interface SyncKeyBindingStore {
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
 * Replay cache for signed tokens that carry a `jti` (join/jwt-replay.ts): a token is accepted
 * for one join only. Rows live until the token expires (plus skew), then are pruned.
 */
export interface SyncTokenReplayStore {
  /** Whether (issuer, jti) was already used. Read-only, for an early refusal. */
  seen(issuer: string, jti: string): boolean;
  /** Record a use, atomically; false when it was already recorded (the replay). */
  record(issuer: string, jti: string, expiresAt: number, now: number): boolean;
  prune(before: number): number;
}

export interface SyncInstanceStore {
  create(
    rec: Omit<
      InstanceRecord,
      'locked' | 'lockReason' | 'updatedAt' | 'lastSeenAt' | 'currentSerial' | 'currentNotAfter'
    >,
  ): void;
  get(id: string): InstanceRecord | undefined;
  list(filter?: { bot?: string }): InstanceRecord[];
  /** After a successful issue: bump generation, record serial/expiry/key facts, touch timestamps. */
  recordIssue(
    id: string,
    u: {
      generation: number;
      serial: string;
      notAfter: number;
      keyStorage: KeyStorage;
      exportable: boolean;
      now: number;
      /** Merged into the facts by the same UPDATE, as updateFacts merges (../types.ts). */
      mergeFacts?: Record<string, unknown>;
    },
  ): void;
  setLocked(id: string, locked: boolean, reason: string | null, now: number): boolean;
  /** Merge facts (used when a re-attesting machine joins again with the same stable id). */
  updateFacts(id: string, facts: Record<string, unknown>, now: number): void;
}

export interface SyncBotLockStore {
  setLocked(bot: string, locked: boolean, reason: string | null, now: number): void;
  isLocked(bot: string): boolean;
  listLocked(): Array<{ bot: string; reason: string | null; at: number }>;
}

export interface SyncCertificateStore {
  insert(rec: CertificateRecord): void;
  get(serial: string): CertificateRecord | undefined;
  listByInstance(instanceId: string): CertificateRecord[];
  /** Current (newest-generation) certificates expiring before `before`, for metrics. */
  expiringBefore(before: number, now: number): Array<{ bot: string; count: number }>;
}

export interface SyncIdempotencyStore {
  get(requestId: string): IdempotencyRecord | undefined;
  put(rec: IdempotencyRecord): void;
  prune(before: number, limit?: number): number;
}

export interface SyncAuditStore {
  append(ev: AuditEvent, now: number): AuditRecord;
  list(opts?: { since?: number; limit?: number; afterSeq?: number }): AuditRecord[];
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

export interface SyncAdminCredentialStore {
  /** Hex SHA-256 of the admin bearer token. */
  setAdminTokenHash(hash: string): void;
  getAdminTokenHash(): string | undefined;
  rememberWithdrawnKey(key: WithdrawnKeyRecord): void;
  withdrawnKeys(): WithdrawnKeyRecord[];
}

export interface SyncStores {
  readonly resources: SyncResourceStore;
  readonly tokens: SyncTokenStore;
  readonly challenges: SyncChallengeStore;
  readonly devices: SyncDeviceStore;
  readonly keyBindings: SyncKeyBindingStore;
  readonly tokenReplay: SyncTokenReplayStore;
  readonly instances: SyncInstanceStore;
  readonly botLocks: SyncBotLockStore;
  readonly certificates: SyncCertificateStore;
  readonly idempotency: SyncIdempotencyStore;
  readonly audit: SyncAuditStore;
  readonly admin: SyncAdminCredentialStore;
  /**
   * Run `fn` in one write transaction (BEGIN IMMEDIATE). Throwing rolls everything back.
   * `fn` must be synchronous: better-sqlite3 transactions cannot span an await.
   */
  tx<T>(fn: () => T): T;
  close(): void;
}
