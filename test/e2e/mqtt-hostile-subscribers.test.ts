/**
 * Security review #11 item 2: nobody but an issuer may join the issuers' shared subscription.
 *
 * Mosquitto 2.0 with an acl_file grants every SUBSCRIBE and checks the ACL only when it delivers.
 * A client that subscribed to $share/sigil/sigil/v1/+ was thus a member of the issuers' share
 * group: the broker handed it its turn of the requests and then dropped them (it may not read
 * them), so those requests were never answered — 12 sent, 4 answered, with a joined instance
 * and a bootstrap login in the group. The example config (scripts/mosquitto/) uses the
 * dynamic-security plugin, which refuses such a SUBSCRIBE outright (reason 0x87).
 *
 * Here both kinds of hostile client try, on the real broker from the example config: the
 * instance with its SVID on the certificate listener and the shared bootstrap login, each
 * subscribing to the share group and to the plain request filter. Every one of N requests is
 * still answered (by the one issuer), and every hostile subscription was refused at SUBSCRIBE.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJoinRequest } from '../../src/agent/requests.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { requestHash, verifyResponseOrError } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { openIssuerStores } from '../../src/server/data-dir.js';
import { applyResources, createToken, SIGIL, sigilJson, tempDir, type RunningIssuer } from '../helpers/cli.js';
import {
  BOOTSTRAP_PASSWORD,
  type Broker,
  type IssuerProcess,
  startExampleBroker,
  waitFor,
  writeTransportAgent,
} from '../helpers/mosquitto.js';

const N = 12;
const HOSTILE_FILTERS = ['$share/sigil/sigil/v1/+', 'sigil/v1/+'];

async function createTokens(dataDir: string, n: number): Promise<string[]> {
  const stores = openIssuerStores(dataDir);
  try {
    const tokens: string[] = [];
    for (let i = 0; i < n; i++)
      tokens.push(((await runAdminOp(stores, 'token.create', { bot: 'gw', ttl: '15m' })) as { token: string }).token);
    return tokens;
  } finally {
    await stores.close();
  }
}

/** Try a subscription; 'granted' or the broker's refusal, never a throw. */
async function trySubscribe(c: MqttClient, filter: string): Promise<string> {
  try {
    const granted = await c.subscribeAsync(filter, { qos: 1 });
    return (granted[0]?.qos ?? 0x80) < 0x80 ? 'granted' : 'refused';
  } catch (e) {
    return /Not authorized/i.test((e as Error).message) ? 'refused' : `error: ${(e as Error).message}`;
  }
}

describe('hostile subscribers cannot black-hole requests (example broker config)', () => {
  const tmp = tempDir('sigil-mqtt-hostile-');
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
    await applyResources(admin, tmp.path);
    ({ broker, issuer, rootPem } = await startExampleBroker(tmp.path, dataDir, pwFile));
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await issuer?.stop();
    await broker?.stop();
    tmp.cleanup();
  });

  it(`a joined instance and the bootstrap login subscribe to the requests: refused, and all ${N} requests are answered`, async () => {
    // A real agent joins (bootstrap listener); its SVID is the hostile instance's credential.
    const a = writeTransportAgent(tmp.path, 'mallory', {
      pin,
      token: await createToken(admin),
      transports: [
        `{ type: mqtt, url: "${broker.url}", timeout: 10s, bootstrap: { url: "${broker.bootstrapUrl}", username: bootstrap, password_file: ${pwFile} } }`,
      ],
    });
    expect(await sigilJson(['agent', 'run', '--config', a.config, '--once'])).toMatchObject({ result: 'joined' });
    const instance = await connectAsync(broker.url, {
      protocolVersion: 5,
      ca: rootPem,
      cert: readFileSync(join(a.outDir, 'svid.pem'), 'utf8'),
      key: readFileSync(join(a.outDir, 'svid.key'), 'utf8'),
      reconnectPeriod: 0,
    });
    clients.push(instance);
    const boot = await connectAsync(broker.bootstrapUrl!, {
      protocolVersion: 5,
      ca: rootPem,
      username: 'bootstrap',
      password: BOOTSTRAP_PASSWORD,
      reconnectPeriod: 0,
    });
    clients.push(boot);
    const outcomes: Record<string, string> = {};
    for (const [who, c] of [
      ['instance', instance],
      ['bootstrap', boot],
    ] as const) {
      for (const f of HOSTILE_FILTERS) outcomes[`${who} ${f}`] = await trySubscribe(c, f);
    }

    // N agents' joins (signed, each with its own token), from a second bootstrap login.
    const asker = await connectAsync(broker.bootstrapUrl!, {
      protocolVersion: 5,
      ca: rootPem,
      username: 'bootstrap',
      password: BOOTSTRAP_PASSWORD,
      reconnectPeriod: 0,
    });
    clients.push(asker);
    const topic = 'sigil/v1/resp/bootstrap/hostile-subscribers';
    const answers = new Map<string, unknown>();
    asker.on('message', (_t, payload, packet) =>
      answers.set(packet.properties?.correlationData?.toString() ?? '?', JSON.parse(payload.toString())),
    );
    await asker.subscribeAsync(topic, { qos: 1 });
    const reqs = await Promise.all(
      (await createTokens(dataDir, N)).map((token) => {
        const m = new TokenJoinAgent(token);
        return buildJoinRequest({ method: 'token', evidence: (c) => m.evidence(c), now: Date.now() });
      }),
    );
    for (const r of reqs) {
      await asker.publishAsync('sigil/v1/join', JSON.stringify(r.envelope), {
        qos: 1,
        properties: { responseTopic: topic, correlationData: Buffer.from(r.entry.requestId) },
      });
    }
    // Generous: the issuer answers 12 joins in well under a second when nothing swallows them.
    await waitFor(`${N} answers`, () => answers.size === N || undefined, 15_000).catch(() => undefined);
    expect({ answered: answers.size, outcomes }).toMatchObject({ answered: N });
    for (const r of reqs) {
      expect(
        verifyResponseOrError(
          answers.get(r.entry.requestId),
          'join',
          r.entry.requestId,
          requestHash(r.envelope),
          rootPem,
        ).result.generation,
      ).toBe(1);
    }
    // Refused when asked, not granted and filtered later (which is what black-holed requests).
    expect(outcomes).toEqual(Object.fromEntries(Object.keys(outcomes).map((k) => [k, 'refused'])));
    // The instance can still renew through the broker.
    expect(await sigilJson(['agent', 'renew', '--config', a.config])).toMatchObject({
      result: 'renewed',
      generation: 2,
    });
  }, 60_000);

  it('an issuer pointed at the agents’ listener is refused at SUBSCRIBE and says what to fix', async () => {
    // Its serving certificate is from the Sigil root, so the agents' listener admits it — as an
    // anonymous agent, which may not subscribe to requests.
    const proc = spawn(
      process.execPath,
      [SIGIL, 'server', 'start', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--mqtt-url', broker.url],
      { env: { ...process.env, SIGIL_LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let logs = '';
    proc.stdout.on('data', (d: Buffer) => (logs += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (logs += d.toString()));
    try {
      const line = await waitFor(
        'the refused subscription',
        () => logs.split('\n').find((l) => l.includes('mqtt responder could not subscribe')),
        20_000,
        100,
      );
      expect(line).toContain("is --mqtt-url the issuers' listener");
      expect(line).toContain('$share/sigil/sigil/v1/+');
      expect(logs).not.toContain('mqtt responder subscribed');
    } finally {
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
    }
  }, 40_000);
});
