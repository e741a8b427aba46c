/**
 * A fleet that lost its issuer at the same moment must not come back in lockstep: 50 real
 * Agent loops (in one process, each with its own SQLite state) start together against an
 * issuer port that refuses connections. Capped exponential backoff with full jitter
 * (agent/schedule.ts) must spread their retries out, with no busy loop.
 */
import { setMaxListeners } from 'node:events';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { RETRY_FLOOR_MS } from '../../src/agent/schedule.js';
import { silentLogger } from '../../src/util/log.js';
import { tempDir } from '../helpers/cli.js';
import { freePort } from '../helpers/mosquitto.js';

const AGENTS = 50;
const RUN_MS = 12_000;

/** mulberry32: a tiny seeded PRNG in [0, 1). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const stddev = (xs: number[]): number => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length);
};

describe('fleet de-synchronisation after a shared outage', () => {
  const tmp = tempDir('sigil-fleet-');
  afterAll(() => tmp.cleanup());

  it(`${AGENTS} agents losing the issuer together retry at spread-out times`, async () => {
    const port = await freePort(); // nothing listens there: every attempt is refused at once
    const pin = `sha256:${'ab'.repeat(32)}`;
    const agents = Array.from({ length: AGENTS }, (_, i) => {
      const yaml = `issuer: https://127.0.0.1:${port}\nca_pin: ${pin}\ndata_dir: a${i}\njoin: { method: token, token: ${'T'.repeat(43)} }\n`;
      // A seeded jitter source per agent: the same draws on every run, so what varies between
      // runs is only the machine's timing (a loaded CI box fires timers late and in bunches).
      return new Agent(parseAgentConfig(yaml, join(tmp.path, `a${i}.yaml`)), silentLogger(), {
        rand: seeded(0x5eed + i),
      });
    });
    const ac = new AbortController();
    setMaxListeners(AGENTS * 2, ac.signal);
    const t0 = Date.now();
    const runs = agents.map((a) => a.run(ac.signal));
    await new Promise((r) => setTimeout(r, RUN_MS));
    ac.abort();
    await Promise.all(runs);

    const attempts = agents.map((a) =>
      a.state
        .listHistory(1000)
        .map((h) => h.at - t0)
        .sort((x, y) => x - y),
    );
    for (const a of agents) {
      expect(a.state.listHistory(1000).every((h) => h.code === 'issuer_unreachable')).toBe(true);
      await a.close();
    }

    // No busy loop: never two attempts closer than the floor, and a handful per agent.
    for (const times of attempts) {
      for (let i = 1; i < times.length; i++)
        expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(RETRY_FLOOR_MS - 5);
      expect(times.length).toBeLessThanOrEqual(15);
    }
    const total = attempts.reduce((n, t) => n + t.length, 0);
    expect(total).toBeGreaterThanOrEqual(AGENTS * 3);

    // The first attempt is simultaneous by construction; from the 3rd on they are spread.
    const kth = (k: number): number[] => attempts.filter((t) => t.length > k).map((t) => t[k]!);
    const third = kth(2);
    const fourth = kth(3);
    expect(third.length).toBeGreaterThan(AGENTS / 2);
    expect(Math.max(...third) - Math.min(...third)).toBeGreaterThan(1_500);
    expect(stddev(third)).toBeGreaterThan(400);
    expect(stddev(fourth)).toBeGreaterThan(stddev(kth(1)));

    // No wave: after the first second, no 250 ms window holds more than half the fleet (in
    // lockstep all 50 would share one; with full jitter a dozen or so is the usual peak, and a
    // loaded machine that fires timers late adds a few: 21 was seen once at 40 %).
    const later = attempts.flat().filter((t) => t >= 1_000);
    const buckets = new Map<number, number>();
    for (const t of later) buckets.set(Math.floor(t / 250), (buckets.get(Math.floor(t / 250)) ?? 0) + 1);
    const peak = Math.max(...buckets.values());
    console.log(
      `fleet: ${total} attempts by ${AGENTS} agents in ${RUN_MS / 1000} s; 3rd attempt spread ${(Math.max(...third) - Math.min(...third)).toFixed(0)} ms (sd ${stddev(third).toFixed(0)} ms); busiest 250 ms window after 1 s: ${peak} attempts`,
    );
    expect(peak).toBeLessThanOrEqual(AGENTS * 0.5);
  }, 60_000);
});
