/**
 * How both backends merge into an instance's stored facts (types.ts updateFacts, and recordIssue's
 * `mergeFacts`): shallow — the given keys replace the stored ones, a key whose value is undefined
 * is dropped (canonical JSON leaves it out), the others stay — stored as canonical JSON, with the
 * fleet view's attestation state derived from the result (migration 7 / PostgreSQL migration 2).
 * Merged in JavaScript on PostgreSQL too: `jsonb` refuses the NUL and lone surrogates that
 * canonical JSON writes and stored facts may hold.
 */
import { canonicalJson } from './sqlite/canonical-json.js';
import { attestationOkOf } from './fleet-query.js';

export function mergeFactsText(
  stored: string,
  patch: Record<string, unknown>,
): { facts: string; attestationOk: boolean | null } {
  const merged = { ...(JSON.parse(stored) as Record<string, unknown>), ...patch };
  return { facts: canonicalJson(merged), attestationOk: attestationOkOf(merged) };
}
