/**
 * Shared machinery of the fuzz tests (issue #11). Every parser an unauthenticated client can
 * reach must, for ANY input, either return or throw a coded SigilError — never a TypeError,
 * RangeError or JSON SyntaxError, never take longer than a bound, and never allocate in
 * proportion to a length the input merely *claims*.
 *
 * Knobs (environment):
 *   SIGIL_FUZZ_RUNS       runs per property (default 1000; expensive properties run a fraction)
 *   SIGIL_FUZZ_SEED       fast-check seed (default 1101, so the suite is reproducible; `random`
 *                         for a fresh one; fast-check prints seed and path on failure)
 *   SIGIL_FUZZ_BUDGET_MS  wall-clock cap per property (default 2500 ms): a property stops
 *                         early, without failing, when the budget is spent — the whole fuzz
 *                         set stays within ~30 s of the suite whatever the machine
 *   SIGIL_FUZZ_STATS      a file to append per-target outcome tallies to (see below)
 *
 * `npm run fuzz -- --minutes N` (scripts/fuzz.mjs) runs these files in a loop with a large run
 * count and fresh seeds.
 */
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll } from 'vitest';
import { SigilError } from '../../src/errors.js';

export const FUZZ_RUNS = Math.max(1, Number(process.env.SIGIL_FUZZ_RUNS ?? 1000));
/** The suite's default seed is fixed (a CI run is reproducible); `random` or the loop script explores. */
const SEED_ENV = process.env.SIGIL_FUZZ_SEED ?? '1101';
export const FUZZ_SEED = SEED_ENV === 'random' ? undefined : Number(SEED_ENV);
export const FUZZ_BUDGET_MS = Math.max(100, Number(process.env.SIGIL_FUZZ_BUDGET_MS ?? 2500));
/** Per-input bound for inputs under 64 KiB (the request body limit). */
export const MAX_INPUT_MS = 200;
/** Heap + ArrayBuffer growth one input may cause (far below any claimed-length allocation). */
export const MAX_INPUT_ALLOC = 32 * 1024 * 1024;

/** fast-check parameters: `scale` multiplies the run count (expensive properties use < 1). */
export function fuzzParams<T>(scale = 1, extra: fc.Parameters<T> = {}): fc.Parameters<T> {
  return {
    numRuns: Math.max(1, Math.round(FUZZ_RUNS * scale)),
    ...(FUZZ_SEED !== undefined ? { seed: FUZZ_SEED } : {}),
    interruptAfterTimeLimit: FUZZ_BUDGET_MS * Math.max(1, scale),
    markInterruptAsFailure: false,
    // Keep shrinking bounded: a loop run must not spend minutes minimising one failure.
    skipAllAfterTimeLimit: FUZZ_BUDGET_MS * 4,
    ...extra,
  };
}

/** Test timeout for a property run with `fuzzParams(scale)`: budget + shrinking + slack. */
export function fuzzTimeout(scale = 1): number {
  return FUZZ_BUDGET_MS * Math.max(1, scale) * 6 + 30_000;
}

export class FuzzFailure extends Error {
  override name = 'FuzzFailure';
}

function describe(input: unknown): string {
  if (Buffer.isBuffer(input) || input instanceof Uint8Array) {
    const b = Buffer.from(input);
    return `${b.length} bytes: ${b.subarray(0, 96).toString('hex')}${b.length > 96 ? '…' : ''}`;
  }
  const s = typeof input === 'string' ? input : (JSON.stringify(input) ?? String(input));
  return `${s.length} chars: ${JSON.stringify(s.slice(0, 200))}`;
}

/**
 * SIGIL_FUZZ_STATS=<file>: tally the outcome (error code, or ok) per target and append it to
 * the file when the worker exits — to see that mutated inputs get past the first checks.
 */
const STATS = process.env.SIGIL_FUZZ_STATS ? new Map<string, Map<string, number>>() : undefined;
if (STATS) {
  afterAll(() => {
    const lines = [...STATS].map(
      ([what, m]) =>
        `${what}: ${[...m]
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => `${k}=${n}`)
          .join(' ')}\n`,
    );
    appendFileSync(process.env.SIGIL_FUZZ_STATS!, lines.join(''));
    STATS.clear();
  });
}
export function tally(what: string, outcome: string): void {
  if (!STATS) return;
  const m = STATS.get(what) ?? new Map<string, number>();
  m.set(outcome, (m.get(outcome) ?? 0) + 1);
  STATS.set(what, m);
}

