/**
 * The interval attestation's schedule (src/agent/attest-schedule.ts) on an injected clock: when it
 * is due, what a refusal and a carrier failure do to the next time, what survives a restart, and
 * what `sigil agent status` shows of it. No timers: the clock is a number the test moves.
 */
import { describe, expect, it } from 'vitest';
import type { AttestOutcome } from '../../../src/agent/attest-client.js';
import {
  AttestSchedule,
  LAST_ATTEST_SETTING,
  nextAttestAt,
  readLastAttest,
} from '../../../src/agent/attest-schedule.js';
import { parseAgentConfig } from '../../../src/agent/config.js';
import { attestationStatus } from '../../../src/agent/status.js';
import { RETRY_CAP_MS } from '../../../src/agent/schedule.js';

const EVERY = 600_000;

function rig(
  outcomes: Array<(at: number) => AttestOutcome>,
  opts: { rand?: number; settings?: Map<string, string>; t?: number } = {},
) {
  const clock = { t: opts.t ?? 1_000_000 };
  const settings = opts.settings ?? new Map<string, string>();
  const logs: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = [];
  const log = (level: string) => (fields: Record<string, unknown>, msg: string) => logs.push({ level, fields, msg });
  let calls = 0;
  const schedule = new AttestSchedule({
    everyMs: EVERY,
    now: () => clock.t,
    rand: () => opts.rand ?? 0.5,
    state: { getSetting: (k) => settings.get(k), setSetting: (k, v) => void settings.set(k, v) },
    log: { info: log('info'), warn: log('warn'), debug: log('debug') } as never,
    attempt: async () => outcomes[Math.min(calls++, outcomes.length - 1)]!(clock.t),
  });
  return { clock, settings, logs, schedule, calls: () => calls };
}

const ok = (at: number): AttestOutcome => ({ kind: 'ok', at, profile: 'lab-v1', transport: 'https x' });
const refused = (at: number): AttestOutcome => ({
  kind: 'refused',
  at,
  code: 'pcr_mismatch',
  message: 'PCR 16 differs; PCR diff: sha256:16 expected aa got bb',
  retryable: false,
  transport: 'mqtt y',
});
const unreachable = (at: number): AttestOutcome => ({
  kind: 'failed',
  at,
  code: 'issuer_unreachable',
  message: 'connect ECONNREFUSED',
  retryable: true,
  transport: 'https x',
});

