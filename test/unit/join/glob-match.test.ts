/**
 * x509 allow-list globs (join/x509/allow.ts globMatch) are matched directly, with nothing
 * compiled or cached: the result must be exactly that of the anchored regular expression the
 * patterns always meant (`*` → `.*`, `?` → `.`, dotAll; `i` when case-insensitive).
 */
import { describe, expect, it } from 'vitest';
import { globMatch } from '../../../src/join/x509/allow.js';

function reference(pattern: string, value: string, ignoreCase: boolean): boolean {
  const src = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${src}$`, ignoreCase ? 'is' : 's').test(value);
}

describe('globMatch', () => {
  it('agrees with the anchored regular expression on many random patterns and values', () => {
    const alphabet = ['a', 'b', 'A', '.', '-', '*', '?', '\n', 'é', 'É'];
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    // Values may hold `*` and `?` too: there they are plain characters.
    const word = (max: number): string =>
      Array.from({ length: rnd(max) }, () => alphabet[rnd(alphabet.length)]!).join('');
    for (let i = 0; i < 20_000; i++) {
      const p = word(7);
      const v = word(9);
      const ci = rnd(2) === 1;
      expect(globMatch(p, v, ci), `${JSON.stringify(p)} ~ ${JSON.stringify(v)} ci=${ci}`).toBe(reference(p, v, ci));
    }
  });

  it('is linear-ish on patterns that make a backtracking regex slow', () => {
    const start = process.hrtime.bigint();
    expect(globMatch(`${'*a'.repeat(30)}b`, 'a'.repeat(5000))).toBe(false);
    expect(Number(process.hrtime.bigint() - start) / 1e6).toBeLessThan(2000);
  });
});
