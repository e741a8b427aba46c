/**
 * Reconnect pacing against a real mosquitto and an in-process issuer (issue #14): after a broker
 * restart an agent reconnects at its own place in the spread — not before, and not much after —
 * and its renewal completes; a renewal published before any issuer is subscribed again (PUBACK
 * 0x10, No matching subscribers) is published again at once instead of waiting out its timeout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MqttIssuerClient } from '../../src/transport/mqtt/client.js';
import { MqttResponder } from '../../src/transport/mqtt/responder.js';
import { startMosquitto, waitFor, type Broker } from '../helpers/mosquitto.js';
import { startIssuer, type Harness } from './harness.js';

let h: Harness;
let broker: Broker;
let dir: string;
const closers: Array<() => unknown> = [];

beforeEach(async () => {
  h = await startIssuer();
  dir = mkdtempSync(join(tmpdir(), 'sigil-pacing-'));
  broker = await startMosquitto(join(dir, 'broker'));
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await broker.stop();
  await h.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The responder, and a promise per "subscribed" log line (the first, after each reconnect). */
async function startResponder(random?: () => number): Promise<{ subscribed: () => number }> {
  let n = 0;
  const info = h.ctx.log.info.bind(h.ctx.log);
  vi.spyOn(h.ctx.log, 'info').mockImplementation(((obj: unknown, msg?: string) => {
    if (msg === 'mqtt responder subscribed') n++;
    return info(obj as object, msg);
  }) as typeof h.ctx.log.info);
  const r = new MqttResponder({ url: broker.url, ctx: h.ctx, ...(random ? { random } : {}) });
  await r.start();
  closers.push(() => r.stop(500));
  return { subscribed: () => n };
}

async function agent(spreadMs: number, random: () => number) {
  const id = await h.join();
  const instanceId = id.result.instance_id;
  const c = new MqttIssuerClient({
    url: broker.url,
    pin: `sha256:${'0'.repeat(64)}`,
    timeoutMs: 20_000,
    connectTimeoutMs: 3_000,
    reconnectSpreadMs: spreadMs,
    random,
    session: () => ({ clientId: `sigil-${instanceId}`, responseId: instanceId }),
  });
  closers.push(() => c.close());
  const renew = async (): Promise<unknown> => c.post('renew', (await h.renewEnvelope(id)).envelope);
  return { c, renew };
}

describe('MQTT reconnect pacing', () => {
  it('after a broker restart the agent waits its place in the spread, then reconnects and renews', async () => {
    const { subscribed } = await startResponder();
    // random 0.75 of a 6 s spread: this agent's place is 4.5 s after it lost the broker.
    const { c, renew } = await agent(6_000, () => 0.75);
    expect(await renew()).toHaveProperty('payload');

    await broker.stop();
    const lostAt = Date.now();
    await waitFor('the agent to see the connection lost', () => c.pacing.lost === 1, 5_000, 20);
    await broker.start();
    await waitFor('the issuer to resubscribe', () => subscribed() >= 2, 10_000, 20);

    const body = await renew();
    const reconnectedAfter = Date.now() - lostAt;
    expect(body).toHaveProperty('payload');
    // Its place counts from when the agent saw the loss, a little before broker.stop() returned
    // (and timers may fire a millisecond early by Date.now()): not the exact 4.5 s.
    expect(reconnectedAfter).toBeGreaterThanOrEqual(4_300);
    // Its place, one attempt (connect timeout 3 s) and the round trip; never the kernel's 7–15 s SYN backoff.
    expect(reconnectedAfter).toBeLessThan(4_500 + 3_000 + 2_000);
    expect(c.pacing).toMatchObject({ lost: 1, retries: 0 });
  }, 30_000);

  it('a renewal published while no issuer is subscribed (PUBACK 0x10) is published again, not left to time out', async () => {
    const first = new MqttResponder({ url: broker.url, ctx: h.ctx });
    await first.start();
    const { c, renew } = await agent(0, () => 0);
    expect(await renew()).toHaveProperty('payload');
    await first.stop(500); // the only issuer goes away (as after a broker restart, before it resubscribes)

    const t0 = Date.now();
    const done = renew();
    await waitFor('the agent to publish into an empty share group', () => c.pacing.republished >= 1, 10_000, 10);
    const second = new MqttResponder({ url: broker.url, ctx: h.ctx });
    closers.push(() => second.stop(500));
    await second.start();
    expect(await done).toHaveProperty('payload');
    // Well inside the 20 s request timeout: the agent did not wait it out.
    expect(Date.now() - t0).toBeLessThan(12_000);
  }, 40_000);

  it('the issuer resubscribes within about a second of the broker coming back, however long it was down', async () => {
    // Agents republish into an empty share group for ~7 s (PUBACK 0x10) before waiting out their
    // timeout, so the responder's reconnect pause must not grow with the outage (it grew to 5 s:
    // the 16.6 s storm in docs/performance.md "Session 11").
    // The longest pause the jitter allows, every time.
    const { subscribed } = await startResponder(() => 0.999);
    await waitFor('the first subscription', () => subscribed() === 1, 5_000, 20);
    await broker.stop();
    await new Promise((r) => setTimeout(r, 8_000)); // an outage of several reconnect tries
    await broker.start();
    const back = Date.now();
    await waitFor('the issuer to resubscribe', () => subscribed() >= 2, 10_000, 10);
    expect(Date.now() - back).toBeLessThan(2_200); // a 1 s pause at most, then connect and subscribe
  }, 30_000);
});