describe('AttestSchedule', () => {
  it('attests first within a tenth of the interval, then every interval with ±10% jitter', async () => {
    const r = rig([ok]);
    const start = r.clock.t;
    expect(r.schedule.nextAt()).toBe(start + EVERY * 0.1 * 0.5);
    expect(await r.schedule.runIfDue()).toBeUndefined();
    expect(r.calls()).toBe(0);
    r.clock.t = r.schedule.nextAt();
    expect(await r.schedule.runIfDue()).toMatchObject({ kind: 'ok' });
    expect(r.calls()).toBe(1);
    expect(r.schedule.nextAt()).toBe(r.clock.t + EVERY);
    expect(nextAttestAt(0, EVERY, () => 0)).toBe(EVERY * 0.9);
    expect(nextAttestAt(0, EVERY, () => 1)).toBe(EVERY * 1.1);
  });

  it('after a refusal waits for the next interval and logs the failed check', async () => {
    const r = rig([refused, ok]);
    r.clock.t = r.schedule.nextAt();
    await r.schedule.runIfDue();
    expect(r.schedule.nextAt()).toBe(r.clock.t + EVERY);
    const warn = r.logs.find((l) => l.level === 'warn')!;
    expect(warn.fields).toMatchObject({ op: 'attest', check: 'pcr_mismatch' });
    expect(warn.msg).toContain('pcr_mismatch');
  });

  it('after a carrier failure retries with backoff, never later than the interval, and resets on success', async () => {
    const r = rig([unreachable, unreachable, ok], { rand: 1 });
    r.clock.t = r.schedule.nextAt();
    await r.schedule.runNow();
    const first = r.schedule.nextAt() - r.clock.t;
    expect(first).toBeLessThanOrEqual(1_000);
    r.clock.t = r.schedule.nextAt();
    await r.schedule.runNow();
    expect(r.schedule.nextAt() - r.clock.t).toBe(2_000);
    expect(readLastAttest({ getSetting: (k) => r.settings.get(k) })!.failures).toBe(2);
    r.clock.t = r.schedule.nextAt();
    await r.schedule.runNow();
    expect(readLastAttest({ getSetting: (k) => r.settings.get(k) })!.failures).toBe(0);
    expect(r.schedule.nextAt() - r.clock.t).toBe(EVERY * 1.1);
    // Many failures: the backoff is capped by the interval itself (here below RETRY_CAP_MS).
    const many = rig(
      Array.from({ length: 30 }, () => unreachable),
      { rand: 1 },
    );
    for (let i = 0; i < 30; i++) {
      many.clock.t = many.schedule.nextAt();
      await many.schedule.runNow();
    }
    expect(many.schedule.nextAt() - many.clock.t).toBe(Math.min(EVERY * 1.1, RETRY_CAP_MS));
  });

  it('keeps its schedule and last outcome across a restart; a skip keeps the last attestation on show', async () => {
    const r = rig([refused, (at) => ({ kind: 'skipped', at, reason: 'not_joined' })]);
    r.clock.t = r.schedule.nextAt();
    await r.schedule.runNow();
    const next = r.schedule.nextAt();
    const again = rig([ok], { settings: r.settings, t: r.clock.t + 5_000 });
    expect(again.schedule.nextAt()).toBe(next);
    r.clock.t += 1000;
    await r.schedule.runNow();
    const s = attestationStatus({ getSetting: (k) => r.settings.get(k) });
    expect(s).toMatchObject({
      last_attestation_result: 'refused',
      last_attestation_check: 'pcr_mismatch',
      last_attestation_error: expect.stringContaining('pcr_mismatch: PCR 16 differs'),
      last_attestation_profile: null,
    });
    expect(s.next_attestation).toBe(new Date(r.schedule.nextAt()).toISOString());
  });

  it('survives an attempt that throws, and says once that the method has no evidence', async () => {
    const r = rig([
      () => {
        throw new Error('boom');
      },
      (at) => ({ kind: 'skipped', at, reason: 'no_evidence' }),
    ]);
    expect(await r.schedule.runNow()).toMatchObject({ kind: 'failed', code: 'internal' });
    await r.schedule.runNow();
    await r.schedule.runNow();
    expect(r.logs.filter((l) => l.msg.includes('no boot-state evidence'))).toHaveLength(1);
  });

  it('shows nothing in status before the first attestation, and ignores an unreadable stored value', () => {
    expect(attestationStatus(undefined)).toEqual({
      last_attestation: null,
      last_attestation_result: null,
      last_attestation_check: null,
      last_attestation_error: null,
      last_attestation_profile: null,
      next_attestation: null,
    });
    expect(
      readLastAttest({ getSetting: (k) => (k === LAST_ATTEST_SETTING ? '{not json' : undefined) }),
    ).toBeUndefined();
  });
});

describe('attest_every in agent.yaml', () => {
  const base =
    'issuer: https://issuer.example:8443\nca_pin: sha256:' +
    '0'.repeat(64) +
    '\ndata_dir: /tmp/x\njoin: { method: token, token: t }\n';
  it('is off when absent, parsed as a duration, and bounded (at least 1m, at most 24h)', () => {
    expect(parseAgentConfig(base, 'agent.yaml').attestEveryS).toBeUndefined();
    expect(parseAgentConfig(base + 'attest_every: 10m\n', 'agent.yaml').attestEveryS).toBe(600);
    expect(parseAgentConfig(base + 'attest_every: 1m\n', 'agent.yaml').attestEveryS).toBe(60);
    expect(() => parseAgentConfig(base + 'attest_every: 59s\n', 'agent.yaml')).toThrow(
      /agent.yaml: attest_every must be between 1m and 24h \(got 59s\)/,
    );
    expect(() => parseAgentConfig(base + 'attest_every: 25h\n', 'agent.yaml')).toThrow(/attest_every must be between/);
    expect(() => parseAgentConfig(base + 'attest_every: often\n', 'agent.yaml')).toThrow(/attest_every/);
  });
});
