/**
 * The `unix:sha256` selector's hashing, for the Workload API server: what a local caller can
 * make the agent do by running a large executable and calling again and again.
 *
 * - One hash per file: results are cached by (device, inode, size, mtime, ctime) of the opened
 *   /proc/<pid>/exe (./proc.ts openProcessExe) — a file written since has another mtime and
 *   ctime (ctime cannot be set by a user), a copy another inode.
 * - One hash at a time: the work of a caller who makes the agent hash many distinct files
 *   queues behind itself, instead of running side by side with every other caller's.
 * - Off the event loop: each hash reads and digests 1 MiB per turn of the loop (./proc.ts
 *   hashOpenedExe), so a 100 MB executable does not hold up the calls of other workloads.
 * Whether to hash at all is the caller's business (./attest.ts): only when an entry that the
 * caller could otherwise match uses `unix:sha256`.
 */
import { hashOpenedExe, type OpenedExe } from './proc.js';

/** Enough for every executable of a machine's workloads; the oldest is forgotten first. */
const CACHE_ENTRIES = 512;

export interface ExeHasherStats {
  /** Files actually read and hashed (cache misses). */
  hashed: number;
  /** Answers served from the cache. */
  cached: number;
}

export class ExeHasher {
  readonly #cache = new Map<string, Promise<string | undefined>>();
  #queue: Promise<unknown> = Promise.resolve();
  readonly stats: ExeHasherStats = { hashed: 0, cached: 0 };
  /** Called when a hash starts and ends (tests: the loop must turn in between). */
  observer: ((event: 'start' | 'end', key: string) => void) | undefined;

  /**
   * SHA-256 of `exe`, or undefined when it is larger than `maxBytes`. `exe.fd` must stay open
   * until the promise settles (the caller closes it afterwards; a cached answer does not use it).
   */
  hash(exe: OpenedExe, maxBytes: number): Promise<string | undefined> {
    const key = `${exe.key}:${maxBytes}`;
    const hit = this.#cache.get(key);
    if (hit) {
      this.stats.cached++;
      // Most recently used last: the first key is the one to forget.
      this.#cache.delete(key);
      this.#cache.set(key, hit);
      return hit;
    }
    const p = this.#queue.then(async () => {
      this.stats.hashed++;
      this.observer?.('start', key);
      try {
        return await hashOpenedExe(exe, maxBytes);
      } finally {
        this.observer?.('end', key);
      }
    });
    this.#queue = p.catch(() => undefined);
    // A failed read is not remembered: the next call tries again.
    p.catch(() => this.#cache.delete(key));
    this.#cache.set(key, p);
    if (this.#cache.size > CACHE_ENTRIES) this.#cache.delete(this.#cache.keys().next().value!);
    return p;
  }
}
