/**
 * Fuzzing the issuer's MQTT responder body handling (transport/mqtt/responder.ts): any topic,
 * payload bytes and MQTT v5 properties a broker may deliver. The module promises "nothing a
 * client sends can crash the responder: every path ends in a signed answer, a counted drop, or
 * a logged internal error" — here an `internal` answer, a rejected handler, an answer on another
 * topic than the request's response topic, or no answer to a join or bundle request on a
 * bootstrap topic is a failure. No broker: the responder's client is a stub that
 * records what would be published.
 */
import fc from 'fast-check';
import type { IPublishPacket } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64u, type Jws } from '../../src/protocol/jws.js';
import { MqttResponder } from '../../src/transport/mqtt/responder.js';
import { startIssuer, type Harness } from '../integration/harness.js';
import { FuzzFailure, fuzzParams, fuzzTimeout, mustBeCodedAsync, mutated, tally } from './harness.js';

let h: Harness;
let responder: MqttResponder;
const published: Array<{ topic: string; message: string }> = [];
let joinEnvelope: Buffer;

beforeAll(async () => {
  h = await startIssuer();
  responder = new MqttResponder({ ctx: h.ctx, url: 'mqtt://127.0.0.1:1' });
  const stub = {
    connected: true,
    publish(topic: string, message: string, _opts: unknown, cb: (err?: Error) => void) {
      published.push({ topic, message });
      cb();
    },
  };
  (responder as unknown as { client: unknown }).client = stub;
  // A real, well-formed join request to mutate (token method, a token that is never used).
  const agent = await import('../../src/join/token/agent.js');
  const { buildJoinRequest } = await import('../../src/agent/requests.js');
  const token = await h.token();
  const built = await buildJoinRequest({
    method: 'token',
    evidence: (c) => new agent.TokenJoinAgent(token).evidence(c),
    now: h.ctx.now(),
  });
  joinEnvelope = Buffer.from(JSON.stringify(built.envelope));
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const handle = (topic: string, payload: Buffer, packet: Partial<IPublishPacket>): Promise<void> =>
  (responder as unknown as { handle(t: string, p: Buffer, k: IPublishPacket): Promise<void> }).handle(
    topic,
    payload,
    packet as IPublishPacket,
  );

interface Delivery {
  topic: string;
  payload: Buffer;
  responseTopic: unknown;
  correlation: unknown;
}

const topicArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('sigil/v1/join', 'sigil/v1/join', 'sigil/v1/renew', 'sigil/v1/bundle') },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constantFrom('sigil/v1/', 'sigil/v1/joinx', 'other'),
      fc.string({ maxLength: 40 }).map((s) => `sigil/v1/${s}`),
    ),
  },
);
const BOOTSTRAP_TOPIC = 'sigil/v1/resp/bootstrap/abc123';
const responseTopicArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant(BOOTSTRAP_TOPIC) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'sigil/v1/resp/3f6c2a52-0d1e-4c11-9a57-2b7e1f0c9d10',
      'sigil/v1/resp/tpm-0123456789abcdef',
    ),
  },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constant(undefined),
      fc.string({ maxLength: 60 }),
      fc.constant('sigil/v1/resp/#'),
      fc.integer(),
    ),
  },
);
const correlationArb = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)) },
  { weight: 1, arbitrary: fc.oneof(fc.constant(undefined), fc.constant(Buffer.alloc(300)), fc.string()) },
);

describe('MQTT responder body handling', () => {
  it(
    'any topic, payload and properties end in a coded signed answer or a counted drop',
    async () => {
      const payloadArb = fc.oneof(
        fc.uint8Array({ maxLength: 256 }).map((u) => Buffer.from(u)),
        fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v))),
        fc.constant(Buffer.alloc(0)),
        fc.constant(undefined).chain(() => mutated([joinEnvelope], () => [])),
        fc.constant(undefined).chain(() => mutated([joinEnvelope], () => [])),
        fc
          .record({
            protected: fc.string(),
            payload: fc.oneof(
              fc.string(),
              fc.jsonValue().map((v) => b64u.encode(JSON.stringify(v))),
            ),
            signature: fc.string(),
          })
          .map((o) => Buffer.from(JSON.stringify(o))),
      );
      const arb = fc.record({
        topic: topicArb,
        payload: payloadArb,
        responseTopic: responseTopicArb,
        correlation: correlationArb,
      });
      await fc.assert(
        fc.asyncProperty(arb, async (d: Delivery) => {
          await mustBeCodedAsync('mqtt handle', d, async (x) => {
            published.length = 0;
            const properties: Record<string, unknown> = {};
            if (x.responseTopic !== undefined) properties.responseTopic = x.responseTopic;
            if (x.correlation !== undefined) properties.correlationData = x.correlation;
            await handle(x.topic, x.payload, { properties } as Partial<IPublishPacket>);
            // Which deliveries must be answered: the responder drops what has no usable response
            // topic, and answers a renewal only on its signer's own topic (transport/mqtt/answer-topic.ts).
            const bootstrap = x.responseTopic === BOOTSTRAP_TOPIC;
            const correlationOk =
              x.correlation === undefined || (Buffer.isBuffer(x.correlation) && x.correlation.length <= 256);
            const mustAnswer =
              bootstrap && correlationOk && (x.topic === 'sigil/v1/join' || x.topic === 'sigil/v1/bundle');
            if (published.length > 1) throw new FuzzFailure(`${published.length} answers to one request`);
            if (mustAnswer && published.length !== 1)
              throw new FuzzFailure('a join or bundle request on a bootstrap topic got no answer');
            if (published.length === 0) return;
            if (published[0]!.topic !== x.responseTopic)
              throw new FuzzFailure(
                `answered on ${published[0]!.topic}, not the response topic ${String(x.responseTopic)}`,
              );
            const answer = JSON.parse(published[0]!.message) as Jws;
            const body = JSON.parse(b64u.decode(answer.payload).toString('utf8')) as {
              error?: { code: string; message: string };
            };
            tally('mqtt answer', body.error?.code ?? 'ok');
            if (body.error?.code === 'internal')
              throw new FuzzFailure(`internal error answered: ${body.error.message}`);
          });
        }),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it('an oversized payload is answered body_too_large, not parsed', async () => {
    published.length = 0;
    await handle('sigil/v1/join', Buffer.alloc(64 * 1024 + 1, 0x7b), {
      properties: { responseTopic: 'sigil/v1/resp/bootstrap/x' },
    } as Partial<IPublishPacket> as IPublishPacket);
    const body = JSON.parse(b64u.decode((JSON.parse(published[0]!.message) as Jws).payload).toString('utf8'));
    expect(body.error.code).toBe('body_too_large');
  });
});
