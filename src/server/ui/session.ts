/**
 * Fleet-view sessions (issue #18), kept in memory by the issuer that signed the operator in.
 *
 * - The cookie holds a random 256-bit id; the map is keyed by its SHA-256, so a heap dump or a
 *   log of the map's keys does not hand out live cookies.
 * - Idle timeout (default 15 min) and absolute lifetime (default 8 h): a stolen cookie stops
 *   working soon after its owner walks away, and never lives past a working day.
 * - Each session carries its own CSRF synchronizer token (./csrf.ts) and its role: the role is
 *   read from here on every request, never from the client.
 * - Bounded (`maxSessions`): at the bound the least recently used session is dropped, so a
 *   flood of sign-ins cannot grow memory without end. Each user holds at most `maxPerUser`
 *   (default 10): a user's new session drops that user's own least recently used one first, so
 *   one user signing in over and over cannot push everybody else's sessions out (review of issue
 *   #16: a viewer signed every admin out so).
 *
 * Several issuers behind a load balancer do not share sessions: sign-in sticks to one issuer
 * (docs/fleet-ui.md). A restart signs everybody out.
 */
import { randomSecret, sha256Hex } from '../../util/secret.js';

export type UiRole = 'admin' | 'viewer';

export interface UiSession {
  /** Who signed in: 'admin' (the admin credential) or a viewer's name. */
  user: string;
  role: UiRole;
  /** The CSRF synchronizer token for this session's forms. */
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
  /** The address that signed in, for the audit rows. */
  remote: string;
}

export interface SessionOptions {
  idleMs?: number;
  absoluteMs?: number;
  maxSessions?: number;
  /** Sessions of one user (default 10). */
  maxPerUser?: number;
  now?: () => number;
}

export const DEFAULT_SESSION_IDLE_MS = 15 * 60_000;
export const DEFAULT_SESSION_ABSOLUTE_MS = 8 * 3600_000;

export class SessionStore {
  readonly idleMs: number;
  readonly absoluteMs: number;
  readonly #max: number;
  readonly #maxPerUser: number;
  readonly #now: () => number;
  readonly #byHash = new Map<string, UiSession>();

  constructor(o: SessionOptions = {}) {
    this.idleMs = o.idleMs ?? DEFAULT_SESSION_IDLE_MS;
    this.absoluteMs = o.absoluteMs ?? Math.max(DEFAULT_SESSION_ABSOLUTE_MS, this.idleMs);
    this.#max = o.maxSessions ?? 1000;
    this.#maxPerUser = o.maxPerUser ?? 10;
    this.#now = o.now ?? Date.now;
    if (!(this.idleMs > 0) || !(this.absoluteMs >= this.idleMs))
      throw new TypeError('SessionStore: idleMs > 0 and absoluteMs >= idleMs are required');
  }

  /** A new session; returns the cookie value (the only copy of the id). */
  create(user: string, role: UiRole, remote: string): { id: string; session: UiSession } {
    this.#sweep();
    // The user's own oldest first (insertion order is least recently used first: touch re-inserts).
    const own = [...this.#byHash].filter(([, x]) => x.user === user);
    for (let i = 0; i <= own.length - this.#maxPerUser; i++) this.#byHash.delete(own[i]![0]);
    while (this.#byHash.size >= this.#max) {
      const oldest = this.#byHash.keys().next();
      if (oldest.done) break;
      this.#byHash.delete(oldest.value);
    }
    const id = randomSecret(32);
    const now = this.#now();
    const session: UiSession = { user, role, csrf: randomSecret(32), createdAt: now, lastSeenAt: now, remote };
    this.#byHash.set(sha256Hex(id), session);
    return { id, session };
  }

  /**
   * The live session for a cookie value, its idle clock reset; undefined when unknown, idle too
   * long or past its lifetime (an expired one is deleted, so it cannot come back).
   */
  touch(id: string | undefined): UiSession | undefined {
    if (!id || id.length > 100) return undefined;
    const key = sha256Hex(id);
    const s = this.#byHash.get(key);
    if (!s) return undefined;
    const now = this.#now();
    if (this.#expired(s, now)) {
      this.#byHash.delete(key);
      return undefined;
    }
    s.lastSeenAt = now;
    // Most recently used goes last (the eviction order).
    this.#byHash.delete(key);
    this.#byHash.set(key, s);
    return s;
  }

  /** Sign out: the id no longer works. */
  destroy(id: string | undefined): boolean {
    return id ? this.#byHash.delete(sha256Hex(id)) : false;
  }

  get size(): number {
    return this.#byHash.size;
  }

  #expired(s: UiSession, now: number): boolean {
    return now - s.lastSeenAt >= this.idleMs || now - s.createdAt >= this.absoluteMs;
  }

  /** Drop expired sessions (on each sign-in: cheap enough at the bound, and no timer to own). */
  #sweep(): void {
    const now = this.#now();
    for (const [k, s] of this.#byHash) if (this.#expired(s, now)) this.#byHash.delete(k);
  }
}