/** The verdict on what a parser threw: a coded SigilError is fine, anything else is a bug. */
export function checkThrown(err: unknown, what: string, input: unknown, allow?: (e: unknown) => boolean): void {
  tally(what, err instanceof SigilError ? err.code : err instanceof Error ? err.name : 'thrown');
  if (allow?.(err)) return;
  if (err instanceof SigilError && err.code !== 'internal') return;
  const cause = err instanceof SigilError ? err.cause : err;
  const kind = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
  throw new FuzzFailure(
    `${what} leaked ${err instanceof SigilError ? 'an internal error' : 'a non-SigilError'} (${kind.slice(0, 300)}) for input ${describe(input)}`,
    { cause },
  );
}

function sizeOf(input: unknown): number {
  if (typeof input === 'string') return input.length;
  if (input instanceof Uint8Array) return input.length;
  return JSON.stringify(input)?.length ?? 0;
}

function allocated(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

export interface CheckOptions {
  /** Accept this error too (e.g. a documented non-SigilError contract). */
  allow?: (e: unknown) => boolean;
  /** Per-input time bound (default {@link MAX_INPUT_MS} for inputs under 64 KiB). */
  maxMs?: number;
  /** Allocation bound for this input (default {@link MAX_INPUT_ALLOC}). */
  maxAlloc?: number;
}

/**
 * Run `parse(input)`; fail on a non-coded error, on more than `maxMs` (measured again, best of
 * three, so a GC pause or a busy neighbour does not fail the suite) or on an allocation burst.
 */
export function mustBeCoded<T>(what: string, input: T, parse: (x: T) => unknown, o: CheckOptions = {}): void {
  const limit = o.maxMs ?? (sizeOf(input) < 64 * 1024 ? MAX_INPUT_MS : MAX_INPUT_MS * 10);
  let best = Infinity;
  for (let attempt = 0; attempt < 3 && best > limit; attempt++) {
    const before = allocated();
    const t0 = performance.now();
    try {
      parse(input);
      if (attempt === 0) tally(what, 'ok');
    } catch (err) {
      checkThrown(err, what, input, o.allow);
    }
    best = Math.min(best, performance.now() - t0);
    const grew = allocated() - before;
    if (grew > (o.maxAlloc ?? MAX_INPUT_ALLOC))
      throw new FuzzFailure(`${what} allocated ${(grew / 2 ** 20).toFixed(1)} MiB for input ${describe(input)}`);
  }
  if (best > limit)
    throw new FuzzFailure(`${what} took ${best.toFixed(0)} ms (> ${limit} ms) for input ${describe(input)}`);
}

/**
 * The async form, for the issuer's operation handlers and anything that goes through the async
 * store. The allocation bound is checked only when `o.maxAlloc` is given: across awaits other
 * work (sockets, timers) allocates too, so it suits paths that do no I/O of their own (policy apply).
 */
export async function mustBeCodedAsync<T>(
  what: string,
  input: T,
  run: (x: T) => Promise<unknown>,
  o: CheckOptions = {},
): Promise<void> {
  const limit = o.maxMs ?? MAX_INPUT_MS;
  let best = Infinity;
  for (let attempt = 0; attempt < 3 && best > limit; attempt++) {
    const before = allocated();
    const t0 = performance.now();
    try {
      await run(input);
      if (attempt === 0) tally(what, 'ok');
    } catch (err) {
      checkThrown(err, what, input, o.allow);
    }
    best = Math.min(best, performance.now() - t0);
    const grew = allocated() - before;
    if (o.maxAlloc !== undefined && grew > o.maxAlloc)
      throw new FuzzFailure(`${what} allocated ${(grew / 2 ** 20).toFixed(1)} MiB for input ${describe(input)}`);
  }
  if (best > limit)
    throw new FuzzFailure(`${what} took ${best.toFixed(0)} ms (> ${limit} ms) for input ${describe(input)}`);
}

// --- structure-aware mutations -------------------------------------------------------------

/** Where a length (or count) field sits, so a mutation can make it claim something else. */
export interface LengthField {
  offset: number;
  /** Bytes the current encoding occupies. */
  width: number;
  /** Encodings to put there instead (their width may differ: the buffer is spliced). */
  replacements: (current: Buffer) => Buffer[];
}

/** Claimed sizes that have broken parsers elsewhere: sign bits, 2^31, 2^32-1, off by one. */
const HUGE_DER_LENGTHS = [
  [0x84, 0x7f, 0xff, 0xff, 0xff],
  [0x84, 0x80, 0x00, 0x00, 0x00],
  [0x84, 0xff, 0xff, 0xff, 0xff],
  [0x88, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
  [0x80],
  [0x81, 0x00],
  [0x82, 0x00, 0x05],
  [0x00],
  [0x7f],
].map((b) => Buffer.from(b));

/** The length octets of every TLV a tolerant walk finds (X.690 §8.1.3). */
export function derLengthFields(buf: Buffer): LengthField[] {
  const out: LengthField[] = [];
  const walk = (start: number, end: number, depth: number): void => {
    let p = start;
    while (p + 2 <= end && depth < 20 && out.length < 400) {
      const tag = buf[p]!;
      const first = buf[p + 1]!;
      let len = first;
      let width = 1;
      if (first & 0x80) {
        const n = first & 0x7f;
        if (n === 0 || n > 4 || p + 2 + n > end) return;
        len = 0;
        for (let i = 0; i < n; i++) len = len * 256 + buf[p + 2 + i]!;
        width = 1 + n;
      }
      const content = p + 1 + width;
      if (content + len > end) return;
      out.push({
        offset: p + 1,
        width,
        replacements: () => [
          ...HUGE_DER_LENGTHS,
          encodeDerLength(len + 1),
          encodeDerLength(Math.max(0, len - 1)),
          encodeDerLength(len + 0x10000),
        ],
      });
      if (tag & 0x20) walk(content, content + len, depth + 1);
      p = content + len;
    }
  };
  walk(0, buf.length, 0);
  return out;
}

function encodeDerLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Every offset as a possible big-endian u16 / u32 length (TPM2B sizes, TPML counts, SSH strings). */
export function beLengthFieldsAt(width: 2 | 4): (buf: Buffer) => LengthField[] {
  return (buf) => {
    const out: LengthField[] = [];
    for (let i = 0; i + width <= buf.length; i++) {
      out.push({ offset: i, width, replacements: (cur) => interestingInts(cur, width, 'be') });
    }
    return out;
  };
}

/** Every offset as a possible little-endian u32 (event-log sizes and counts) or u64. */
export function leLengthFieldsAt(width: 4 | 8): (buf: Buffer) => LengthField[] {
  return (buf) => {
    const out: LengthField[] = [];
    for (let i = 0; i + width <= buf.length; i++)
      out.push({ offset: i, width, replacements: (cur) => interestingInts(cur, width, 'le') });
    return out;
  };
}

function interestingInts(cur: Buffer, width: 2 | 4 | 8, endian: 'be' | 'le'): Buffer[] {
  const values: bigint[] = [0n, 1n, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn];
  if (width >= 4) values.push(0x7fffffffn, 0x80000000n, 0xffffffffn, 0x10000n);
  if (width === 8) values.push(0x7fffffffffffffffn, 0xffffffffffffffffn, 0x20000000000000n);
  const current = width === 2 ? BigInt(cur.readUInt16BE(0)) : 0n;
  values.push(current + 1n);
  return values.map((v) => {
    const b = Buffer.alloc(width);
    if (width === 2) endian === 'be' ? b.writeUInt16BE(Number(v & 0xffffn)) : b.writeUInt16LE(Number(v & 0xffffn));
    else if (width === 4)
      endian === 'be' ? b.writeUInt32BE(Number(v & 0xffffffffn)) : b.writeUInt32LE(Number(v & 0xffffffffn));
    else endian === 'be' ? b.writeBigUInt64BE(v) : b.writeBigUInt64LE(v);
    return b;
  });
}

type Op =
  | { k: 'flip'; pos: number; bit: number }
  | { k: 'set'; pos: number; byte: number }
  | { k: 'truncate'; pos: number }
  | { k: 'insert'; pos: number; bytes: Uint8Array }
  | { k: 'delete'; pos: number; n: number }
  | { k: 'dup'; pos: number; n: number }
  | { k: 'length'; field: number; choice: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('flip' as const), pos: fc.nat(), bit: fc.nat(7) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('set' as const),
      pos: fc.nat(),
      byte: fc.constantFrom(0, 0x7f, 0x80, 0xff, 0x01, 0x30, 0xa0, 0x04),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('truncate' as const), pos: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('insert' as const),
      pos: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('delete' as const), pos: fc.nat(), n: fc.integer({ min: 1, max: 16 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('dup' as const), pos: fc.nat(), n: fc.integer({ min: 1, max: 64 }) }),
  },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('length' as const), field: fc.nat(), choice: fc.nat() }) },
);

