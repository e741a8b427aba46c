/**
 * Joins over MQTT are rate-limited before the join method runs (issue #11 item 4): per Response
 * Topic (the bootstrap id an agent keeps) and overall. Over either, the requester gets a signed
 * rate_limited refusal with retry_after_ms, bound to its request; other topics are not affected
 * by one topic's flood. The responder runs in-process against a real issuer; only the broker
 * round trip is replaced by capturing what it would publish.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { IPublishPacket } from 'mqtt';
import { b64u, type Jws } from '../../src/protocol/jws.js';
import { requestHash } from '../../src/protocol/request-hash.js';
import { verifyResponseOrError } from '../../src/protocol/verify-response.js';
import { MqttResponder } from '../../src/transport/mqtt/responder.js';
import { SigilError } from '../../src/errors.js';
import { joinPayload, sign, startIssuer, type Harness } from './harness.js';

let h: Harness;
beforeEach(async () => {
  h = await startIssuer();
});
afterEach(() => h.close());

function responderWith(limits: ConstructorParameters<typeof MqttResponder>[0]['joinLimits']) {
  const published: Array<{ topic: string; answer: Jws }> = [];
  const r = new MqttResponder({ url: 'mqtt://127.0.0.1:1', ctx: h.ctx, joinLimits: limits });
  const internals = r as unknown as {
    publish(op: string, topic: string, answer: Jws): Promise<void>;
    handle(topic: string, payload: Buffer, packet: IPublishPacket): Promise<void>;
  };
  internals.publish = async (_op, topic, answer) => {
    published.push({ topic, answer });
  };
  const join = async (responseTopic: string, envelope: Jws): Promise<void> =>
    internals.handle('sigil/v1/join', Buffer.from(JSON.stringify(envelope)), {
      properties: { responseTopic, correlationData: Buffer.from('c') },
    } as unknown as IPublishPacket);
  return { published, join };
}

/** A join the issuer refuses on its merits (an unknown token): what a flood would send. */
async function badJoin(): Promise<Jws> {
  const { payload, signer } = await joinPayload({}, { token: 'A'.repeat(43) });
  return sign(signer, payload);
}

const codeOf = (answer: Jws): { code: string; retry_after_ms?: number } =>
  (JSON.parse(b64u.decode(answer.payload).toString('utf8')) as { error: { code: string; retry_after_ms?: number } })
    .error;

describe('MQTT join rate limits', () => {
  it('per topic: past the burst, a signed rate_limited refusal with retry_after_ms; another topic is unaffected', async () => {
    const { published, join } = responderWith({
      perTopic: { ratePerS: 0.1, burst: 3 },
      overall: { ratePerS: 1000, burst: 1000 },
    });
    const envs = await Promise.all(Array.from({ length: 5 }, badJoin));
    for (const e of envs) await join('sigil/v1/resp/bootstrap/flooder', e);
    await join('sigil/v1/resp/bootstrap/quiet', await badJoin());
    expect(published.map((p) => [p.topic.split('/').at(-1), codeOf(p.answer).code])).toEqual([
      ['flooder', 'token_invalid'],
      ['flooder', 'token_invalid'],
      ['flooder', 'token_invalid'],
      ['flooder', 'rate_limited'],
      ['flooder', 'rate_limited'],
      ['quiet', 'token_invalid'],
    ]);
    expect(codeOf(published[3]!.answer).retry_after_ms).toBeGreaterThan(0);
    // Signed and bound to the request it refuses: the agent believes it and waits.
    const id = JSON.parse(b64u.decode(envs[3]!.payload).toString('utf8')).request_id as string;
    let e: SigilError | undefined;
    try {
      verifyResponseOrError(published[3]!.answer, 'join', id, requestHash(envs[3]!), h.rootPem);
    } catch (err) {
      e = err as SigilError;
    }
    expect(e?.code).toBe('rate_limited');
    expect(e?.retryAfterMs).toBeGreaterThan(0);
  });

  it('overall: a flood rotating through topics is capped too', async () => {
    const { published, join } = responderWith({
      perTopic: { ratePerS: 1000, burst: 1000 },
      overall: { ratePerS: 0.1, burst: 4 },
    });
    for (let i = 0; i < 6; i++) await join(`sigil/v1/resp/bootstrap/t${i}`, await badJoin());
    expect(published.map((p) => codeOf(p.answer).code)).toEqual([
      'token_invalid',
      'token_invalid',
      'token_invalid',
      'token_invalid',
      'rate_limited',
      'rate_limited',
    ]);
    // Refused joins are not audited one by one here (the limiter runs before the join method).
    expect((await h.ctx.stores.audit.list()).filter((r) => r.code === 'rate_limited')).toEqual([]);
  });
});
