/**
 * Reconnect pacing (issue #14): the pure timing rules with a pinned random source, and the client
 * against scripted brokers — a busy broker gets a bounded number of attempts, a refusing one gets
 * one (failover is not delayed), a silent one is given up on at the connect timeout, not the
 * kernel's SYN backoff.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { MqttIssuerClient } from '../../../src/transport/mqtt/client.js';
import {
  CONNECT_ATTEMPTS_MAX,
  CONNECT_RETRY_CAP_MS,
  CONNECT_RETRY_FLOOR_MS,
  connectRetryDelay,
  isBusyFailure,
  reconnectDelay,
  RECONNECT_SPREAD_MAX_MS,
  secureRandom,
  spreadForFleet,
} from '../../../src/transport/mqtt/pacing.js';
import { b64u } from '../../../src/protocol/jws.js';

describe('pacing rules', () => {
  it('reconnectDelay is uniform over [0, spread): its ends and its middle', () => {
    expect(reconnectDelay(10_000, () => 0)).toBe(0);
    expect(reconnectDelay(10_000, () => 0.5)).toBe(5_000);
    expect(reconnectDelay(10_000, () => 0.999999)).toBe(9_999);
    expect(reconnectDelay(0, () => 0.7)).toBe(0);
  });

  it('spreadForFleet: fleet / rate seconds, bounded', () => {
    expect(spreadForFleet(5_000, 500)).toBe(10_000);
    expect(spreadForFleet(5_000)).toBe(10_000);
    expect(spreadForFleet(100, 1000)).toBe(100);
    expect(spreadForFleet(10_000_000, 1)).toBe(RECONNECT_SPREAD_MAX_MS);
  });

  it('connectRetryDelay: full jitter over a doubling window, floored and capped', () => {
    expect(connectRetryDelay(1, () => 0)).toBe(CONNECT_RETRY_FLOOR_MS);
    expect(connectRetryDelay(1, () => 0.999999)).toBeLessThan(500);
    expect(connectRetryDelay(2, () => 0.999999)).toBeLessThan(1_000);
    expect(connectRetryDelay(2, () => 0.999999)).toBeGreaterThan(990);
    expect(connectRetryDelay(30, () => 0.999999)).toBeLessThan(CONNECT_RETRY_CAP_MS);
    expect(connectRetryDelay(30, () => 0.999999)).toBeGreaterThan(CONNECT_RETRY_CAP_MS - 10);
  });

  it('the default random source is the CSPRNG: draws in [0, 1) that differ', () => {
    const draws = Array.from({ length: 200 }, secureRandom);
    expect(draws.every((d) => d >= 0 && d < 1)).toBe(true);
    expect(new Set(draws).size).toBe(200);
  });

  it('busy failures are retried, "not here" ones are not', () => {
    expect(isBusyFailure(new Error('connack timeout'))).toBe(true);
    expect(isBusyFailure(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isBusyFailure(Object.assign(new Error('busy'), { code: 0x89 }))).toBe(true);
    expect(isBusyFailure(Object.assign(new Error('rate'), { code: 0x9f }))).toBe(true);
    expect(isBusyFailure(undefined)).toBe(true);
    expect(isBusyFailure(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBe(false);
    expect(isBusyFailure(Object.assign(new Error('not authorized'), { code: 0x87 }))).toBe(false);
    expect(isBusyFailure(Object.assign(new Error('bad login'), { code: 0x86 }))).toBe(false);
    expect(isBusyFailure(new Error('self-signed certificate'))).toBe(false);
  });
});

/** A scripted broker: answers every CONNECT with `connack` (a reason code) or, if undefined, never. */
async function scriptedBroker(
  connack: number | undefined,
): Promise<{ port: number; connects: () => number; server: Server }> {
  let n = 0;
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    n++;
    sockets.push(s);
    s.on('error', () => undefined);
    s.once('data', () => {
      if (connack === undefined) return; // a black hole: accepted, never answered
      // MQTT v5 CONNACK: flags 0, reason code, no properties (§3.2).
      s.end(Buffer.from([0x20, 0x03, 0x00, connack, 0x00]));
    });
  });
  server.on('close', () => sockets.forEach((s) => s.destroy()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, connects: () => n, server };
}

const servers: Server[] = [];
const clients: MqttIssuerClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

function clientFor(port: number, opts: { timeoutMs: number; connectTimeoutMs: number }): MqttIssuerClient {
  const c = new MqttIssuerClient({
    url: `mqtt://127.0.0.1:${port}`,
    pin: `sha256:${'0'.repeat(64)}`,
    rootPem: undefined,
    ...opts,
    random: () => 0,
    session: () => ({ clientId: 'sigil-test', responseId: 'test' }),
  });
  clients.push(c);
  return c;
}

const envelope = {
  protected: b64u.encode(Buffer.from('{}')),
  payload: b64u.encode(Buffer.from(JSON.stringify({ request_id: 'r1' }))),
  signature: '',
};

async function refusal(p: Promise<unknown>): Promise<SigilError> {
  const r = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(r).toBeInstanceOf(SigilError);
  return r as SigilError;
}

describe('MqttIssuerClient against a scripted broker', () => {
  it(`a busy broker (CONNACK 0x89) gets at most ${CONNECT_ATTEMPTS_MAX} attempts per request, then issuer_unreachable`, async () => {
    const b = await scriptedBroker(0x89);
    servers.push(b.server);
    const c = clientFor(b.port, { timeoutMs: 10_000, connectTimeoutMs: 2_000 });
    const e = await refusal(c.post('renew', envelope));
    expect(e.code).toBe('issuer_unreachable');
    expect(e.message).toMatch(/busy/i);
    expect(b.connects()).toBe(CONNECT_ATTEMPTS_MAX);
    expect(c.pacing).toMatchObject({ attempts: CONNECT_ATTEMPTS_MAX, retries: CONNECT_ATTEMPTS_MAX - 1, lost: 0 });
  });

  it('a refusing broker (CONNACK 0x87 Not authorized) gets one attempt: failover is not delayed', async () => {
    const b = await scriptedBroker(0x87);
    servers.push(b.server);
    const c = clientFor(b.port, { timeoutMs: 10_000, connectTimeoutMs: 2_000 });
    const e = await refusal(c.post('renew', envelope));
    expect(e.code).toBe('issuer_unreachable');
    expect(e.message).toMatch(/not authorized/i);
    expect(b.connects()).toBe(1);
  });

  it('a silent broker is given up on at the connect timeout and tried again, within the request timeout', async () => {
    const b = await scriptedBroker(undefined);
    servers.push(b.server);
    const c = clientFor(b.port, { timeoutMs: 60_000, connectTimeoutMs: 300 });
    const t0 = Date.now();
    const e = await refusal(c.post('renew', envelope));
    expect(e.code).toBe('issuer_unreachable');
    expect(b.connects()).toBe(CONNECT_ATTEMPTS_MAX);
    // Each attempt ends at its 300 ms timeout; the pauses are floored at 100 ms (random pinned to 0).
    expect(Date.now() - t0).toBeLessThan(CONNECT_ATTEMPTS_MAX * (300 + 1_000 + CONNECT_RETRY_FLOOR_MS) + 1_000);
  });
});
