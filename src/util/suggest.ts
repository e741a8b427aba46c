/**
 * "Did you mean …?" for a mistyped key: the closest known name by edit distance. A typo in a
 * YAML key otherwise only says "unrecognized key", and the operator has to find the right
 * spelling in the docs (issue #12 item 7).
 */

/** Levenshtein distance (insert, delete, substitute: 1 each). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** Further than 2 edits a "suggestion" is mostly a different word. */
export const MAX_SUGGEST_DISTANCE = 2;

/** The known name closest to `word` within {@link MAX_SUGGEST_DISTANCE}, or undefined (ties: the first listed). */
export function closest(word: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = MAX_SUGGEST_DISTANCE + 1;
  for (const k of known) {
    if (k === word) continue;
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best;
}
