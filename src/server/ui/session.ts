/**
 * Fleet-view sessions (issue #18): who is signed in, for how long, and with which role.
 *
 * - Kept by the store (../store/ui-session-types.ts): a table in the issuer's database, so every
 *   issuer on it — `--workers N`, or several issuers behind a load balancer — knows every session
 *   and an operator is not sent back to sign-in when a connection lands on another one; a restart
 *   signs nobody out. Stores without the table keep them in memory (./session-memory.ts).
 * - The cookie holds a random 256-bit id; the row is keyed by its SHA-256, so the table, a backup
 *   or a heap dump does not hand out live cookies. Each row is sealed (./session-seal.ts): a
 *   database writer cannot mint a session or change its role; a row whose seal fails is deleted
 *   and treated as no session.
 * - Idle timeout (default 15 min) and absolute lifetime (default 8 h): a stolen cookie stops
 *   working soon after its owner walks away, and never lives past a working day.
 * - Each session carries its own CSRF synchronizer token (./csrf.ts) and its role: the role is
 *   read from the sealed row on every request, never from the client.
 * - Bounded (`maxSessions`): at the bound the least recently used session is dropped, so a
 *   flood of sign-ins cannot grow the table without end. Each user holds at most `maxPerUser`
 *   (default 10): a user's new session drops that user's own least recently used one first, so
 *   one user signing in over and over cannot push everybody else's sessions out (review of issue
 *   #16: a viewer signed every admin out so).
 */
import { randomSecret, sha256Hex } from '../../util/secret.js';
import type { UiRole, UiSessionRow, UiSessionStore } from '../store/ui-session-types.js';
import { MemorySessionStore } from './session-memory.js';
import { SessionSeal } from './session-seal.js';

export type { UiRole } from '../store/ui-session-types.js';

/** A live session as the fleet view uses it: the stored row without its key and seal. */
export type UiSession = Omit<UiSessionRow, 'idHash' | 'seal'> & {
  /** The CSRF synchronizer token for this session's forms (derived from the id: ./session-seal.ts). */
  csrf: string;
};

export interface SessionOptions {
  idleMs?: number;
  absoluteMs?: number;
  maxSessions?: number;
  /** Sessions of one user (default 10). */
  maxPerUser?: number;
  now?: () => number;
  /** Where sessions are kept (default: this process's memory). */
  store?: UiSessionStore;
  /** The rows' seal (default: a random key, good for one process only). */
  seal?: SessionSeal;
  /**
   * Whether the credential that opened a session is still on file (./viewer-credentials.ts):
   * asked on every touch, so a revoked or replaced token ends its sessions at once. Default: yes.
   */
  credentialLive?: (s: UiSession) => boolean | Promise<boolean>;
}

export const DEFAULT_SESSION_IDLE_MS = 15 * 60_000;
export const DEFAULT_SESSION_ABSOLUTE_MS = 8 * 3600_000;

/** A cookie value longer than this is no id of ours (ids are 43 characters). */
const MAX_ID_CHARS = 100;

export class SessionStore {
  readonly idleMs: number;
  readonly absoluteMs: number;
  readonly #max: number;
  readonly #maxPerUser: number;
  readonly #now: () => number;
  readonly #store: UiSessionStore;
  readonly #seal: SessionSeal;
  readonly #credentialLive: (s: UiSession) => boolean | Promise<boolean>;

  constructor(o: SessionOptions = {}) {
    this.idleMs = o.idleMs ?? DEFAULT_SESSION_IDLE_MS;
    this.absoluteMs = o.absoluteMs ?? Math.max(DEFAULT_SESSION_ABSOLUTE_MS, this.idleMs);
    this.#max = o.maxSessions ?? 1000;
    this.#maxPerUser = o.maxPerUser ?? 10;
    this.#now = o.now ?? Date.now;
    this.#store = o.store ?? new MemorySessionStore();
    this.#seal = o.seal ?? SessionSeal.ephemeral();
    this.#credentialLive = o.credentialLive ?? (() => true);
    if (!(this.idleMs > 0) || !(this.absoluteMs >= this.idleMs))
      throw new TypeError('SessionStore: idleMs > 0 and absoluteMs >= idleMs are required');
    if (!(this.#max >= 1) || !(this.#maxPerUser >= 1))
      throw new TypeError('SessionStore: maxSessions and maxPerUser must be at least 1');
  }

  /**
   * A new session; returns the cookie value (the only copy of the id). `credential`: the
   * fingerprint of the credential that signed in (viewer-credentials.ts credentialFingerprint).
   */
  async create(
    user: string,
    role: UiRole,
    remote: string,
    credential: string,
  ): Promise<{ id: string; session: UiSession }> {
    const id = randomSecret(32);
    const now = this.#now();
    const identity = { idHash: sha256Hex(id), user, role, createdAt: now, remote, credential };
    await this.#store.insert(
      { ...identity, lastSeenAt: now, seal: this.#seal.mac(identity) },
      { now, idleMs: this.idleMs, absoluteMs: this.absoluteMs, maxSessions: this.#max, maxPerUser: this.#maxPerUser },
    );
    return {
      id,
      session: { user, role, csrf: this.#seal.csrfFor(id), createdAt: now, lastSeenAt: now, remote, credential },
    };
  }

  /**
   * The live session for a cookie value, its idle clock reset; undefined when unknown, idle too
   * long, past its lifetime, not sealed by this issuer's key, or opened by a credential no longer
   * on file (such a row is deleted, so it cannot come back).
   */
  async touch(id: string | undefined): Promise<UiSession | undefined> {
    if (!id || id.length > MAX_ID_CHARS) return undefined;
    const idHash = sha256Hex(id);
    const row = await this.#store.touch(idHash, this.#now(), this.idleMs, this.absoluteMs);
    if (!row) return undefined;
    if (row.idHash !== idHash || !this.#seal.holds(row) || (row.role !== 'admin' && row.role !== 'viewer')) {
      await this.#store.delete(idHash);
      return undefined;
    }
    const { user, role, createdAt, lastSeenAt, remote, credential } = row;
    const session = { user, role, csrf: this.#seal.csrfFor(id), createdAt, lastSeenAt, remote, credential };
    if (!(await this.#credentialLive(session))) {
      await this.#store.delete(idHash);
      return undefined;
    }
    return session;
  }

  /** Sign out: the id no longer works. */
  destroy(id: string | undefined): Promise<boolean> {
    return id && id.length <= MAX_ID_CHARS ? this.#store.delete(sha256Hex(id)) : Promise.resolve(false);
  }

  /** Sessions stored (expired ones until the next sign-in sweeps them). */
  size(): Promise<number> {
    return this.#store.count();
  }
}
