/**
 * Fleet-view sessions in the database (docs/fleet-ui.md), so that every issuer on one store —
 * the `--workers N` of one machine, or several issuers behind a load balancer — knows every
 * operator's session: the kernel and the balancer hand an operator's connections to any of them.
 *
 * The table holds no usable secret: the row is keyed by the SHA-256 of the cookie's random id
 * (the CSRF token is derived from the id, never stored),
 * and each row carries a seal (an HMAC under a key derived from audit.key, which lives outside
 * the database: server/ui/session-seal.ts) over who the session is, so a database writer cannot
 * mint an admin session or turn a viewer's into one. The rules (idle timeout, lifetime, bounds)
 * are the caller's (server/ui/session.ts); a store only applies them atomically.
 * Reads and writes run outside write transactions only.
 */
/** What a fleet-view session may do: admin locks and unlocks, viewer reads. */
export type UiRole = 'admin' | 'viewer';

export interface UiSessionRow {
  /** SHA-256 (hex) of the cookie's id. */
  idHash: string;
  /** 'admin' or a viewer's name. */
  user: string;
  role: UiRole;
  createdAt: number;
  lastSeenAt: number;
  /** The address that signed in (for the audit rows). */
  remote: string;
  /** Which credential signed in (server/ui/viewer-credentials.ts credentialFingerprint). */
  credential: string;
  /** HMAC over the row's identity (server/ui/session-seal.ts); never over lastSeenAt. */
  seal: string;
}

/** What bounds a new session's insertion (the caller's policy, applied in one step). */
export interface UiSessionLimits {
  now: number;
  idleMs: number;
  absoluteMs: number;
  /** Sessions in all: the least recently used go first. */
  maxSessions: number;
  /** Sessions of one user: the user's own least recently used go first. */
  maxPerUser: number;
}

export interface UiSessionStore {
  /**
   * Drop every expired session, then the user's oldest beyond `maxPerUser - 1`, then the oldest
   * of all beyond `maxSessions - 1`, then insert `row` — as one step, also against concurrent
   * inserts on other issuers of the store.
   */
  insert(row: UiSessionRow, limits: UiSessionLimits): Promise<void>;
  /**
   * The live row of `idHash` with its idle clock moved to `now` (never backwards); undefined when
   * there is none, and an expired row is deleted (so no clock can revive it).
   */
  touch(idHash: string, now: number, idleMs: number, absoluteMs: number): Promise<UiSessionRow | undefined>;
  /** Delete one session (sign-out, a seal that fails); true when there was one. */
  delete(idHash: string): Promise<boolean>;
  /** Sessions stored, expired ones included until the next insert sweeps them. */
  count(): Promise<number>;
}

declare module './types.js' {
  interface Stores {
    /** Fleet-view sessions, shared by every issuer on the store. */
    readonly uiSessions: UiSessionStore;
  }
}
