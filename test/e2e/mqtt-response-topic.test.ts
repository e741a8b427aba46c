/**
 * Security review #11 item 3: the issuer publishes an answer only where the agent that made the
 * request listens (transport/mqtt/answer-topic.ts), never on whatever topic a request names.
 *
 * Through a plain, anonymous broker — anyone may subscribe anywhere, so it is the issuer's own
 * check that is tested, not a broker ACL. Instance A sends a genuine, signed renewal naming
 * instance B's response topic, a join names B's topic, and an unauthenticated renewal names B's
 * topic: each is dropped and counted (sigil_requests_total{outcome="dropped_*"}, a log line), and
 * a spy on B's topic receives none of them — while B's own renewal, sent afterwards as a control,
 * does arrive there, and A's renewal, resent on A's own topic, is answered.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJoinRequest, buildRenewRequest } from '../../src/agent/requests.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { SoftwareSigner } from '../../src/keystore/software.js';
import { requestHash, verifyResponseOrError } from '../../src/protocol/verify-response.js';
import { createToken, sigilJson } from '../helpers/cli.js';
import { issuerMetrics, waitFor, writeTransportAgent } from '../helpers/mosquitto.js';
import { useMqttIssuerRig } from '../helpers/mqtt-rig.js';

const metric = (m: string, op: string, outcome: string): number =>
  Number(
    new RegExp(`sigil_requests_total\\{transport="mqtt",op="${op}",outcome="${outcome}"\\} (\\d+)`).exec(m)?.[1] ?? 0,
  );
const certs = (pem: string): string[] =>
  pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/g)!.map((c) => c.trim() + '\n');

describe('the issuer answers only on the requester’s own response topic', () => {
  const rig = useMqttIssuerRig('sigil-mqtt-resp-topic-');
  const { tmp, admin } = rig;
  let spy: MqttClient;
  let asker: MqttClient;
  /** Everything published on B's topic: correlation data of each message. */
  const onB: string[] = [];
  const onA = new Map<string, unknown>();

  beforeAll(async () => {
    spy = await connectAsync(rig.broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
    asker = await connectAsync(rig.broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
  });
  afterAll(async () => {
    await spy?.endAsync(true);
    await asker?.endAsync(true);
  });

  const agent = async (name: string): Promise<{ config: string; outDir: string; id: string }> => {
    const a = writeTransportAgent(tmp.path, name, {
      pin: rig.pin,
      token: await createToken(admin),
      transports: [`{ type: mqtt, url: "${rig.broker.url}", timeout: 5s }`],
    });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(joined).toMatchObject({ result: 'joined' });
    return { ...a, id: joined.spiffe_id.split('/').pop() };
  };

  it('A’s renewal, a join and an unauthenticated renewal naming B’s topic: dropped and counted; B’s own answer arrives', async () => {
    const a = await agent('a');
    const b = await agent('b');
    const root = readFileSync(join(rig.dataDir, 'ca', 'root.pem'), 'utf8');
    spy.on('message', (t, _p, packet) => {
      const corr = packet.properties?.correlationData?.toString() ?? '?';
      if (t === `sigil/v1/resp/${b.id}`) onB.push(corr);
      if (t === `sigil/v1/resp/${a.id}`) onA.set(corr, JSON.parse(_p.toString()));
    });
    await spy.subscribeAsync([`sigil/v1/resp/${b.id}`, `sigil/v1/resp/${a.id}`], { qos: 1 });
    const before = await issuerMetrics(rig.issuer!.url);

    // 1. A's genuine renewal (A's chain, signed by A's key), answer asked on B's topic.
    const renewA = await buildRenewRequest({
      current: SoftwareSigner.fromPkcs8Pem(readFileSync(join(a.outDir, 'svid.key'), 'utf8')),
      chainPem: certs(readFileSync(join(a.outDir, 'svid.pem'), 'utf8')),
      now: Date.now(),
    });
    const send = (op: string, body: string, responseTopic: string, corr: string): Promise<unknown> =>
      asker.publishAsync(`sigil/v1/${op}`, body, {
        qos: 1,
        properties: { responseTopic, correlationData: Buffer.from(corr) },
      });
    await send('renew', JSON.stringify(renewA.envelope), `sigil/v1/resp/${b.id}`, renewA.entry.requestId);
    // 2. A join (fresh token) answered on an instance topic.
    const m = new TokenJoinAgent(await createToken(admin));
    const joinReq = await buildJoinRequest({ method: 'token', evidence: (c) => m.evidence(c), now: Date.now() });
    await send('join', JSON.stringify(joinReq.envelope), `sigil/v1/resp/${b.id}`, joinReq.entry.requestId);
    // 3. A renewal that does not authenticate (garbage), on B's topic.
    await send(
      'renew',
      JSON.stringify({ protected: 'x', payload: 'y', signature: 'z' }),
      `sigil/v1/resp/${b.id}`,
      'garbage-1',
    );

    // Positive evidence that the issuer saw each one and dropped it.
    const after = await waitFor(
      'three drops',
      async () => {
        const now = await issuerMetrics(rig.issuer!.url);
        const d = (op: string, o: string): number => metric(now, op, o) - metric(before, op, o);
        return d('renew', 'dropped_bad_response_topic') === 1 &&
          d('join', 'dropped_bad_response_topic') === 1 &&
          d('renew', 'dropped_unauthenticated') === 1
          ? now
          : undefined;
      },
      10_000,
      100,
    );
    expect(metric(after, 'renew', 'ok') - metric(before, 'renew', 'ok')).toBe(0);
    const drops = rig
      .issuer!.log()
      .split('\n')
      .filter((l) => l.includes('mqtt request dropped without an answer'));
    expect(
      drops.some((l) => l.includes(`"signer":"${a.id}"`) && l.includes(`"response_topic":"sigil/v1/resp/${b.id}"`)),
    ).toBe(true);
    // The join was refused before it ran: its token is still good for a join on a bootstrap topic.
    const joinAnswer = new Promise<unknown>((resolve) =>
      asker.on(
        'message',
        (_t, p, packet) =>
          packet.properties?.correlationData?.toString() === joinReq.entry.requestId &&
          resolve(JSON.parse(p.toString())),
      ),
    );
    await asker.subscribeAsync('sigil/v1/resp/bootstrap/resp-topic-test', { qos: 1 });
    await send(
      'join',
      JSON.stringify(joinReq.envelope),
      'sigil/v1/resp/bootstrap/resp-topic-test',
      joinReq.entry.requestId,
    );
    expect(
      verifyResponseOrError(await joinAnswer, 'join', joinReq.entry.requestId, requestHash(joinReq.envelope), root)
        .result.generation,
    ).toBe(1);

    // Control: B renews itself; its answer is published on B's topic and the spy sees it.
    expect(await sigilJson(['agent', 'renew', '--config', b.config])).toMatchObject({
      result: 'renewed',
      generation: 2,
    });
    await waitFor('B’s own answer on B’s topic', () => onB.length >= 1 || undefined, 10_000);
    // Nothing else ever reached B's topic: only B's request ids, none of the three above.
    expect(onB.filter((c) => [renewA.entry.requestId, joinReq.entry.requestId, 'garbage-1'].includes(c))).toEqual([]);
    expect(onB).toHaveLength(1);

    // A's renewal resent on A's own topic is answered there (the issuer replays what it recorded).
    await send('renew', JSON.stringify(renewA.envelope), `sigil/v1/resp/${a.id}`, renewA.entry.requestId);
    const answerA = await waitFor('A’s answer on A’s topic', () => onA.get(renewA.entry.requestId), 10_000);
    expect(
      verifyResponseOrError(answerA, 'renew', renewA.entry.requestId, requestHash(renewA.envelope), root).result
        .generation,
    ).toBe(2);
  }, 60_000);
});
