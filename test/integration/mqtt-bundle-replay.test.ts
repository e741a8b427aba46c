/**
 * A bundle answer is the same for every requester and its MQTT correlation data is not signed:
 * whoever controls the broker could answer a bundle request with any bundle the issuer signed
 * while its serving certificate lasts — trust material replaced since (review of issue #16). The
 * issuer now echoes the request's nonce in the signed payload, and the agent's MQTT client refuses
 * an answer for another nonce, or one without a nonce (an older issuer) that is not fresh.
 * Real mosquitto; the "broker" is a second MQTT client answering the agent's request itself
 * while the issuer's responder is stopped.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { b64u, type Jws } from '../../src/protocol/jws.js';
import { PROTOCOL_VERSION } from '../../src/protocol/messages.js';
import { handleBundle } from '../../src/server/ops/bundle.js';
import { signResponse } from '../../src/server/ops/respond.js';
import { MqttIssuerClient, UNBOUND_BUNDLE_MAX_AGE_MS } from '../../src/transport/mqtt/client.js';
import { MqttResponder } from '../../src/transport/mqtt/responder.js';
import { requestTopic } from '../../src/transport/mqtt/topics.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { startIssuer, type Harness } from './harness.js';

let h: Harness;
let broker: Broker;
let responder: MqttResponder | undefined;
let forger: MqttClient | undefined;
const work = mkdtempSync(join(tmpdir(), 'sigil-bundle-replay-'));

beforeAll(async () => {
  h = await startIssuer();
  broker = await startMosquitto(join(work, 'broker'));
}, 60_000);
afterAll(async () => {
  for (const c of clients) await c.close();
  await forger?.endAsync();
  await responder?.stop();
  await broker?.stop();
  await h?.close();
  rmSync(work, { recursive: true, force: true });
});

let n = 0;
const clients: MqttIssuerClient[] = [];
function agentClient(): MqttIssuerClient {
  n++;
  const c = new MqttIssuerClient({
    url: broker.url,
    pin: h.ctx.ca.pin,
    rootPem: h.rootPem,
    timeoutMs: 5_000,
    session: () => ({ clientId: `sigil-bundle-replay-${n}`, responseId: `bootstrap/bundlereplay${n}00000000` }),
  });
  clients.push(c);
  return c;
}

const payloadOf = (body: unknown): Record<string, unknown> =>
  JSON.parse(b64u.decode((body as Jws).payload).toString('utf8')) as Record<string, unknown>;

/** With the responder stopped, answer the next bundle request with `answer` (what a broker can do). */
async function answerNextBundleWith(answer: () => unknown): Promise<void> {
  forger ??= await mqtt.connectAsync(broker.issuerUrl, { protocolVersion: 5, clientId: 'sigil-bundle-forger' });
  forger.removeAllListeners('message');
  forger.on('message', (_topic, _payload, packet) => {
    const responseTopic = packet.properties?.responseTopic;
    if (!responseTopic) return;
    forger!.publish(responseTopic, JSON.stringify(answer()), {
      qos: 1,
      properties: { correlationData: packet.properties?.correlationData },
    });
  });
  await forger.subscribeAsync(requestTopic('bundle'), { qos: 1 });
}

describe('bundle answers over MQTT are bound to their request', () => {
  it('the issuer echoes the nonce; an old answer replayed to a new request is refused; a fresh unbound one (an older issuer) is accepted', async () => {
    responder = new MqttResponder({ ctx: h.ctx, url: broker.issuerUrl, clientId: 'sigil-issuer-bundle-replay' });
    await responder.start();
    const first = await agentClient().bundle();
    const p = payloadOf(first);
    expect(typeof p.nonce).toBe('string');
    expect(p.request_id).toBeNull();
    await responder.stop();
    responder = undefined;

    // The recorded answer, replayed to another agent's request: refused before any use.
    await answerNextBundleWith(() => first);
    const replayed = await agentClient()
      .bundle()
      .then(
        () => new Error('the replayed bundle was accepted'),
        (e: unknown) => e,
      );
    expect(replayed).toBeInstanceOf(SigilError);
    expect((replayed as SigilError).code).toBe('response_invalid');
    expect((replayed as SigilError).message).toMatch(/echoes another request's nonce/);

    // An issuer from before the nonce echo: its answers carry none. A stale one is refused…
    const unbound = (issuedAt: number): unknown =>
      signResponse(
        h.ctx,
        JSON.stringify({ ...payloadOf(handleBundle(h.ctx)), v: PROTOCOL_VERSION, issued_at: issuedAt }),
      );
    const staleAt = Date.now() - UNBOUND_BUNDLE_MAX_AGE_MS - 60_000;
    await answerNextBundleWith(() => unbound(staleAt));
    const stale = await agentClient()
      .bundle()
      .then(
        () => new Error('the stale unbound bundle was accepted'),
        (e: unknown) => e,
      );
    expect((stale as SigilError).code).toBe('response_invalid');
    expect((stale as SigilError).message).toMatch(/carries no nonce and was issued \d+ s ago/);
    // …a fresh one, as such an issuer sends it, is accepted.
    await answerNextBundleWith(() => unbound(Date.now()));
    expect(payloadOf(await agentClient().bundle()).issued_at).toBeTypeOf('number');
  });
});
