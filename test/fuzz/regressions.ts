/**
 * Replays the inputs fuzzing found (test/fuzz/regressions/<area>.json). Each case names its
 * target parser, the input (hex bytes, text or a JSON value) and the coded refusal the fixed
 * parser must give — so a regression fails with the exact input, not a seed that may stop
 * reproducing when an arbitrary changes. A case with `"code": null` must be accepted.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { mustBeCoded } from './harness.js';

export interface RegressionCase {
  name: string;
  target: string;
  /** Exactly one of these. */
  hex?: string;
  text?: string;
  json?: unknown;
  /** The SigilError code expected, or null when the input must parse. */
  code: string | null;
  /** What was wrong before the fix (kept for the reader). */
  bug: string;
}

export function loadRegressions(area: string): RegressionCase[] {
  return JSON.parse(readFileSync(join(import.meta.dirname, 'regressions', `${area}.json`), 'utf8')) as RegressionCase[];
}

export function regressionInput(c: RegressionCase): unknown {
  if (c.hex !== undefined) return Buffer.from(c.hex, 'hex');
  if (c.text !== undefined) return c.text;
  return c.json;
}

/** One test per case of `area`, run with `targets[c.target]`. */
export function replayRegressions(area: string, targets: Record<string, (input: any) => unknown>): void {
  const cases = loadRegressions(area);
  if (cases.length === 0) return;
  describe(`${area} regressions`, () => {
    for (const c of cases) {
      it(c.name, () => {
        const target = targets[c.target];
        if (!target) throw new Error(`regression ${c.name}: no target ${c.target}`);
        const input = regressionInput(c);
        mustBeCoded(c.name, input, target);
        if (c.code === null) {
          target(input);
          return;
        }
        let thrown: unknown;
        try {
          target(input);
        } catch (e) {
          thrown = e;
        }
        expect(thrown, `${c.name}: expected a refusal`).toBeInstanceOf(SigilError);
        expect((thrown as SigilError).code).toBe(c.code);
      });
    }
  });
}
