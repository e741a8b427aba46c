/**
 * Change propagation between issuers without polling (issue #15): PostgreSQL LISTEN/NOTIFY.
 *
 * Every write that changes what an issuer may cache (policy documents, bot locks, instance locks)
 * calls `pg_notify('sigil_changes', '<topic>')` inside the statement that writes (a CTE over the written rows).
 * PostgreSQL delivers a notification only when its transaction COMMITs (a rolled-back write says
 * nothing) and after the data is visible to every session. Each issuer holds one extra connection
 * that LISTENs; on a notification it drops what it cached for the topic (./policy-cache.ts) and
 * tells its subscribers (the service re-reads the audit tail for the CRL and pushed events).
 *
 * The payload is a topic name only, never data: whoever can NOTIFY on the database can at most
 * make the issuers re-read (an unknown payload means "re-read everything"); what is then read
 * comes from the tables, as without a cache.
 *
 * The cache is trusted only while the feed is `live`: LISTEN confirmed on a connection that is
 * still open. While it is not (not yet connected, connection lost, server restarted) every read
 * goes to the database, and each (re)connect re-LISTENs first and then drops every cached entry
 * (a full resync: notifications sent while nobody listened are lost). A listener connection that
 * hangs without closing (a silent network cut) is found by a heartbeat query: no answer within
 * `heartbeatTimeoutMs` ends it, which is a reconnect.
 */
import type { Pool } from './connection.js';

export const CHANGE_CHANNEL = 'sigil_changes';

/** What a notification may say; anything else is treated as `all`. */
export const CHANGE_TOPICS = ['resources', 'bot_locks', 'instances'] as const;
export type ChangeTopic = (typeof CHANGE_TOPICS)[number];
/** `all`: a resync (a (re)connect, or a payload this issuer does not know). */
export type ChangeEvent = ChangeTopic | 'all';

export type ChangeSubscriber = (event: ChangeEvent) => void;

/** Opens the listener's own connection; the feed passes the driver's notify and close callbacks. */
export type ListenerFactory = (handlers: {
  onnotify: (channel: string, payload: string) => void;
  onclose: () => void;
}) => Pool;

export interface ChangeFeedOptions {
  /** Heartbeat period on the listener connection (default 5 s). */
  heartbeatMs?: number;
  /** A heartbeat unanswered this long ends the connection (default 3 s). */
  heartbeatTimeoutMs?: number;
  /** First reconnect delay; doubles up to 5 s (default 100 ms). */
  backoffMs?: number;
  onError?: (err: unknown) => void;
  /** Told when the feed goes live (true) or stops being live (false); for logs. */
  onLive?: (live: boolean) => void;
}

const MAX_BACKOFF_MS = 5_000;

export class PgChangeFeed {
  readonly #open: ListenerFactory;
  readonly #o: ChangeFeedOptions;
  readonly #subscribers: ChangeSubscriber[] = [];
  /** The current listener connection (a new one per connect: an ended pool stays ended). */
  #conn: Pool | undefined;
  #live = false;
  #closed = false;
  #retry: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #backoff: number;
  #connecting: Promise<void> | undefined;
  /** Counters for tests, metrics and logs. */
  readonly stats = { connects: 0, notifications: 0, resyncs: 0 };

  constructor(open: ListenerFactory, o: ChangeFeedOptions = {}) {
    this.#open = open;
    this.#o = o;
    this.#backoff = o.backoffMs ?? 100;
  }

  /** True while LISTEN is confirmed on an open connection: only then may a cache be used. */
  get live(): boolean {
    return this.#live;
  }

  subscribe(fn: ChangeSubscriber): void {
    this.#subscribers.push(fn);
  }

  /** Connect and LISTEN; resolves once live or once the first attempt failed (a retry is scheduled). */
  start(): Promise<void> {
    return this.#connect();
  }

  #connect(): Promise<void> {
    this.#connecting ??= this.#connectOnce().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  async #connectOnce(): Promise<void> {
    if (this.#closed) return;
    const conn = this.#open({
      onnotify: (channel, payload) => this.#onNotify(conn, channel, payload),
      onclose: () => this.#lost(conn),
    });
    this.#conn = conn;
    try {
      await conn.unsafe(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (err) {
      this.#o.onError?.(err);
      this.#lost(conn);
      return;
    }
    if (this.#closed || this.#conn !== conn) return;
    this.stats.connects++;
    this.#backoff = this.#o.backoffMs ?? 100;
    // Live first, then drop everything: a read that filled the cache before this point is
    // discarded (policy-cache.ts epochs), one after it is covered by the LISTEN just confirmed.
    this.#setLive(true);
    this.#emit('all');
    this.#startHeartbeat(conn);
  }

  #onNotify(conn: Pool, channel: string, payload: string): void {
    if (conn !== this.#conn || channel !== CHANGE_CHANNEL) return;
    this.stats.notifications++;
    this.#emit((CHANGE_TOPICS as readonly string[]).includes(payload) ? (payload as ChangeTopic) : 'all');
  }

  /** The listener connection is gone (closed, failed to connect, heartbeat unanswered): stop trusting caches, reconnect. */
  #lost(conn: Pool): void {
    if (conn !== this.#conn) return;
    this.#conn = undefined;
    this.#stopHeartbeat();
    void conn.end({ timeout: 0 }).catch(() => undefined);
    const wasLive = this.#live;
    this.#setLive(false);
    if (wasLive) this.#emit('all');
    if (this.#closed || this.#retry) return;
    const wait = this.#backoff;
    this.#backoff = Math.min(MAX_BACKOFF_MS, this.#backoff * 2);
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#connect();
    }, wait);
    this.#retry.unref();
  }

  #startHeartbeat(conn: Pool): void {
    this.#stopHeartbeat();
    const every = this.#o.heartbeatMs ?? 5_000;
    const timeout = this.#o.heartbeatTimeoutMs ?? 3_000;
    this.#heartbeat = setInterval(() => {
      let answered = false;
      const t = setTimeout(() => answered || this.#lost(conn), timeout);
      t.unref();
      conn`SELECT 1`.then(
        () => {
          answered = true;
          clearTimeout(t);
        },
        () => {
          clearTimeout(t);
          this.#lost(conn);
        },
      );
    }, every);
    this.#heartbeat.unref();
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  #setLive(live: boolean): void {
    if (this.#live === live) return;
    this.#live = live;
    this.#o.onLive?.(live);
  }

  #emit(event: ChangeEvent): void {
    if (event === 'all') this.stats.resyncs++;
    for (const fn of this.#subscribers) {
      try {
        fn(event);
      } catch (err) {
        this.#o.onError?.(err);
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    this.#stopHeartbeat();
    this.#setLive(false);
    await this.#connecting?.catch(() => undefined);
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.end({ timeout: 0 }).catch(() => undefined);
  }
}
