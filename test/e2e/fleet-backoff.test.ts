/**
 * A fleet that lost its issuer at the same moment must not come back in lockstep: 50 real
 * Agent loops (in one process, each with its own SQLite state) start together against an
 * issuer port that refuses connections. Capped exponential backoff with full jitter
 * (agent/schedule.ts) must spread their retries out, with no busy loop.
 *
 * Real timers on a shared machine fire late, and a stalled event loop fires every timer that
 * fell due during the stall at once. So the run lasts until every agent has made its 4th
 * attempt (not a fixed time), and the spread thresholds are relative to the longest timer delay
 * measured in this same run (a probe timer beside the agents): a stall of L ms can pull a set of
 * attempt times together by at most L (the range), L/2 (the standard deviation), and pile them
 * into one window at most L wide. The spread of the schedule itself, without a clock, is
 * test/unit/agent/schedule.test.ts "1000 agents that failed together …".
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
/** At least this long, and until every agent has made ATTEMPTS attempts (at most MAX_RUN_MS). */
const RUN_MS = 12_000;
const ATTEMPTS = 4;
const MAX_RUN_MS = 90_000;

/**
 * The longest a 20 ms timer fired late while it ran, from its first second on (the agents' start,
 * synchronous work before the first attempt, is the same for all of them and precedes every retry):
 * what the machine's load did to the timers of the retries.
 */
function lagProbe(): { stop(): number } {
  let worst = 0;
  const from = performance.now() + 1_000;
  let due = performance.now() + 20;
  let timer: NodeJS.Timeout;
  const tick = (): void => {
    const now = performance.now();
    if (now >= from) worst = Math.max(worst, now - due);
    due = now + 20;
    timer = setTimeout(tick, 20);
  };
  timer = setTimeout(tick, 20);
  return {
    stop: () => {
      clearTimeout(timer);
      return worst;
    },
  };
}

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

  it(
    `${AGENTS} agents losing the issuer together retry at spread-out times`,
    async () => {
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
      const probe = lagProbe();
      const runs = agents.map((a) => a.run(ac.signal));
      const everyAgentTried = (): boolean => agents.every((a) => a.state.listHistory(1000).length >= ATTEMPTS);
      while (Date.now() - t0 < MAX_RUN_MS && (Date.now() - t0 < RUN_MS || !everyAgentTried()))
        await new Promise((r) => setTimeout(r, 200));
      ac.abort();
      await Promise.all(runs);
      const lagMs = probe.stop();
      const ranMs = Date.now() - t0;

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
        // A late timer only makes fewer attempts: this bound holds however long the run took.
        expect(times.length).toBeLessThanOrEqual(15);
      }
      const total = attempts.reduce((n, t) => n + t.length, 0);
      for (const times of attempts) expect(times.length).toBeGreaterThanOrEqual(ATTEMPTS);

      // The first attempt is simultaneous by construction; from the 3rd on they are spread.
      const kth = (k: number): number[] => attempts.filter((t) => t.length > k).map((t) => t[k]!);
      const third = kth(2);
      const fourth = kth(3);
      expect(third.length).toBe(AGENTS);
      expect(Math.max(...third) - Math.min(...third)).toBeGreaterThan(1_500 - lagMs);
      expect(stddev(third)).toBeGreaterThan(400 - lagMs / 2);
      expect(stddev(fourth)).toBeGreaterThan(stddev(kth(1)) - lagMs);

      // No wave: after the first second, no 250 ms window holds more than half the fleet (in
      // lockstep all 50 would share one; with full jitter a dozen or so is the usual peak). A
      // stall of L ms fires every attempt due during it at once, so one window can hold what was
      // due in 250 + L ms: the bound grows by that factor (and says nothing once stalls reach
      // 250 ms — then the unit test of the schedule is what holds the property).
      const later = attempts.flat().filter((t) => t >= 1_000);
      const buckets = new Map<number, number>();
      for (const t of later) buckets.set(Math.floor(t / 250), (buckets.get(Math.floor(t / 250)) ?? 0) + 1);
      const peak = Math.max(...buckets.values());
      console.log(
        `fleet: ${total} attempts by ${AGENTS} agents in ${(ranMs / 1000).toFixed(1)} s (longest timer delay ${lagMs.toFixed(0)} ms); 3rd attempt spread ${(Math.max(...third) - Math.min(...third)).toFixed(0)} ms (sd ${stddev(third).toFixed(0)} ms); busiest 250 ms window after 1 s: ${peak} attempts`,
      );
      expect(peak).toBeLessThanOrEqual((AGENTS * 0.5 * (250 + lagMs)) / 250);
    },
    MAX_RUN_MS + 30_000,
  );
});
