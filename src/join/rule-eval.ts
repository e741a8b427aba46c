/**
 * Several join rules of one method may apply to the same evidence (one per AWS account, one per
 * GitHub repository…). They are tried in name order and the first that accepts wins. When none
 * accepts, the refusal reported is the one from the rule that got *furthest* through its checks
 * (x509/evaluate.ts does the same): a token every rule distrusts is `jwt_issuer_mismatch`, but
 * a token one rule trusts whose repository is not allowed is `oidc_claims_not_allowed` — the
 * code names the check that actually stopped the machine.
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
  for (const rule of rules) {
    let stage = 0;
    try {
      const value = await attempt(rule, { reached: (n) => (stage = Math.max(stage, n)) });
      return { rule, value };
    } catch (err) {
      if (!(err instanceof SigilError)) throw err;
      if (best === undefined || stage > best.stage) best = { stage, error: err };
    }
  }
  if (best === undefined) throw new TypeError('firstAcceptingRule: no rules');
  throw best.error;
}
