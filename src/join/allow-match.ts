/**
 * Allow lists of the cloud and CI join rules (aws_iid, gcp, azure, oidc), one matcher for all:
 *
 *   allow:
 *     - { account_id: "123456789012", region: [us-east-1, us-west-2], instance_type: "t3.*" }
 *
 * A fact matches when it matches at least one of the field's patterns; an entry matches when
 * every field it names matches (AND); the list matches when some entry does (OR). Patterns
 * are exact strings or globs (`*` any run, `?` one character, anchored; x509/allow.ts
 * globMatch). A fact that is an array (CircleCI context ids, a JWT `aud`) matches when any of
 * its elements does; numbers and booleans are compared as their JSON text. A missing fact
 * never matches — a rule that asks for `environment` refuses a token without one.
 */
import { z } from 'zod';
import { SigilError, type ErrorCode } from '../errors.js';
import { globMatch } from './x509/allow.js';

/** One pattern or a list of them. */
export const patternSchema = z.union([
  z.string().min(1).max(512),
  z.array(z.string().min(1).max(512)).min(1).max(1000),
]);
export type Pattern = z.infer<typeof patternSchema>;

/** The same, but exact values only (no `*`/`?`): for fields where a wildcard would be a blunder (account ids). */
export const exactSchema = (re: RegExp, what: string): z.ZodType<string | string[]> =>
  z.union([z.string().regex(re, what), z.array(z.string().regex(re, what)).min(1).max(1000)]);

const asList = (p: Pattern): string[] => (Array.isArray(p) ? p : [p]);

function scalarText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return JSON.stringify(v);
  return undefined;
}

/** Whether `value` (a claim or fact) matches `pattern`. */
export function factMatches(pattern: Pattern, value: unknown): boolean {
  const values = (Array.isArray(value) ? value : [value]).map(scalarText).filter((v): v is string => v !== undefined);
  return asList(pattern).some((p) => values.some((v) => globMatch(p, v)));
}

const show = (v: unknown): string => (v === undefined ? '(absent)' : JSON.stringify(v));

/**
 * Why `entry` does not match, or undefined when it does. `fields` maps each allow-entry key to
 * the fact it tests (the fact's name is what messages and audit rows show).
 */
export function entryMismatch(
  entry: Record<string, unknown>,
  facts: Record<string, unknown>,
  fields: Record<string, string>,
): string | undefined {
  for (const [key, pattern] of Object.entries(entry)) {
    if (pattern === undefined) continue;
    const fact = fields[key];
    if (fact === undefined) continue; // not a matching field (e.g. nested `claims`, handled by the caller)
    if (!factMatches(pattern as Pattern, facts[fact]))
      return `${key} ${show(facts[fact])} does not match ${JSON.stringify(pattern)}`;
  }
  return undefined;
}

/**
 * Throw `code` unless some entry matches; the message names the rule and why each of the
 * first entries failed (the failing field and the value it saw), which the audit row keeps.
 */
export function checkAllowList<E extends Record<string, unknown>>(
  entries: readonly E[],
  mismatch: (e: E) => string | undefined,
  code: ErrorCode,
  what: string,
  rule: string,
): number {
  const reasons: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    const why = mismatch(entries[i]!);
    if (why === undefined) return i;
    reasons.push(`entry ${i + 1}: ${why}`);
  }
  const shown = reasons.slice(0, 3).join('; ') + (reasons.length > 3 ? `; … (${reasons.length} entries)` : '');
  throw new SigilError(code, `${what} matches no allow entry of join_rule ${rule}: ${shown}`);
}
