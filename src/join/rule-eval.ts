/**
 * Several join rules of one method may apply to the same evidence (one per AWS account, one per
 * GitHub repository…). They are tried in name order and the first that accepts wins. When none
 * accepts, the refusal reported is the one from the rule that got *furthest* through its checks
 * (x509/evaluate.ts does the same): a token every rule distrusts is `jwt_issuer_mismatch`, but
 * a token one rule trusts whose repository is not allowed is `oidc_claims_not_allowed` — the
 * code names the check that actually stopped the machine.
 *
 * A rule that could not be judged at all (`join_rule_unusable`: its key set or CA file is missing
 * or unreadable) is named in that refusal too, whichever rule got furthest: otherwise a typo in
 * one rule's file path hid behind another rule's refusal, and the machine was retried forever
 * against a message about the wrong rule (found walking docs/join-oidc.md).
 */
import { SigilError } from '../errors.js';
import type { JoinRule } from './rules.js';

export interface StageTracker {
  /** Record that the rule passed the checks before stage `n` (higher = further). */
  reached(n: number): void;
}

export async function firstAcceptingRule<R, T>(
  rules: ReadonlyArray<JoinRule<R>>,
  attempt: (rule: JoinRule<R>, stage: StageTracker) => Promise<T> | T,
): Promise<{ rule: JoinRule<R>; value: T }> {
  let best: { stage: number; error: SigilError } | undefined;
  const unusable: string[] = [];
  for (const rule of rules) {
    let stage = 0;
    try {
      const value = await attempt(rule, { reached: (n) => (stage = Math.max(stage, n)) });
      return { rule, value };
    } catch (err) {
      if (!(err instanceof SigilError)) throw err;
      if (err.code === 'join_rule_unusable') unusable.push(`join_rule ${rule.name}: ${err.message}`);
      if (best === undefined || stage > best.stage) best = { stage, error: err };
    }
  }
  if (best === undefined) throw new TypeError('firstAcceptingRule: no rules');
  const others = unusable.filter((u) => !u.endsWith(best!.error.message));
  if (others.length === 0) throw best.error;
  throw new SigilError(
    best.error.code,
    `${best.error.message}; also unusable (fix it on the issuer): ${others.slice(0, 3).join('; ')}`,
    { cause: best.error, ...(best.error.retryAfterMs !== undefined ? { retryAfterMs: best.error.retryAfterMs } : {}) },
  );
}