function apply(buf: Buffer, op: Op, fields: (b: Buffer) => LengthField[]): Buffer {
  const at = (pos: number, len = buf.length): number => (len === 0 ? 0 : pos % len);
  switch (op.k) {
    case 'flip': {
      if (buf.length === 0) return buf;
      const b = Buffer.from(buf);
      b[at(op.pos)]! ^= 1 << op.bit;
      return b;
    }
    case 'set': {
      if (buf.length === 0) return buf;
      const b = Buffer.from(buf);
      b[at(op.pos)] = op.byte;
      return b;
    }
    case 'truncate':
      return buf.subarray(0, at(op.pos, buf.length + 1));
    case 'insert': {
      const p = at(op.pos, buf.length + 1);
      return Buffer.concat([buf.subarray(0, p), op.bytes, buf.subarray(p)]);
    }
    case 'delete': {
      const p = at(op.pos, buf.length + 1);
      return Buffer.concat([buf.subarray(0, p), buf.subarray(p + op.n)]);
    }
    case 'dup': {
      const p = at(op.pos, buf.length + 1);
      const chunk = buf.subarray(p, p + op.n);
      return Buffer.concat([buf.subarray(0, p + chunk.length), chunk, buf.subarray(p + chunk.length)]);
    }
    case 'length': {
      const fs = fields(buf);
      if (fs.length === 0) return buf;
      const f = fs[op.field % fs.length]!;
      const reps = f.replacements(buf.subarray(f.offset, f.offset + f.width));
      const rep = reps[op.choice % reps.length]!;
      return Buffer.concat([buf.subarray(0, f.offset), rep, buf.subarray(f.offset + f.width)]);
    }
  }
}

