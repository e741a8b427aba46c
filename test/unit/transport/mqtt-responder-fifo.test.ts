/**
 * The responder serves a burst first come, first served, at most 32 requests at once (issue #14):
 * unbounded, 5,000 renewals arriving together all advanced together and all finished after the
 * agents' timeout. Its handling is replaced by a gate the test opens, so nothing here sleeps.
 */
import type { IPublishPacket } from 'mqtt';
import { expect, it } from 'vitest';
import type { IssuerContext } from '../../../src/server/issuer.js';
import { MqttResponder } from '../../../src/transport/mqtt/responder.js';

it('runs at most 32 requests at once and starts the waiting ones in arrival order', async () => {
  const ctx = {
    log: { warn: () => undefined, info: () => undefined, error: () => undefined },
    metrics: { requests: { inc: () => undefined } },
  } as unknown as IssuerContext;
  const r = new MqttResponder({ url: 'mqtt://127.0.0.1:1', ctx });
  const started: number[] = [];
  const gates: Array<() => void> = [];
  let running = 0;
  let peak = 0;
  const internals = r as unknown as {
    handle(topic: string, payload: Buffer, packet: IPublishPacket): Promise<void>;
    onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void;
  };
  internals.handle = (_topic, payload) => {
    started.push(Number(payload.toString()));
    running++;
    peak = Math.max(peak, running);
    return new Promise<void>((done) =>
      gates.push(() => {
        running--;
        done();
      }),
    );
  };
  for (let i = 0; i < 100; i++)
    internals.onMessage('sigil/v1/renew', Buffer.from(String(i)), {} as unknown as IPublishPacket);
  expect(started).toEqual(Array.from({ length: 32 }, (_, i) => i));

  // Finish them one by one, in any order: each finish starts the oldest waiting request.
  while (gates.length > 0) {
    gates.splice(Math.floor(gates.length / 2), 1)[0]!();
    await new Promise((r) => setImmediate(r));
  }
  expect(started).toEqual(Array.from({ length: 100 }, (_, i) => i));
  expect(peak).toBe(32);
});
