/**
 * What an issuer on PostgreSQL keeps in memory between requests: policy documents (roles, bots,
 * join rules, workload registrations) and bot locks, the reads every renewal and join makes and
 * that change only when an administrator acts. Without it each renewal reads them again (three
 * statements, two round trips on the renewal path: docs/store-postgres.md "Cost").
 *
 * Kept correct by ./change-feed.ts: an entry is used only while the feed is live, every
 * notification drops its topic, every (re)connect drops everything. A write made through this
 * issuer's own stores drops its topic here as soon as it is committed (./stores.ts), so an
 * administrator reading back what they applied never waits for the notification.
 *
 * A read that started before an invalidation must not store what it read (it may be the old
 * value): each topic has an epoch, bumped by every invalidation, and a result is kept only if the
 * epoch is unchanged when it arrives.
 */
import type { ChangeEvent, ChangeTopic } from './change-feed.js';

/** The topics cached here (instances are read FOR UPDATE in each renewal's transaction: never cached). */
export type CachedTopic = Extract<ChangeTopic, 'resources' | 'bot_locks'>;

/**
 * Entries per topic before the topic is simply emptied: names looked up come partly from
 * requests (a workload name, a bot named in a certificate we issued), so misses are bounded too.
 */
const MAX_ENTRIES = 10_000;

export class PolicyCache {
  readonly #live: () => boolean;
  readonly #entries: Record<CachedTopic, Map<string, unknown>> = { resources: new Map(), bot_locks: new Map() };
  readonly #epochs: Record<CachedTopic, number> = { resources: 0, bot_locks: 0 };
  /** Reads answered from memory, and reads that went to the database (tests and the bench). */
  readonly stats = { hits: 0, misses: 0 };

  /** `live`: whether the change feed currently guarantees notifications (PgChangeFeed.live). */
  constructor(live: () => boolean) {
    this.#live = live;
  }

  async read<T>(topic: CachedTopic, key: string, load: () => Promise<T>): Promise<T> {
    if (!this.#live()) return load();
    const entries = this.#entries[topic];
    if (entries.has(key)) {
      this.stats.hits++;
      return entries.get(key) as T;
    }
    this.stats.misses++;
    const epoch = this.#epochs[topic];
    const value = await load();
    if (this.#live() && this.#epochs[topic] === epoch) {
      if (entries.size >= MAX_ENTRIES) entries.clear();
      entries.set(key, value);
    }
    return value;
  }

  invalidate(event: ChangeEvent): void {
    for (const topic of ['resources', 'bot_locks'] as const) {
      if (event !== 'all' && event !== topic) continue;
      this.#epochs[topic]++;
      this.#entries[topic].clear();
    }
  }
}
