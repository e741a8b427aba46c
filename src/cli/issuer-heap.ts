/**
 * V8's heap growing factor for the issuer process (issue #14: p99 at 80% of saturation).
 *
 * Why: the longest pauses of a busy issuer are V8's major GCs, and two thirds of such a pause is
 * V8 running the weak callbacks of native objects that died since the last one — above all one
 * KeyObject per renewal (the CSR's key, kept for the next renewal's JWS and dropped after it:
 * pki/key-cache.ts). How many died is proportional to how long ago the last major GC was. V8 lets
 * the old generation grow by a dynamic factor (up to ×4 on a large host) before the next one; at
 * ×1.1 major GCs come ~3× as often on the issuer's ~30 MB live heap, and each frees a third as
 * many objects: measured on the bench's closed loop, the longest GC pause fell from 44–50 ms to
 * 12–21 ms, for ~5% more CPU per renewal (V8's concurrent marking; docs/performance.md
 * "Session 10", docs/scaling.md "Tail latency and the heap"). The heap also stays smaller.
 *
 * An operator's own `--heap-growing-percent` (node's command line) wins; `=0` gives V8's default
 * back. Set from code because the flag is not allowed in NODE_OPTIONS; V8 reads it at each major
 * GC, so setting it at start-up takes effect from the first one.
 */
import { setFlagsFromString } from 'node:v8';

export const ISSUER_HEAP_GROWING_PERCENT = 10;

/** Whether node's own arguments already set the heap growing factor (either spelling of the flag). */
export function heapGrowingGiven(execArgv: readonly string[]): boolean {
  return execArgv.some((a) => /^--heap[-_]growing[-_]percent(=|$)/.test(a));
}

/** Apply {@link ISSUER_HEAP_GROWING_PERCENT} unless node was started with its own; true when applied. */
export function tuneIssuerHeap(execArgv: readonly string[] = process.execArgv): boolean {
  if (heapGrowingGiven(execArgv)) return false;
  setFlagsFromString(`--heap-growing-percent=${ISSUER_HEAP_GROWING_PERCENT}`);
  return true;
}
