/**
 * A join rule that cannot be judged (its key set or CA file missing) is named in the refusal even
 * when another rule got further and its refusal is the one reported: a typo in one rule's path
 * used to hide behind the other rule's `jwt_kid_unknown`, retried forever (found walking
 * docs/join-oidc.md).
 */
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { firstAcceptingRule } from '../../../src/join/rule-eval.js';
import type { JoinRule } from '../../../src/join/rules.js';

const rule = (name: string): JoinRule<{ n: string }> =>
  ({ name, bot: 'gw', config: { n: name } }) as JoinRule<{ n: string }>;

describe('firstAcceptingRule and unusable rules', () => {
  const missing = new SigilError('join_rule_unusable', 'cannot read key set file /etc/sigil/typo-jwks.json: ENOENT');

  it("another rule's refusal is reported with its code, and names the unusable rule", async () => {
    const err = (await firstAcceptingRule([rule('k8s-a'), rule('k8s-b')], (r, stage) => {
      if (r.name === 'k8s-a') throw missing;
      stage.reached(1);
      throw new SigilError('jwt_kid_unknown', 'no RS256 key with kid "k1" in /etc/sigil/jwks2.json');
    }).catch((e: unknown) => e)) as SigilError;
    expect(err.code).toBe('jwt_kid_unknown');
    expect(err.message).toMatch(
      /^no RS256 key with kid "k1".*; also unusable \(fix it on the issuer\): join_rule k8s-a: cannot read key set file \/etc\/sigil\/typo-jwks\.json: ENOENT$/,
    );
  });

  it('the unusable rule alone: its own refusal, unchanged', async () => {
    await expect(
      firstAcceptingRule([rule('k8s-a')], () => {
        throw missing;
      }),
    ).rejects.toBe(missing);
  });

  it('a rule that accepts wins; nothing is said of an unusable one', async () => {
    const r = await firstAcceptingRule([rule('k8s-a'), rule('k8s-b')], (x) => {
      if (x.name === 'k8s-a') throw missing;
      return 'ok';
    });
    expect(r.rule.name).toBe('k8s-b');
  });
});
