/**
 * The daemon's trust check between renewals (src/agent/trust-check.ts): its schedule, that only a
 * rise of the issuer's sequence makes the outputs due (a lagging peer issuer answering an older
 * one does not), what a failed check leaves, and what status shows. The real issuer and agent
 * across a compromise rotation: test/integration/trust-sequence.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderAgentMetrics } from '../../../src/agent/metrics.js';
import { openAgentState } from '../../../src/agent/state/index.js';
import { TRUST_SEQUENCE_SETTING } from '../../../src/agent/credential-status.js';
import { parseAgentConfig } from '../../../src/agent/config.js';
import { trustCheckStatus } from '../../../src/agent/status.js';
import {
  LAST_TRUST_CHECK_SETTING,
  readLastTrustCheck,
  TRUST_CHECK_DEFAULT_S,
  TrustCheck,
} from '../../../src/agent/trust-check.js';
import { SigilError } from '../../../src/errors.js';

const EVERY = 300_000;

function rig(
  answers: Array<number | undefined | Error>,
  opts: { settings?: Map<string, string>; t?: number; joined?: boolean } = {},
) {
  const settings = opts.settings ?? new Map<string, string>();
  const clock = { t: opts.t ?? 1_000_000 };
  const logs: Array<{ level: string; msg: string }> = [];
  const log = (level: string) => (_o: unknown, msg?: string) => void logs.push({ level, msg: msg ?? '' });
  let asked = 0;
  const check = new TrustCheck({
    everyMs: EVERY,
    now: () => clock.t,
    rand: () => 0.5,
    state: {
      getSetting: (k) => settings.get(k),
      setSetting: (k, v) => void settings.set(k, v),
      getIdentity: () => (opts.joined === false ? undefined : ({ instanceId: 'i' } as never)),
    },
    log: { info: log('info'), warn: log('warn'), debug: log('debug') },
    fetchSequence: async () => {
      const a = answers[Math.min(asked++, answers.length - 1)];
      if (a instanceof Error) throw a;
      return a;
    },
  });
  return { check, settings, clock, logs, asked: () => asked };
}

describe('TrustCheck', () => {
  it('first check within the first tenth of an interval, then every interval (±10%)', async () => {
    const r = rig([undefined]);
    expect(r.check.nextAt()).toBe(1_000_000 + EVERY * 0.05);
    expect(await r.check.runIfDue()).toBe(false);
    expect(r.asked()).toBe(0);
    r.clock.t = r.check.nextAt();
    await r.check.runIfDue();
    expect(r.asked()).toBe(1);
    expect(r.check.nextAt()).toBe(r.clock.t + EVERY);
  });

  it('an issuer that never rotated (no sequence): nothing due, nothing kept', async () => {
    const r = rig([undefined]);
    expect(await r.check.runNow()).toBe(false);
    expect(r.settings.get(TRUST_SEQUENCE_SETTING)).toBeUndefined();
    expect(readLastTrustCheck({ getSetting: (k) => r.settings.get(k) })).toMatchObject({ sequence: 0, error: null });
  });

  it('a rise makes the outputs due once and is kept; the same sequence again does not', async () => {
    const r = rig([1700000000, 1700000000]);
    expect(await r.check.runNow()).toBe(true);
    expect(r.settings.get(TRUST_SEQUENCE_SETTING)).toBe('1700000000');
    expect(r.logs.some((l) => l.level === 'info' && l.msg.includes('changed its signing keys'))).toBe(true);
    expect(await r.check.runNow()).toBe(false);
  });

  it('a lower sequence (a peer issuer that has not read the step yet) is not taken', async () => {
    const settings = new Map([[TRUST_SEQUENCE_SETTING, '1700000500']]);
    const r = rig([1700000000, 0, 1700000500, 1700000600], { settings });
    expect(await r.check.runNow()).toBe(false);
    expect(await r.check.runNow()).toBe(false);
    expect(await r.check.runNow()).toBe(false);
    expect(settings.get(TRUST_SEQUENCE_SETTING)).toBe('1700000500');
    expect(await r.check.runNow()).toBe(true);
    expect(settings.get(TRUST_SEQUENCE_SETTING)).toBe('1700000600');
  });

  it('not joined yet: asks nothing', async () => {
    const r = rig([1700000000], { joined: false });
    expect(await r.check.runNow()).toBe(false);
    expect(r.asked()).toBe(0);
    expect(r.check.nextAt()).toBe(r.clock.t + EVERY);
  });

  it('a failed check keeps the sequence, warns once per streak, and shows in status until a check succeeds', async () => {
    const down = new SigilError('issuer_unreachable', 'connect ECONNREFUSED 127.0.0.1:1');
    const settings = new Map([[TRUST_SEQUENCE_SETTING, '1700000000']]);
    const r = rig([down, down, 1700000900], { settings });
    expect(await r.check.runNow()).toBe(false);
    expect(await r.check.runNow()).toBe(false);
    expect(r.logs.filter((l) => l.level === 'warn')).toHaveLength(1);
    expect(r.logs.filter((l) => l.level === 'debug' && l.msg.includes('ECONNREFUSED'))).toHaveLength(1);
    expect(settings.get(TRUST_SEQUENCE_SETTING)).toBe('1700000000');
    const st = trustCheckStatus({ getSetting: (k) => settings.get(k) });
    expect(st).toEqual({
      trust_sequence: 1700000000,
      last_trust_check: new Date(r.clock.t).toISOString(),
      last_trust_check_error: 'issuer_unreachable: connect ECONNREFUSED 127.0.0.1:1',
      next_trust_check: new Date(r.check.nextAt()).toISOString(),
    });
    expect(readLastTrustCheck({ getSetting: (k) => settings.get(k) })?.failures).toBe(2);
    expect(await r.check.runNow()).toBe(true);
    expect(trustCheckStatus({ getSetting: (k) => settings.get(k) })).toMatchObject({
      trust_sequence: 1700000900,
      last_trust_check_error: null,
    });
  });

  it('a failed check is tried again sooner: 30 s, 60 s, … never later than the interval', async () => {
    const down = new SigilError('issuer_unreachable', 'down');
    const r = rig([down]);
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      await r.check.runNow();
      waits.push(r.check.nextAt() - r.clock.t);
    }
    expect(waits).toEqual([30_000, 60_000, 120_000, 240_000, EVERY, EVERY]);
    expect(readLastTrustCheck({ getSetting: (k) => r.settings.get(k) })?.next_at).toBe(r.check.nextAt());
  });

  it('never throws, even when the agent state cannot be written (the daemon loop goes on)', async () => {
    const r = rig([1700000000]);
    const broken = new TrustCheck({
      everyMs: EVERY,
      now: () => r.clock.t,
      rand: () => 0.5,
      state: {
        getSetting: () => undefined,
        setSetting: () => {
          throw new Error('SQLITE_FULL: database or disk is full');
        },
        getIdentity: () => ({ instanceId: 'i' }) as never,
      },
      log: { info: () => undefined, warn: () => undefined, debug: () => undefined },
      fetchSequence: async () => 1700000000,
    });
    await expect(broken.runNow()).resolves.toBe(false);
    expect(broken.nextAt()).toBe(r.clock.t + EVERY);
  });

  it('after a restart: the stored next check, but never later than one interval from now', async () => {
    const r = rig([1]);
    r.clock.t = r.check.nextAt();
    await r.check.runNow();
    const next = r.check.nextAt();
    expect(rig([1], { settings: r.settings, t: r.clock.t + 1000 }).check.nextAt()).toBe(next);
    // A stored time far ahead (the interval was shortened since): one interval from now.
    r.settings.set(
      LAST_TRUST_CHECK_SETTING,
      JSON.stringify({ at: 0, sequence: 1, error: null, failures: 0, next_at: r.clock.t + 100 * EVERY }),
    );
    expect(rig([1], { settings: r.settings, t: r.clock.t }).check.nextAt()).toBe(r.clock.t + EVERY);
  });

  it('status before any check, and an unreadable stored value', () => {
    expect(trustCheckStatus(undefined)).toEqual({
      trust_sequence: null,
      last_trust_check: null,
      last_trust_check_error: null,
      next_trust_check: null,
    });
    expect(readLastTrustCheck({ getSetting: () => '{not json' })).toBeUndefined();
  });
});

describe('the agent metrics of the trust check', () => {
  it('consecutive failures (0 once a check succeeded) and the kept sequence; nothing before a first check', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-trust-metrics-'));
    const state = openAgentState(dir);
    try {
      expect(renderAgentMetrics(state, 0)).not.toContain('sigil_agent_trust');
      state.setSetting(
        LAST_TRUST_CHECK_SETTING,
        JSON.stringify({ at: 1, sequence: null, error: 'issuer_unreachable: down', failures: 4, next_at: 2 }),
      );
      expect(renderAgentMetrics(state, 0)).toContain('\nsigil_agent_trust_check_consecutive_failures 4\n');
      state.setSetting(TRUST_SEQUENCE_SETTING, '1700000000');
      state.setSetting(
        LAST_TRUST_CHECK_SETTING,
        JSON.stringify({ at: 3, sequence: 1700000000, error: null, failures: 0, next_at: 4 }),
      );
      const text = renderAgentMetrics(state, 0);
      expect(text).toContain('\nsigil_agent_trust_check_consecutive_failures 0\n');
      expect(text).toContain('\nsigil_agent_trust_sequence 1700000000\n');
    } finally {
      state.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('trust_check_every in agent.yaml', () => {
  const base =
    'issuer: https://issuer.example:8443\nca_pin: sha256:' +
    '0'.repeat(64) +
    '\ndata_dir: /tmp/x\njoin: { method: token, token: t }\n';
  it('defaults to five minutes; takes 30 s to 1 h', () => {
    expect(parseAgentConfig(base, 'a.yaml').trustCheckEveryS).toBe(TRUST_CHECK_DEFAULT_S);
    expect(TRUST_CHECK_DEFAULT_S).toBe(300);
    expect(parseAgentConfig(base + 'trust_check_every: 30s\n', 'a.yaml').trustCheckEveryS).toBe(30);
    expect(parseAgentConfig(base + 'trust_check_every: 1h\n', 'a.yaml').trustCheckEveryS).toBe(3600);
  });
  it.each(['10s', '2h'])('refuses %s with the bounds', (v) => {
    let err: unknown;
    try {
      parseAgentConfig(base + `trust_check_every: ${v}\n`, 'a.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SigilError);
    expect(err).toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining('trust_check_every must be between 30s and 60m'),
    });
  });
});

describe('TrustCheck.runOnePass (`agent run --once`)', () => {
  it('checks when never made (a daemon would wait), then only when due', async () => {
    const r = rig([3]);
    expect(r.check.nextAt()).toBeGreaterThan(1_000_000); // the daemon's first-start delay
    expect(await r.check.runOnePass()).toBe(true);
    expect(r.asked()).toBe(1);
    expect(await r.check.runOnePass()).toBe(false);
    expect(r.asked()).toBe(1);
    r.clock.t = r.check.nextAt();
    await r.check.runOnePass();
    expect(r.asked()).toBe(2);
  });

  it('a failure: logged at debug only (the pass prints its one line), retried after the whole interval', async () => {
    const r = rig([new SigilError('issuer_unreachable', 'cannot reach the issuer')]);
    expect(await r.check.runOnePass()).toBe(false);
    expect(r.logs.filter((l) => l.level === 'warn')).toEqual([]);
    expect(r.logs.some((l) => l.level === 'debug' && /could not check/.test(l.msg))).toBe(true);
    expect(r.check.nextAt()).toBe(1_000_000 + EVERY); // not the daemon's 30 s
    expect(readLastTrustCheck({ getSetting: (k) => r.settings.get(k) })).toMatchObject({
      error: expect.stringMatching(/^issuer_unreachable/),
    });
  });
});
