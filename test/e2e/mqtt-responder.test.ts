/**
 * The issuer's MQTT responder against hostile and broken input, through a real mosquitto:
 * every refusal is signed and coded, unanswerable requests are dropped and counted, nothing
 * crashes it, and a refusal is bound to the exact request bytes (a different request carrying a
 * victim's request id cannot produce a refusal the victim would accept).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJoinRequest } from '../../src/agent/requests.js';
import { SigilError } from '../../src/errors.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { b64u, type Jws } from '../../src/protocol/jws.js';
import { pinnedRootFromBundle, requestHash, verifyResponseOrError } from '../../src/protocol/verify-response.js';
import { createToken, tempDir, type RunningIssuer } from '../helpers/cli.js';
import { issuerMetrics, type Broker, type IssuerProcess, startMqttIssuerRig } from '../helpers/mosquitto.js';

describe('MQTT responder: coded, signed refusals; drops; never a crash', () => {
  const tmp = tempDir('sigil-mqtt-resp-');
  const dataDir = join(tmp.path, 'issuer');
  const admin = { dataDir } as RunningIssuer;
  let broker: Broker;
  let issuer: IssuerProcess;
  let pin: string;
  let root: string;
  let client: MqttClient;
  const answers = new Map<string, unknown>();
  const topic = 'sigil/v1/resp/bootstrap/hostile';

  beforeAll(async () => {
    ({ broker, pin, issuer } = await startMqttIssuerRig(tmp.path, dataDir));
    root = readFileSync(join(dataDir, 'ca', 'root.pem'), 'utf8');
    client = await connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
    await client.subscribeAsync([topic, 'elsewhere/#'], { qos: 1 });
    client.on('message', (_t, payload, packet) =>
      answers.set(packet.properties?.correlationData?.toString() ?? '?', JSON.parse(payload.toString())),
    );
  });
  afterAll(async () => {
    await client?.endAsync();
    await issuer?.stop();
    await broker?.stop();
    tmp.cleanup();
  });

  async function ask(
    op: string,
    payload: string | Buffer,
    props: { responseTopic?: string; corr?: string; waitMs?: number } = {},
  ): Promise<unknown> {
    const corr = props.corr ?? randomBytes(8).toString('hex');
    await client.publishAsync(`sigil/v1/${op}`, payload, {
      qos: 1,
      properties: { responseTopic: props.responseTopic ?? topic, correlationData: Buffer.from(corr) },
    });
    const end = Date.now() + (props.waitMs ?? 5_000);
    while (!answers.has(corr)) {
      if (Date.now() > end) return undefined;
      await new Promise((r) => setTimeout(r, 20));
    }
    return answers.get(corr);
  }

  /** Verify a refusal as an agent would, and return its code. */
  function refusalCode(
    body: unknown,
    op: 'join' | 'renew' | 'bundle',
    requestId: string | null = null,
    hash: string | null = null,
  ): string {
    try {
      verifyResponseOrError(body, op, requestId, hash, root);
    } catch (e) {
      return (e as SigilError).code;
    }
    return 'accepted';
  }

  it('non-JSON → malformed_json; > 64 KiB → body_too_large; unknown op → not_found; junk envelope → bad_request (all signed)', async () => {
    // (On join: a renewal is answered only on its authenticated signer's topic, so junk renewals
    // are dropped, not refused — mqtt-response-topic.test.ts.)
    expect(refusalCode(await ask('join', 'not json {'), 'join')).toBe('malformed_json');
    expect(refusalCode(await ask('join', Buffer.alloc(70 * 1024, 0x20)), 'join')).toBe('body_too_large');
    const nf = (await ask('frobnicate', '{}')) as Jws;
    expect(JSON.parse(b64u.decode(nf.payload).toString())).toMatchObject({
      op: 'unknown',
      error: { code: 'not_found', retryable: false },
    });
    expect(
      refusalCode(await ask('join', JSON.stringify({ protected: 'x', payload: 'y', signature: 'z' })), 'join'),
    ).toBe('bad_request');
    expect(refusalCode(await ask('join', '[]'), 'join')).toBe('bad_request');
  });

  it('requests without a valid response topic are dropped unanswered and counted', async () => {
    const dropped = await Promise.all(
      ['elsewhere/steal', 'sigil/v1/resp/+', 'sigil/v1/resp/a/b/c/d'].map((responseTopic) =>
        ask('join', '{}', { responseTopic, waitMs: 1_500 }),
      ),
    );
    expect(dropped).toEqual([undefined, undefined, undefined]);
    const m = await issuerMetrics(issuer.url);
    expect(m).toMatch(/sigil_requests_total\{transport="mqtt",op="join",outcome="dropped_bad_response_topic"\} 3/);
  });

  it('a refusal is bound to the exact request: another payload with the same request id cannot be replayed to its owner', async () => {
    const method = new TokenJoinAgent(await createToken(admin));
    const victim = await buildJoinRequest({ method: 'token', evidence: (c) => method.evidence(c), now: Date.now() });
    // The attacker builds a different join with the victim's request id (its own key and junk evidence).
    const forged = await buildJoinRequest({
      method: 'token',
      evidence: async () => ({ token_key: 'A'.repeat(43), proof: 'B'.repeat(86) }),
      now: Date.now(),
    });
    const p = JSON.parse(b64u.decode(forged.envelope.payload).toString());
    p.request_id = victim.entry.requestId;
    const { signJws } = await import('../../src/protocol/jws.js');
    const { loadSigner, parseKeyRef } = await import('../../src/keystore/index.js');
    const forgedEnv = await signJws(loadSigner(parseKeyRef(forged.entry.pendingKeyRef!)), 'sigil-request+jws', p);
    const refusal = await ask('join', JSON.stringify(forgedEnv));
    // The attacker's own view: a genuine signed token_invalid for that request id …
    expect(refusalCode(refusal, 'join', victim.entry.requestId, requestHash(forgedEnv))).toBe('token_invalid');
    // … which the victim, checking the hash of what *it* sent, does not accept.
    expect(refusalCode(refusal, 'join', victim.entry.requestId, requestHash(victim.envelope))).toBe('response_invalid');
    // The victim's own request still goes through.
    const ok = await ask('join', JSON.stringify(victim.envelope));
    expect(
      verifyResponseOrError(ok, 'join', victim.entry.requestId, requestHash(victim.envelope), root).result.generation,
    ).toBe(1);
  });

  it('bundle over MQTT: the root is taken only by its pin and the response verifies under it', async () => {
    const body = await ask('bundle', JSON.stringify({ v: 1, op: 'bundle', nonce: 'n' }));
    expect(pinnedRootFromBundle(body, pin).trim()).toBe(root.trim());
    expect(() => pinnedRootFromBundle(body, `sha256:${'00'.repeat(32)}`)).toThrow(/ca_pin/);
  });

  it('after all that the responder is alive and still serves a normal join', async () => {
    expect(issuer.proc.exitCode).toBeNull();
    const method = new TokenJoinAgent(await createToken(admin));
    const req = await buildJoinRequest({ method: 'token', evidence: (c) => method.evidence(c), now: Date.now() });
    const body = await ask('join', JSON.stringify(req.envelope));
    expect(
      verifyResponseOrError(body, 'join', req.entry.requestId, requestHash(req.envelope), root).result.instance_id,
    ).toBeTruthy();
    expect(issuer.log()).not.toMatch(/"level":50/);
  });
});
