/**
 * Fleet-view sessions in this process's memory: the store for a fleet view whose stores keep
 * none (../store/ui-session-types.ts; an embedding's own Stores, unit tests). Both database
 * stores keep sessions in a table, which every issuer on the database shares.
 */
import type { UiSessionLimits, UiSessionRow, UiSessionStore } from '../store/ui-session-types.js';

const expired = (r: UiSessionRow, now: number, idleMs: number, absoluteMs: number): boolean =>
  now - r.lastSeenAt >= idleMs || now - r.createdAt >= absoluteMs;

export class MemorySessionStore implements UiSessionStore {
  /** Keyed by id hash; insertion order is least recently used first (touch re-inserts). */
  readonly #rows = new Map<string, UiSessionRow>();

  insert(row: UiSessionRow, l: UiSessionLimits): Promise<void> {
    for (const [k, r] of this.#rows) if (expired(r, l.now, l.idleMs, l.absoluteMs)) this.#rows.delete(k);
    const own = [...this.#rows].filter(([, r]) => r.user === row.user);
    for (let i = 0; i <= own.length - l.maxPerUser; i++) this.#rows.delete(own[i]![0]);
    while (this.#rows.size >= l.maxSessions) {
      const oldest = this.#rows.keys().next();
      if (oldest.done) break;
      this.#rows.delete(oldest.value);
    }
    this.#rows.set(row.idHash, { ...row });
    return Promise.resolve();
  }

  touch(idHash: string, now: number, idleMs: number, absoluteMs: number): Promise<UiSessionRow | undefined> {
    const r = this.#rows.get(idHash);
    if (!r) return Promise.resolve(undefined);
    this.#rows.delete(idHash);
    if (expired(r, now, idleMs, absoluteMs)) return Promise.resolve(undefined);
    r.lastSeenAt = Math.max(r.lastSeenAt, now);
    this.#rows.set(idHash, r);
    return Promise.resolve({ ...r });
  }

  delete(idHash: string): Promise<boolean> {
    return Promise.resolve(this.#rows.delete(idHash));
  }

  count(): Promise<number> {
    return Promise.resolve(this.#rows.size);
  }
}
