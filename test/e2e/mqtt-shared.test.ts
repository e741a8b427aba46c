/**
 * Two issuers on one broker with a shared subscription ($share/sigil/sigil/v1/+): every
 * request is answered exactly once, both issuers take a share, and killing one in the middle
 * of a run loses no request — the agents' resends (same request ids, after their timeout) land
 * on the survivor, and each request id yields exactly one certificate.
 */
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { buildJoinRequest } from '../../src/agent/requests.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { requestHash, verifyResponseOrError } from '../../src/protocol/verify-response.js';
import { silentLogger } from '../../src/util/log.js';
import { readFileSync } from 'node:fs';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { openIssuerStores } from '../../src/server/data-dir.js';
import { tempDir } from '../helpers/cli.js';
import {
  issuerDb,
  issuerMetrics,
  spawnIssuer,
  waitFor,
  type Broker,
  type IssuerProcess,
  prepareMqttIssuer,
} from '../helpers/mosquitto.js';

/** Tokens straight from the store (the CLI round trip costs ~0.3 s per token). */
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

const joinsServed = (metrics: string): number =>
  Number(/sigil_requests_total\{transport="mqtt",op="join",outcome="ok"\} (\d+)/.exec(metrics)?.[1] ?? 0);
/** Every join the issuer handled over MQTT, whatever the outcome (a duplicate is answered too). */
const joinRequests = (metrics: string): number =>
  [...metrics.matchAll(/sigil_requests_total\{transport="mqtt",op="join",outcome="[^"]+"\} (\d+)/g)].reduce(
    (n, m) => n + Number(m[1]),
    0,
  );

describe('two issuers sharing one broker', () => {
  const tmp = tempDir('sigil-mqtt-shared-');
  const dataDir = join(tmp.path, 'issuer');
  let broker: Broker;
  let a: IssuerProcess;
  let b: IssuerProcess;
  let pin: string;

  beforeAll(async () => {
    ({ broker, pin } = await prepareMqttIssuer(tmp.path, dataDir));
    // Two issuer processes on one store (SQLite WAL here; PostgreSQL when on several machines).
    [a, b] = await Promise.all([
      spawnIssuer(dataDir, ['--mqtt-url', broker.url]),
      spawnIssuer(dataDir, ['--mqtt-url', broker.url]),
    ]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await broker?.stop();
    tmp.cleanup();
  });

  it('30 requests: each answered exactly once, by one of the two', async () => {
    const root = readFileSync(join(dataDir, 'ca', 'root.pem'), 'utf8');
    const client = await connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
    const answers = new Map<string, unknown[]>();
    client.on('message', (_t, payload, packet) => {
      const k = packet.properties!.correlationData!.toString();
      answers.set(k, [...(answers.get(k) ?? []), JSON.parse(payload.toString())]);
    });
    await client.subscribeAsync('sigil/v1/resp/bootstrap/shared-test', { qos: 1 });
    const before = joinsServed(await issuerMetrics(a.url)) + joinsServed(await issuerMetrics(b.url));
    const handledBefore = joinRequests(await issuerMetrics(a.url)) + joinRequests(await issuerMetrics(b.url));
    const tokens = await createTokens(dataDir, 30);
    const reqs = await Promise.all(
      tokens.map(async (token) => {
        const m = new TokenJoinAgent(token);
        return buildJoinRequest({ method: 'token', evidence: (c) => m.evidence(c), now: Date.now() });
      }),
    );
    for (const r of reqs) {
      await client.publishAsync('sigil/v1/join', JSON.stringify(r.envelope), {
        qos: 1,
        properties: {
          responseTopic: 'sigil/v1/resp/bootstrap/shared-test',
          correlationData: Buffer.from(r.entry.requestId),
        },
      });
    }
    await waitFor('30 answers', () => answers.size === 30 || undefined, 30_000);
    // No sleeping "for any duplicate": a sentinel proves it. The broker delivers to each issuer's
    // session in publish order and each issuer starts requests in arrival order, so once BOTH
    // issuers have answered a sentinel published after the 30, any second delivery of one of the
    // 30 had reached its issuer already; waiting until the issuers' request counters equal the
    // answers received then lets such a duplicate's answer arrive before the count below.
    const servedAfter30 = [joinsServed(await issuerMetrics(a.url)), joinsServed(await issuerMetrics(b.url))];
    const sentinels: string[] = [];
    for (let i = 0; ; i++) {
      const m = new TokenJoinAgent((await createTokens(dataDir, 1))[0]!);
      const r = await buildJoinRequest({ method: 'token', evidence: (c) => m.evidence(c), now: Date.now() });
      sentinels.push(r.entry.requestId);
      await client.publishAsync('sigil/v1/join', JSON.stringify(r.envelope), {
        qos: 1,
        properties: {
          responseTopic: 'sigil/v1/resp/bootstrap/shared-test',
          correlationData: Buffer.from(r.entry.requestId),
        },
      });
      await waitFor('the sentinel answer', () => answers.has(r.entry.requestId) || undefined, 30_000);
      const now = [joinsServed(await issuerMetrics(a.url)), joinsServed(await issuerMetrics(b.url))];
      if (now[0]! > servedAfter30[0]! && now[1]! > servedAfter30[1]!) break;
      expect(i, 'both issuers should have taken a sentinel by now').toBeLessThan(40);
    }
    const handled = async (): Promise<number> =>
      joinRequests(await issuerMetrics(a.url)) + joinRequests(await issuerMetrics(b.url));
    const answered = (): number => [...answers.values()].reduce((n, v) => n + v.length, 0);
    await waitFor(
      'every handled request answered',
      async () => ((await handled()) - handledBefore === answered() ? true : undefined),
      30_000,
    );
    await client.endAsync();
    for (const id of sentinels) expect(answers.get(id)).toHaveLength(1);
    for (const r of reqs) {
      const got = answers.get(r.entry.requestId)!;
      expect(got).toHaveLength(1);
      expect(
        verifyResponseOrError(got[0], 'join', r.entry.requestId, requestHash(r.envelope), root).result.generation,
      ).toBe(1);
    }
    const [na, nb] = [joinsServed(await issuerMetrics(a.url)), joinsServed(await issuerMetrics(b.url))];
    expect(na + nb - before).toBe(30 + sentinels.length);
    expect(na).toBeGreaterThan(0);
    expect(nb).toBeGreaterThan(0);
  });

  it('killing one issuer mid-run loses no request: resends land on the survivor, one certificate per request id', async () => {
    const N = 20;
    const tokens = await createTokens(dataDir, N);
    const agents = await Promise.all(
      tokens.map(async (token, i) => {
        const yaml = `ca_pin: ${pin}\ndata_dir: agent${i}\njoin: { method: token, token: ${token} }\ntransports:\n  - { type: mqtt, url: "${broker.url}", timeout: 3s }\n`;
        return new Agent(parseAgentConfig(yaml, join(tmp.path, `agent${i}.yaml`)), silentLogger());
      }),
    );
    const joinedAt: number[] = [];
    let resends = 0;
    const runOne = async (ag: Agent, i: number): Promise<void> => {
      // Staggered over 2 s, so that requests are in flight whenever the issuer dies.
      await new Promise((res) => setTimeout(res, i * 100));
      for (;;) {
        const r = await ag.tick();
        if (r.action === 'joined') {
          joinedAt[i] = Date.now();
          return;
        }
        if (r.action === 'failed') {
          expect(r.error.code).toBe('issuer_unreachable');
          resends++;
          await new Promise((res) => setTimeout(res, 100 + Math.random() * 300));
        }
      }
    };
    const all = Promise.all(agents.map(runOne));
    await waitFor('the first joins', () => joinedAt.filter(Boolean).length >= 3 || undefined, 20_000, 10);
    // Freeze issuer A first so that the broker keeps handing it its share of the requests in
    // flight, then kill it: those requests are gone with it.
    process.kill(a.proc.pid!, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 500));
    await a.kill();
    await all;
    expect(joinedAt.filter(Boolean)).toHaveLength(N);

    const rows = await issuerDb(dataDir, (db) =>
      db
        .prepare(
          'SELECT request_id, count(*) AS n FROM certificates WHERE instance_id IN (SELECT id FROM instances) GROUP BY request_id HAVING n > 1',
        )
        .all(),
    );
    expect(rows).toEqual([]);
    for (const ag of agents) {
      const id = ag.state.getIdentity()!;
      const certs = await issuerDb(dataDir, (db) =>
        db.prepare('SELECT generation FROM certificates WHERE instance_id = ?').all(id.instanceId),
      );
      expect(certs).toEqual([{ generation: 1 }]);
      await ag.close();
    }
    // Requests swallowed by the dead issuer were resent (after the agents' timeout) and served.
    expect(resends).toBeGreaterThan(0);
  }, 90_000);
});
