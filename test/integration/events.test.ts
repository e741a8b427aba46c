/**
 * Pushed events (issue #16, docs/events.md) end to end: a real issuer (IssuerService) with three
 * HTTPS webhook receivers behind a test CA made by openssl — one that takes every event, one that
 * fails three times first, one that is down — and a real mosquitto with an MQTT subscriber.
 * A lock made through the admin API must arrive at each live receiver once, as a JWS that
 * verifies against the issuer's trust bundle; the dead receiver's events become dead letters in
 * the metrics while the issuer keeps serving.
 */
import { createServer, type Server } from 'node:https';
import https from 'node:https';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJoinRequest } from '../../src/agent/requests.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { loadSigner, parseKeyRef } from '../../src/keystore/index.js';
import type { Signer } from '../../src/keystore/signer.js';
import { fromPem } from '../../src/pki/pem.js';
import { signJws, signJwsWithKey } from '../../src/protocol/jws.js';
import { TYP_RESPONSE } from '../../src/protocol/messages.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { initDataDir, paths } from '../../src/server/data-dir.js';
import { verifyEvent } from '../../src/server/events/verify.js';
import { WebhookSink } from '../../src/server/events/webhook.js';
import { TYP_EVENT, type SigilEvent } from '../../src/server/events/event.js';
import { IssuerService } from '../../src/server/service.js';
import { createLogger } from '../../src/util/log.js';
import { freePort, requireMosquitto, startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { OpensslPki } from '../helpers/openssl-pki.js';
import { POLICY } from './harness.js';

const work = mkdtempSync(join(tmpdir(), 'sigil-events-'));
const dataDir = join(work, 'issuer');
let svc: IssuerService;
let rootPem: string;
let broker: Broker;
let receiver: Server;
let receiverPort: number;
let deadPort: number;
let subscriber: mqtt.MqttClient;
let hookCaPem: string;

/** What each webhook path received (raw bodies), and how often it answered with a failure. */
const bodies: Record<string, string[]> = { '/ok': [], '/flaky': [] };
const contentTypes: string[] = [];
let flakyFailures = 0;
const mqttMessages: Array<{ topic: string; payload: string }> = [];

/** Poll an observable outcome until it holds (not a sleep-then-assert). */
async function waitUntil(ok: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function post(path: string, body: unknown): Promise<{ status: number; json: any }> {
  const u = new URL(svc.url);
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: 'POST',
        ca: rootPem,
        checkServerIdentity: () => undefined,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': data.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) }),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

async function joinMachine(): Promise<{ id: string; serial: string; signer: Signer; chainPem: string[] }> {
  const { token } = (await runAdminOp(svc.ctx.stores, 'token.create', { bot: 'gw' })) as { token: string };
  const agent = new TokenJoinAgent(token);
  const built = await buildJoinRequest({ method: 'token', evidence: (c) => agent.evidence(c), now: Date.now() });
  const res = await post('/v1/join', built.envelope);
  expect(res.status, JSON.stringify(res.json)).toBe(200);
  const payload = verifyResponse(res.json, 'join', built.entry.requestId, rootPem);
  return {
    id: payload.result.instance_id,
    serial: payload.result.serial,
    signer: loadSigner(parseKeyRef(built.entry.pendingKeyRef!)),
    chainPem: payload.result.chain,
  };
}

const ofInstance = (id: string, type: string) => (e: SigilEvent) => e.instance_id === id && e.type === type;

beforeAll(async () => {
  requireMosquitto();
  // The receivers' TLS: a CA of their own, made by openssl (the issuer is told of it as the webhook CA).
  const pki = new OpensslPki(join(work, 'pki'));
  const ca = pki.root('hook-ca', '/CN=Webhook Test CA', 'ec');
  const leaf = pki.leaf('hook', ca, '/CN=127.0.0.1', {
    san: 'IP:127.0.0.1',
    ext: [
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature',
      'extendedKeyUsage = serverAuth',
    ],
  });
  receiver = createServer({ cert: leaf.pem, key: readFileSync(leaf.key) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/trickle') {
        // Headers at once, then a byte every 50 ms, forever: never idle, never done.
        res.writeHead(200, { 'content-type': 'text/plain' });
        const t = setInterval(() => res.write('.'), 50);
        res.on('close', () => clearInterval(t));
        return;
      }
      contentTypes.push(String(req.headers['content-type']));
      if (req.url === '/flaky' && flakyFailures < 3) {
        flakyFailures++;
        res.writeHead(503).end();
        return;
      }
      bodies[req.url ?? '']?.push(Buffer.concat(chunks).toString('ascii'));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  receiverPort = (receiver.address() as { port: number }).port;
  deadPort = await freePort(); // nothing listens there

  broker = await startMosquitto(join(work, 'broker'));
  subscriber = mqtt.connect(broker.url, { protocolVersion: 5 });
  await new Promise<void>((resolve, reject) => {
    subscriber.once('connect', () =>
      subscriber.subscribe('sigil/v1/events/#', { qos: 1 }, (e) => (e ? reject(e) : resolve())),
    );
    subscriber.once('error', reject);
  });
  subscriber.on('message', (topic, payload) => mqttMessages.push({ topic, payload: payload.toString('ascii') }));

  initDataDir(dataDir, 'example.org');
  rootPem = readFileSync(paths(dataDir).rootCert, 'utf8');
  const hookCa = (hookCaPem = readFileSync(ca.cert, 'utf8'));
  const hook = (path: string, port = receiverPort) => ({ url: `https://127.0.0.1:${port}${path}`, ca: hookCa });
  svc = IssuerService.open(
    {
      dataDir,
      host: '127.0.0.1',
      port: 0,
      audit: { checkpointIntervalMs: 600_000 },
      crl: { refreshMs: 60_000, watchMs: 100 },
      mqtt: { url: broker.url },
      events: {
        webhooks: [hook('/ok'), hook('/flaky'), hook('/dead', deadPort)],
        retry: { baseMs: 20, maxMs: 100, attempts: 5 },
      },
    },
    createLogger({ name: 'test', level: 'silent' }),
  );
  await svc.start();
  await runAdminOp(svc.ctx.stores, 'apply', { yaml: POLICY });
}, 60_000);

afterAll(async () => {
  subscriber?.end(true);
  await svc?.stop();
  await new Promise((r) => receiver?.close(r));
  await broker?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('signed events pushed to webhooks and MQTT', () => {
  it('a lock reaches the webhook once as a JWS that verifies against the bundle, and its certificate_revoked follows', async () => {
    const m = await joinMachine();
    // The audit tail waits for the store's durability barrier before it announces a row (a lock a
    // power loss could roll back must not be pushed out): counted on the live store.
    const stores = svc.ctx.stores as typeof svc.ctx.stores & { whenDurable?: () => Promise<void> };
    const durable = stores.whenDurable!.bind(stores);
    let barriers = 0;
    stores.whenDurable = () => (barriers++, durable());
    await runAdminOp(svc.ctx.stores, 'lock', { target: m.id, reason: 'incident 4711' });
    const got = (): SigilEvent[] => bodies['/ok']!.map((b) => verifyEvent(b, rootPem));
    await waitUntil(() => got().some(ofInstance(m.id, 'certificate_revoked')));
    stores.whenDurable = durable;
    expect(barriers).toBeGreaterThan(0);
    const locked = got().filter(ofInstance(m.id, 'instance_locked'));
    expect(locked).toHaveLength(1);
    expect(locked[0]!.data).toMatchObject({ reason: 'incident 4711', by: 'admin' });
    // An admin lock of an instance names its bot, as the certificate_revoked that follows does.
    expect(locked[0]!.bot).toBe('gw');
    expect(locked[0]!.trust_domain).toBe('example.org');
    const revoked = got().filter(ofInstance(m.id, 'certificate_revoked'));
    expect(revoked.map((e) => e.data['serial'])).toEqual([m.serial.toLowerCase()]);
    expect(contentTypes.every((t) => t === 'application/jose')).toBe(true);

    // Unlock: instance_unlocked, once.
    await runAdminOp(svc.ctx.stores, 'unlock', { target: m.id });
    await waitUntil(() => got().some(ofInstance(m.id, 'instance_unlocked')));
    expect(got().filter(ofInstance(m.id, 'instance_unlocked'))).toHaveLength(1);
    expect(got().find(ofInstance(m.id, 'instance_unlocked'))!.bot).toBe('gw');
  });

  it('an event is not accepted by a receiver pinning another root, nor once tampered with, nor when old', async () => {
    await waitUntil(() => bodies['/ok']!.length > 0);
    const jws = bodies['/ok']![0]!;
    const other = mkdtempSync(join(work, 'other-'));
    initDataDir(other, 'example.org');
    expect(() => verifyEvent(jws, readFileSync(paths(other).rootCert, 'utf8'))).toThrow(
      expect.objectContaining({ code: 'event_invalid' }),
    );
    const [h, p, s] = jws.split('.');
    const forged = Buffer.from(p!, 'base64url').toString('utf8').replace('instance_locked', 'instance_unlocked');
    expect(() => verifyEvent(`${h}.${Buffer.from(forged).toString('base64url')}.${s}`, rootPem)).toThrow(
      expect.objectContaining({ code: 'event_invalid' }),
    );
    // The issuer's own signature, but over a response (typ), is not an event.
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')) as SigilEvent;
    const srv = svc.ctx.server;
    const asResponse = signJwsWithKey(srv.key, 'ES256', TYP_RESPONSE, payload, srv.chainDer);
    expect(() => verifyEvent(`${asResponse.protected}.${asResponse.payload}.${asResponse.signature}`, rootPem)).toThrow(
      /typ/,
    );
    // A bot's certificate from the same CA cannot sign events (a peer bot forging a webhook call).
    const bot = await joinMachine();
    const byBot = await signJws(
      bot.signer,
      TYP_EVENT,
      payload,
      bot.chainPem.map((c) => fromPem(c, 'CERTIFICATE')),
    );
    expect(() => verifyEvent(`${byBot.protected}.${byBot.payload}.${byBot.signature}`, rootPem)).toThrow(
      /not signed by spiffe:\/\/example\.org\/sigil\/issuer/,
    );
    // A replay of a two-hour-old event (default freshness one hour).
    expect(() => verifyEvent(jws, rootPem, { now: new Date(Date.now() + 2 * 3600_000) })).toThrow(/ago/);
  });

  it('a receiver that fails three times gets the event once, after retries', async () => {
    const m = await joinMachine();
    const before = bodies['/flaky']!.length;
    await runAdminOp(svc.ctx.stores, 'lock', { target: m.id, reason: 'flaky receiver' });
    const got = (): SigilEvent[] => bodies['/flaky']!.slice(before).map((b) => verifyEvent(b, rootPem));
    await waitUntil(() => got().some(ofInstance(m.id, 'certificate_revoked')));
    expect(flakyFailures).toBe(3);
    expect(got().filter(ofInstance(m.id, 'instance_locked'))).toHaveLength(1);
    const metrics = svc.ctx.metrics.registry.render();
    expect(metrics).toMatch(/sigil_events_failed_total\{sink="https:\/\/127\.0\.0\.1:\d+\/flaky"\} 3/);
  });

  it('a receiver that trickles its answer forever is given up on at the deadline (it cannot hold the queue)', async () => {
    const sink = new WebhookSink({ url: `https://127.0.0.1:${receiverPort}/trickle`, ca: hookCaPem, timeoutMs: 400 });
    const started = Date.now();
    await expect(sink.send('a.b.c', { id: 'evt_x', type: 'instance_locked' } as SigilEvent)).rejects.toThrow(
      /within 400 ms/,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a dead receiver: its events become dead letters in the metrics, and the issuer keeps working', async () => {
    const m = await joinMachine();
    const dead = `https://127.0.0.1:${deadPort}/dead`;
    const deadLetters = (): number => {
      const line = svc.ctx.metrics.registry
        .render()
        .split('\n')
        .filter((l) => l.startsWith('sigil_events_dead_letter_total{') && l.includes(dead))
        .map((l) => Number(l.split(' ').at(-1)));
      return line.reduce((a, b) => a + b, 0);
    };
    const before = deadLetters();
    await runAdminOp(svc.ctx.stores, 'lock', { target: m.id, reason: 'dead receiver' });
    await waitUntil(() => deadLetters() > before, 30_000);
    expect(svc.events.deadLetters()).toBeGreaterThan(0);
    // The issuer still answers joins, and the live receiver still gets events.
    const next = await joinMachine();
    await runAdminOp(svc.ctx.stores, 'lock', { target: next.id, reason: 'after the dead letters' });
    await waitUntil(() =>
      bodies['/ok']!.map((b) => verifyEvent(b, rootPem)).some(ofInstance(next.id, 'instance_locked')),
    );
  });

  it('a renewal refused by an attestation check (the row renewal writes) becomes attestation_failed', async () => {
    const m = await joinMachine();
    // The refusal row exactly as auditRefusal writes it for an x509 device revoked since its join.
    await svc.ctx.stores.audit.append(
      {
        action: 'renew',
        outcome: 'refused',
        code: 'x509_revoked',
        bot: 'gw',
        instanceId: m.id,
        method: 'x509',
        actor: 'agent',
        remote: '127.0.0.1',
        details: { message: 'device certificate … was revoked (re-checked at renewal)' },
      },
      Date.now(),
    );
    const got = (): SigilEvent[] => bodies['/ok']!.map((b) => verifyEvent(b, rootPem));
    await waitUntil(() => got().some(ofInstance(m.id, 'attestation_failed')));
    const [ev] = got().filter(ofInstance(m.id, 'attestation_failed'));
    expect(ev!.data).toMatchObject({ op: 'renew', check: 'x509_revoked', method: 'x509' });
  });

  it('an MQTT subscriber on sigil/v1/events/# receives the signed event on its type topic', async () => {
    const m = await joinMachine();
    await runAdminOp(svc.ctx.stores, 'lock', { target: m.id, reason: 'mqtt' });
    const got = (): Array<{ topic: string; ev: SigilEvent }> =>
      mqttMessages.map((x) => ({ topic: x.topic, ev: verifyEvent(x.payload, rootPem) }));
    await waitUntil(() => got().some((x) => ofInstance(m.id, 'instance_locked')(x.ev)));
    const mine = got().filter((x) => ofInstance(m.id, 'instance_locked')(x.ev));
    expect(mine).toHaveLength(1);
    expect(mine[0]!.topic).toBe('sigil/v1/events/instance_locked');
    await waitUntil(() =>
      got().some((x) => x.topic === 'sigil/v1/events/certificate_revoked' && x.ev.instance_id === m.id),
    );
  });
});
