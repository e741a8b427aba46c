/**
 * join/tpm/reattest.ts RuleHandOff: the rule a policy lookup read, handed to the judgement that
 * follows it in the same request (same instance record, same `now`) — and to nothing else.
 */
import { describe, expect, it } from 'vitest';
import { RuleHandOff } from '../../../src/join/tpm/reattest.js';

const rule = { name: 'racks', bot: 'gw', config: { firmware_profiles: ['lab-gateway-v1'] } };

describe('RuleHandOff', () => {
  it('hands the rule to the same record at the same now, once', () => {
    const h = new RuleHandOff();
    const facts = { tpm_rule: 'racks' };
    h.give(facts, 1000, rule);
    expect(h.take(facts, 1000)).toBe(rule);
    expect(h.take(facts, 1000)).toBeUndefined();
  });

  it('gives nothing to another record, or to the same record at another now (another request)', () => {
    const h = new RuleHandOff();
    const facts = { tpm_rule: 'racks' };
    h.give(facts, 1000, rule);
    expect(h.take({ tpm_rule: 'racks' }, 1000)).toBeUndefined();
    expect(h.take(facts, 1001)).toBeUndefined();
    // A mismatched take drops the entry: a later request never sees it.
    expect(h.take(facts, 1000)).toBeUndefined();
  });
});
