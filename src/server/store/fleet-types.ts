/**
 * The fleet view's read model (issue #18): the queries the operator pages ask of the store,
 * answered by the database (filter, sort, page, count) so a page over 100,000 instances never
 * loads them all. Read-only, outside write transactions, on both backends (sqlite/fleet.ts,
 * postgres/fleet.ts), covered by the store conformance suite.
 *
 * States, decided at `now` (one instance can be in several; `counts` counts each):
 *   locked               the instance is locked (lock reason in `lockReason`)
 *   expired              its current certificate's notAfter <= now
 *   renewal_overdue      not locked, not expired, past two thirds of its current certificate's
 *                        lifetime counted from its issue: issued + 2/3 (notAfter - issued) <= now,
 *                        where issued = notBefore + ISSUE_BACKDATE_MS. An agent renews at
 *                        renew_fraction (default 0.5) of that lifetime, jittered by ±10%: at most
 *                        0.55, so a machine renewing on schedule is never shown overdue (the
 *                        half-life of notBefore..notAfter was: it came before a jittered renewal).
 *   attestation_failed   its last attestation (facts.attestation.ok === false) failed
 *   healthy              none of the above
 */
import type { KeyStorage } from '../../keystore/signer.js';
import type { AuditRecord } from './types.js';

/**
 * How long before its issue a certificate's notBefore lies (server/ops/issue.ts BACKDATE_MS; a
 * test holds them equal): the issue time is notBefore plus this.
 */
export const ISSUE_BACKDATE_MS = 60_000;

export type FleetState = 'healthy' | 'locked' | 'expired' | 'renewal_overdue' | 'attestation_failed';
export const FLEET_STATES: readonly FleetState[] = [
  'healthy',
  'locked',
  'expired',
  'renewal_overdue',
  'attestation_failed',
];

export type FleetSortKey = 'id' | 'bot' | 'join_method' | 'last_seen' | 'expires' | 'created' | 'generation';

export interface FleetQuery {
  /** Exact bot name. */
  bot?: string;
  /** Exact join method name. */
  joinMethod?: string;
  state?: FleetState;
  /**
   * Case-insensitive substring of the instance id, SPIFFE ID or bot (at most 200 chars). Matched
   * literally: `%`, `_` and `\` are not wildcards. '' means no search.
   */
  search?: string;
  /** Current certificate expires within this many ms of `now` (and has not expired). */
  expiresWithinMs?: number;
  sort?: FleetSortKey;
  order?: 'asc' | 'desc';
  /** 1..500 (default 50). */
  limit?: number;
  /**
   * Default 0, at most 10,000,000. Ties in the sort key are broken by id (in the same direction)
   * so pages never overlap. Text sorts byte-wise; a NULL expiry sorts as the smallest value.
   */
  offset?: number;
  now: number;
}

export interface FleetRow {
  id: string;
  bot: string;
  joinMethod: string;
  spiffeId: string;
  generation: number;
  keyStorage: KeyStorage;
  exportable: boolean;
  locked: boolean;
  lockReason: string | null;
  currentSerial: string | null;
  currentNotBefore: number | null;
  currentNotAfter: number | null;
  createdAt: number;
  /** Last change to the row: an issue (join or renewal), a lock or unlock, new facts. */
  updatedAt: number;
  /** Last issue (join or renewal): what the store records of an agent being seen. */
  lastSeenAt: number;
  /** facts.attestation.ok when the instance has attested, else null. */
  attestationOk: boolean | null;
  /** facts.attestation.at (ms) when present. */
  attestationAt: number | null;
  /** facts.firmware_profile when present. */
  firmwareProfile: string | null;
  /** facts.transport: the carrier of its last join or renewal (https, mqtt), as the issuer saw it. */
  transport: string | null;
  /** facts.agent_version: the version its agent CLAIMS to run (a display value, never a decision). */
  agentVersion: string | null;
  /** States this row is in at `now` (see the header). */
  states: FleetState[];
}

export interface FleetPage {
  rows: FleetRow[];
  /** Rows matching the query (all pages). */
  total: number;
}

/** One bucket of a time series: `start` (ms, aligned to the bucket size) and its counts. */
export interface FleetBucket {
  start: number;
  renewals: number;
  refusals: number;
  attestationFailures: number;
}

export interface AuditQuery {
  from?: number;
  to?: number;
  /** Exact actor ('agent', 'admin', 'system', 'ui:<user>' ...). */
  actor?: string;
  action?: string;
  outcome?: string;
  instanceId?: string;
  /** Newest first; rows with seq < beforeSeq (for paging). */
  beforeSeq?: number;
  /** 1..500 (default 100). */
  limit?: number;
}

export interface FleetStore {
  /** Audit rows matching `q`, newest first (machine page history, audit page). */
  audit(q: AuditQuery): Promise<AuditRecord[]>;
  page(q: FleetQuery): Promise<FleetPage>;
  /** Instances per state at `now`, over the whole fleet (unfiltered). */
  counts(now: number): Promise<Record<FleetState, number> & { total: number }>;
  /**
   * Audit-derived activity in [from, to), bucketed by `bucketMs` (>= 60 s): renewals
   * (action renew, outcome ok), refusals (outcome refused, any action), attestation failures
   * (refusals whose code is an attestation check, and action attest refused). The first bucket
   * starts at `from` rounded down to a multiple of `bucketMs`; at most 10,080 buckets; from === to
   * gives none. Every bucket is returned, empty ones with zeros.
   *
   * Every method rejects a bad value with SigilError('bad_request', …) naming the field
   * (store/fleet-query.ts has the limits).
   */
  activity(from: number, to: number, bucketMs: number): Promise<FleetBucket[]>;
  /**
   * Current certificates' age (now - notBefore) histogram over unexpired instances, `edgesMs`
   * strictly ascending (at most 100): edgesMs.length + 1 counts, the first for ages < edgesMs[0],
   * then [edgesMs[i-1], edgesMs[i]), the last for ages >= the last edge.
   */
  certificateAges(now: number, edgesMs: readonly number[]): Promise<number[]>;
}

/*
 * `Stores.fleet` (reads outside a transaction only, so it is not in TxStores). Declared here, by
 * module augmentation of types.ts, rather than in types.ts itself: this file needs AuditRecord from
 * types.ts, and the house rules forbid an import cycle (scripts/check-layers.mjs).
 */
declare module './types.js' {
  interface Stores {
    /** The fleet view's read model (issue #18): filter, sort, page and count in the database. */
    readonly fleet: FleetStore;
  }
}
