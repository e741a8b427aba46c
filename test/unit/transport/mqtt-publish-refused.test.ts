/**
 * A broker's refusal of a publish names its cause: on the bootstrap login (an mqtts agent in its
 * certificate's last minutes or after expiry) a refused renewal is the documented ACL at work, not
 * a broker misconfiguration — the walk of the docs on 2026-12-06 was sent to "check its ACL".
 */
import { describe, expect, it } from 'vitest';
import { publishRefused } from '../../../src/transport/mqtt/client.js';
import { requestTopic } from '../../../src/transport/mqtt/topics.js';

describe('MQTT publish refused by the broker', () => {
  const err = new Error('Publish error: Not authorized');
  it('on the bootstrap login, a renewal: says the login publishes joins only and what happens next', () => {
    const e = publishRefused('mqtts://b:8883', requestTopic('renew'), err, true);
    expect(e.code).toBe('issuer_unreachable');
    expect(e.message).toMatch(
      /refused the publish to sigil\/v1\/renew: Publish error: Not authorized; the agent is on its bootstrap login/,
    );
    expect(e.message).toContain('joins again (tpm, x509, cloud joins) or reports reattest_required (a token join)');
    for (const op of ['credential', 'workload', 'attest'] as const)
      expect(publishRefused('u', requestTopic(op), err, true).message).toContain('bootstrap login');
    expect(e.message).not.toContain('check its ACL');
  });
  it('a join or a bundle on the bootstrap login, or anything on the instance login: check the ACL', () => {
    expect(publishRefused('u', requestTopic('join'), err, true).message).toMatch(/; check its ACL for this client$/);
    // The bootstrap role may publish bundle requests too (docs/mqtt.md): refused, it is the ACL.
    expect(publishRefused('u', requestTopic('bundle'), err, true).message).toMatch(/; check its ACL for this client$/);
    expect(publishRefused('u', requestTopic('renew'), err, false).message).toMatch(/; check its ACL for this client$/);
  });
});
