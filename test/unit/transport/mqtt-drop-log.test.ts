/**
 * Requests the MQTT responder drops (a response topic that is not the requester's, a renewal that
 * does not authenticate) are what anyone on the broker can send: each is counted, but only the
 * first 20 of a reason per minute are logged, each field capped (issue #11 item 4).
 */
import { expect, it } from 'vitest';
import { MqttResponder } from '../../../src/transport/mqtt/responder.js';
import type { IssuerContext } from '../../../src/server/issuer.js';

it('logs at most 20 drops of a reason a minute, with capped fields, and counts them all', () => {
  const lines: Array<Record<string, unknown>> = [];
  const counted: string[] = [];
  const ctx = {
    log: {
      warn: (fields: Record<string, unknown>) => lines.push(fields),
      info: () => undefined,
      error: () => undefined,
    },
    metrics: { requests: { inc: (l: { outcome: string }) => counted.push(l.outcome) } },
  } as unknown as IssuerContext;
  const r = new MqttResponder({ url: 'mqtt://127.0.0.1:1', ctx });
  const drop = (r as unknown as { drop(op: string, why: string, f: Record<string, unknown>): void }).drop.bind(r);
  for (let i = 0; i < 500; i++)
    drop('renew', 'bad_response_topic', {
      topic: `sigil/v1/${'x'.repeat(5000)}`,
      response_topic: 'sigil/v1/resp/other',
    });
  drop('join', 'bad_correlation', { topic: 'sigil/v1/join' });
  expect(counted).toHaveLength(501);
  expect(r.dropped.bad_response_topic).toBe(500);
  expect(lines.filter((l) => l.reason === 'bad_response_topic')).toHaveLength(20);
  expect(lines.filter((l) => l.reason === 'bad_correlation')).toHaveLength(1);
  expect(String(lines[0]!.topic).length).toBeLessThan(300);
});
