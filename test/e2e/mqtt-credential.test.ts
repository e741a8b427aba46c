/**
 * `credential` over MQTT (issue #13: every operation over every transport), through mosquitto
 * configured from scripts/mosquitto/ (TLS, client certificates, the dynamic-security ACL), with
 * the broker — and every other agent on it — treated as an attacker:
 *
 *   (a) an agent with ONLY an MQTT transport joins and gets an SSH user certificate (checked
 *       with OpenSSH's own ssh-keygen -L);
 *   (b) a JWT-SVID crosses the broker only sealed to the requester's answer key: a peer agent
 *       subscribed to sigil/v1/resp/+ (which the example ACL allows) captures a JWE, not the JWT,
 *       and cannot open it with a key of its own;
 *   (c) a credential request naming another instance's response topic is not answered there;
 *       its signer gets the stored (sealed) answer on its own topic and opens it;
 *   (d) a JWT request without answer_key over MQTT is refused, answer_key_required, signed.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCredentialResult } from '../../src/agent/credential-client.js';
import { buildCredentialRequest } from '../../src/agent/credential-request.js';
import { namedSigner } from '../../src/agent/named-signer.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import { newAnswerKey, openWithAnswerKey } from '../../src/protocol/answer-key.js';
import type { CredentialResult } from '../../src/protocol/credential-messages.js';
import { b64u, signJws, type Jws } from '../../src/protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../../src/protocol/messages.js';
import { requestHash, verifyResponseOrError } from '../../src/protocol/verify-response.js';
import { newRequestId } from '../../src/util/secret.js';
import { applyResources, createToken, sigilJson, tempDir, type RunningIssuer } from '../helpers/cli.js';
import {
  type Broker,
  issuerMetrics,
  type IssuerProcess,
  startExampleBroker,
  waitFor,
  writeTransportAgent,
} from '../helpers/mosquitto.js';

const POLICY = `kind: role
name: edge
spec: { max_ttl: 2h, allowed_outputs: [identity, jwt, ssh_user], jwt_audiences: [vault], ssh_logins: ["{{internal.logins}}"] }
---
kind: bot
name: gw
spec: { roles: [edge], traits: { logins: [ops] } }
`;

const pemBlocks = (pem: string): string[] =>
  pem
    .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)!
    .map((b) => (b.endsWith('\n') ? b : `${b}\n`));

interface Joined {
  config: string;
  outDir: string;
  instanceId: string;
  spiffeId: string;
  credentialOutputs: unknown[] | undefined;
}

describe('credential over MQTT, the broker as an attacker (example broker config)', () => {
  const tmp = tempDir('sigil-mqtt-cred-');
  const dataDir = join(tmp.path, 'issuer');
  const admin = { dataDir } as RunningIssuer;
  const pwFile = join(tmp.path, 'bootstrap.pw');
  let broker: Broker;
  let issuer: IssuerProcess;
  let pin: string;
  let rootPem: string;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    pin = (
      await sigilJson<{ ca_pin: string }>(['server', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org'])
    ).ca_pin;
    await applyResources(admin, tmp.path, POLICY);
    ({ broker, issuer, rootPem } = await startExampleBroker(tmp.path, dataDir, pwFile));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await issuer?.stop();
    await broker?.stop();
    tmp.cleanup();
  });

  /** An agent whose only transport is MQTT (bootstrap login for the join, its SVID afterwards). */
  async function mqttOnlyAgent(name: string, outputs = ''): Promise<Joined> {
    const a = writeTransportAgent(tmp.path, name, {
      pin,
      token: await createToken(admin),
      transports: [
        `{ type: mqtt, url: "${broker.url}", timeout: 10s, bootstrap: { url: "${broker.bootstrapUrl}", username: bootstrap, password_file: ${pwFile} } }`,
      ],
      extra: outputs,
    });
    const joined = await sigilJson<{ result: string; spiffe_id: string; credential_outputs?: unknown[] }>([
      'agent',
      'run',
      '--config',
      a.config,
      '--once',
    ]);
    expect(joined.result).toBe('joined');
    return {
      config: a.config,
      outDir: a.outDir,
      spiffeId: joined.spiffe_id,
      instanceId: joined.spiffe_id.split('/').pop()!,
      credentialOutputs: joined.credential_outputs,
    };
  }

  /** A client on the certificate listener presenting an agent's SVID (what any joined agent can do). */
  async function asInstance(a: Joined): Promise<MqttClient> {
    const c = await connectAsync(broker.url, {
      protocolVersion: 5,
      ca: rootPem,
      cert: readFileSync(join(a.outDir, 'svid.pem'), 'utf8'),
      key: readFileSync(join(a.outDir, 'svid.key'), 'utf8'),
      clientId: `test-${randomBytes(6).toString('hex')}`,
      reconnectPeriod: 0,
    });
    clients.push(c);
    return c;
  }

  /** Every message on `filter`, as topic and raw payload, as the client receives it. */
  async function capture(
    c: MqttClient,
    filter: string,
  ): Promise<Array<{ topic: string; payload: string; correlation: string | undefined }>> {
    const seen: Array<{ topic: string; payload: string; correlation: string | undefined }> = [];
    c.on('message', (topic, payload, packet) =>
      seen.push({
        topic,
        payload: payload.toString('utf8'),
        correlation: packet.properties?.correlationData?.toString(),
      }),
    );
    const granted = await c.subscribeAsync(filter, { qos: 1 });
    expect(granted[0]?.qos).toBeLessThan(0x80);
    return seen;
  }

  const signerOf = (a: Joined): { signer: SoftwareSigner; chainPem: string[] } => ({
    signer: SoftwareSigner.fromPkcs8Pem(readFileSync(join(a.outDir, 'svid.key'), 'utf8')),
    chainPem: pemBlocks(readFileSync(join(a.outDir, 'svid.pem'), 'utf8')),
  });

  const publish = (c: MqttClient, envelope: Jws, responseTopic: string, requestId: string) =>
    c.publishAsync('sigil/v1/credential', JSON.stringify(envelope), {
      qos: 1,
      properties: { responseTopic, correlationData: Buffer.from(requestId) },
    });

  it('(a) an agent with only an MQTT transport gets an SSH user certificate through the broker', async () => {
    const dir = join(tmp.path, 'ssh-a');
    const a = await mqttOnlyAgent('ssh-a', `  - { type: ssh_user, path: ${dir} }\n`);
    const certFile = join(dir, 'id-cert.pub');
    // `run --once` says what it did with the output, not only with the identity.
    expect(a.credentialOutputs).toEqual([
      { type: 'ssh_user', path: dir, action: 'issued', not_after: expect.stringMatching(/^\d{4}-/) },
    ]);
    const listing = execFileSync('ssh-keygen', ['-L', '-f', certFile], { encoding: 'utf8' });
    expect(listing).toMatch(/Type: ssh-\S+-cert-v01@openssh.com user certificate/);
    expect(listing).toContain(`Key ID: "${a.spiffeId}"`);
    expect(listing).toMatch(/Principals: \n\s+ops\n/);
    // The certificate is for the key the agent made and kept next to it.
    const keyFp = execFileSync('ssh-keygen', ['-l', '-f', join(dir, 'id')], { encoding: 'utf8' }).split(' ')[1]!;
    expect(listing).toContain(keyFp);
    // It came over MQTT (the agent has no other transport), answered ok.
    expect(await issuerMetrics(issuer.url)).toMatch(
      /sigil_requests_total\{transport="mqtt",op="credential",outcome="ok"\} [1-9]/,
    );
  }, 60_000);

  it('(b) a JWT crosses the broker sealed: a peer reading sigil/v1/resp/+ captures a JWE it cannot open', async () => {
    const peer = await mqttOnlyAgent('peer-b');
    const seen = await capture(await asInstance(peer), 'sigil/v1/resp/+');
    const dir = join(tmp.path, 'jwt-b');
    const b = await mqttOnlyAgent('jwt-b', `  - { type: jwt, path: ${dir}, audiences: [vault] }\n`);
    const jwt = readFileSync(join(dir, 'token'), 'utf8').trim();
    expect(jwt.split('.')).toHaveLength(3);
    expect(JSON.parse(b64u.decode(jwt.split('.')[1]!).toString('utf8'))).toMatchObject({ sub: b.spiffeId });

    const captured = await waitFor(
      'the credential answer on the peer',
      () => seen.find((m) => m.topic === `sigil/v1/resp/${b.instanceId}`),
      10_000,
    );
    const sigPart = jwt.split('.')[2]!;
    expect(captured.payload).not.toContain(sigPart);
    const answer = JSON.parse(captured.payload) as Jws;
    const payload = JSON.parse(b64u.decode(answer.payload).toString('utf8')) as {
      op: string;
      result: CredentialResult;
    };
    expect(payload.op).toBe('credential');
    expect(payload.result.token).toBeUndefined();
    expect(JSON.stringify(payload)).not.toContain(sigPart);
    const jwe = payload.result.token_jwe!;
    expect(jwe.split('.')).toHaveLength(5);
    expect(JSON.parse(b64u.decode(jwe.split('.')[0]!).toString('utf8'))).toMatchObject({
      alg: 'ECDH-ES',
      enc: 'A256GCM',
    });
    await expect(openWithAnswerKey(jwe, newAnswerKey().privateKey)).rejects.toMatchObject({ code: 'response_invalid' });
  }, 60_000);

  it('(c) a credential request naming another instance’s response topic is answered only to its signer', async () => {
    const victim = await mqttOnlyAgent('victim-c');
    const asker = await mqttOnlyAgent('asker-c');
    const onVictim = await capture(await asInstance(victim), `sigil/v1/resp/${victim.instanceId}`);
    const askerClient = await asInstance(asker);
    const onAsker = await capture(askerClient, `sigil/v1/resp/${asker.instanceId}`);
    const { signer, chainPem } = signerOf(asker);
    const built = await buildCredentialRequest({
      current: signer,
      chainPem,
      now: Date.now(),
      fields: { kind: 'jwt', audiences: ['vault'] },
    });
    const before = await issuerMetrics(issuer.url);
    const drops = (m: string): number =>
      Number(
        /sigil_requests_total\{transport="mqtt",op="credential",outcome="dropped_bad_response_topic"\} (\d+)/.exec(
          m,
        )?.[1] ?? 0,
      );

    await publish(askerClient, built.envelope, `sigil/v1/resp/${victim.instanceId}`, built.requestId);
    await waitFor('the dropped answer', async () => drops(await issuerMetrics(issuer.url)) > drops(before), 10_000);
    // The same request from its own topic: the stored answer, to its signer only.
    await publish(askerClient, built.envelope, `sigil/v1/resp/${asker.instanceId}`, built.requestId);
    const mine = await waitFor(
      'the answer on the asker’s topic',
      () => onAsker.find((m) => m.correlation === built.requestId),
      10_000,
    );
    const result = verifyResponseOrError(
      JSON.parse(mine.payload),
      'credential',
      built.requestId,
      requestHash(built.envelope),
      rootPem,
    ).result;
    expect(result.spiffe_id).toBe(asker.spiffeId);
    // The stored answer is the sealed one, and it opens with the key the request still holds.
    expect(result.token).toBeUndefined();
    expect((await openCredentialResult(result, built)).token?.split('.')).toHaveLength(3);
    expect(onVictim).toEqual([]);
  }, 60_000);

  it('(d) a JWT request without answer_key over MQTT: a signed answer_key_required refusal', async () => {
    const a = await mqttOnlyAgent('nokey-d');
    const c = await asInstance(a);
    const seen = await capture(c, `sigil/v1/resp/${a.instanceId}`);
    const { signer, chainPem } = signerOf(a);
    const requestId = newRequestId();
    const payload = {
      v: PROTOCOL_VERSION,
      op: 'credential',
      request_id: requestId,
      timestamp: Date.now(),
      ...namedSigner(chainPem),
      kind: 'jwt',
      audiences: ['vault'],
    };
    const envelope = await signJws(
      signer,
      TYP_REQUEST,
      payload,
      chainPem.map((p) => Buffer.from(p.replace(/-----[^-]+-----|\s/g, ''), 'base64')),
    );
    await publish(c, envelope, `sigil/v1/resp/${a.instanceId}`, requestId);
    const answer = await waitFor('the refusal', () => seen.find((m) => m.correlation === requestId), 10_000);
    expect(() =>
      verifyResponseOrError(JSON.parse(answer.payload), 'credential', requestId, requestHash(envelope), rootPem),
    ).toThrow(expect.objectContaining({ code: 'answer_key_required' }));
    expect(answer.payload).not.toMatch(/"token"/);
  }, 60_000);
});
