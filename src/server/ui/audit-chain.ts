/**
 * The audit page's chain status (issue #18): a verification of the hash chain that the fleet view
 * runs in bounded steps and remembers. A full walk of a large chain takes seconds (bench/
 * audit-verify.ts), too long for a page load; so the page shows the head and the last result,
 * and "verify" walks on from where the previous walk stopped, for at most `budgetMs`, yielding to
 * the event loop between chunks (as server/audit/verify.ts). "From the start" drops the memory
 * and walks again from the prune anchor — what catches a row rewritten after it was verified.
 *
 * This checks the chain only (links and hashes, keyed rows with the audit key); the signed
 * checkpoints, the triggers and the anchor's signature are `sigil ctl audit --verify`'s job.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { AuditStore, AuditWalk } from '../store/types.js';

export interface ChainStatus {
  /** Verified rows so far and the seq verified through (nextSeq - 1). */
  rows: number;
  throughSeq: number;
  /** The chain's head when the walk last stopped. */
  headSeq: number | null;
  brokenAt?: number;
  reason?: string;
  /** The walk reached the head. */
  complete: boolean;
  at: number;
  tookMs: number;
}

const CHUNK_ROWS = 1000;

export class AuditChainCheck {
  #walk: AuditWalk | undefined;
  #last: ChainStatus | undefined;
  #running: Promise<ChainStatus> | undefined;

  constructor(
    private readonly audit: AuditStore,
    private readonly now: () => number,
    private readonly budgetMs = 2000,
  ) {}

  get last(): ChainStatus | undefined {
    return this.#last;
  }

  /** Walk on (or from the start) for at most the budget; one walk at a time (a second caller shares it). */
  run(fromStart: boolean): Promise<ChainStatus> {
    this.#running ??= this.#run(fromStart).finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #run(fromStart: boolean): Promise<ChainStatus> {
    const started = this.now();
    const anchor = await this.audit.anchor();
    let walk = this.#walk;
    // A broken walk, a fresh start, or rows pruned past where we stopped: begin at the anchor.
    if (fromStart || !walk || walk.brokenAt !== undefined || (anchor && anchor.seq >= walk.nextSeq))
      walk = await this.audit.startWalk();
    else walk = { ...walk, done: false };
    while (!walk.done && this.now() - started < this.budgetMs) {
      walk = await this.audit.verifyStep(walk, CHUNK_ROWS);
      await yieldToLoop();
    }
    this.#walk = walk;
    const head = await this.audit.head();
    this.#last = {
      rows: walk.rows,
      throughSeq: walk.nextSeq - 1,
      headSeq: head?.seq ?? null,
      ...(walk.brokenAt !== undefined ? { brokenAt: walk.brokenAt, reason: walk.reason ?? 'broken' } : {}),
      complete: walk.done,
      at: this.now(),
      tookMs: this.now() - started,
    };
    return this.#last;
  }
}