/**
 * Inputs derived from valid `seeds` by 1–4 mutations: bit flips, interesting bytes, truncation,
 * insertion, deletion, duplication and — through `fields` — length fields made to claim
 * something else (huge, indefinite, off by one).
 */
export function mutated(
  seeds: readonly Buffer[],
  fields: (b: Buffer) => LengthField[] = derLengthFields,
): fc.Arbitrary<Buffer> {
  if (seeds.length === 0) throw new TypeError('mutated() needs at least one seed');
  return fc
    .tuple(fc.nat(seeds.length - 1), fc.array(opArb, { minLength: 1, maxLength: 4 }))
    .map(([i, ops]) => ops.reduce((b, op) => apply(b, op, fields), seeds[i]!));
}

/** Random bytes, mostly short, sometimes up to `max`. */
export function randomBytes(max = 4096): fc.Arbitrary<Buffer> {
  return fc
    .oneof(
      { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: max }) },
    )
    .map((u) => Buffer.from(u));
}

/** Random bytes, or a mutation of a seed (the usual mix). */
export function fuzzBytes(
  seeds: readonly Buffer[],
  fields: (b: Buffer) => LengthField[] = derLengthFields,
): fc.Arbitrary<Buffer> {
  return fc.oneof({ weight: 1, arbitrary: randomBytes() }, { weight: 4, arbitrary: mutated(seeds, fields) });
}
