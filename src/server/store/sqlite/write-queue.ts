/**
 * A FIFO mutex for the one writer connection. SQLite allows one write transaction per
 * connection, and an async transaction (`withWriteTx`) stays open across awaits: without a queue
 * a second request's statements would run inside the first one's transaction and commit or roll
 * back with it. Waiters are served strictly in arrival order (the holder hands the lock straight
 * to the next waiter, so a newcomer cannot barge in between).
 */
export class WriteQueue {
  private held = false;
  private readonly waiters: Array<() => void> = [];

  /** Take the lock now if it is free (no promise, no microtask): the uncontended fast path. */
  tryAcquire(): boolean {
    if (this.held) return false;
    this.held = true;
    return true;
  }

  /** Wait for the lock. */
  acquire(): Promise<void> {
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Hand the lock to the longest waiter, or free it. Call exactly once per acquire. */
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.held = false;
  }

  /** Run `fn` holding the lock; released whether `fn` returns, throws or rejects. */
  async run<T>(fn: () => T | Promise<T>): Promise<T> {
    if (!this.tryAcquire()) await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Transactions running or waiting (for tests and metrics). */
  get depth(): number {
    return (this.held ? 1 : 0) + this.waiters.length;
  }
}
