/**
 * join/tpm/kept-state.ts markSent and fresh-evidence.ts acceptAttestation: in the steady state (no
 * reboot since the last renewal) a renewal's quote stores nothing and serializes nothing; whatever
 * differs from what the setting holds — new counters, or a state another writer stored meanwhile —
 * is written as before.
 */
import { describe, expect, it } from 'vitest';
import type { AgentSettings } from '../../../src/join/registry.js';
import { acceptAttestation } from '../../../src/join/tpm/fresh-evidence.js';
import { KeptTpmState, sameCounters, TPM_ATTESTATION_SETTING } from '../../../src/join/tpm/kept-state.js';

class CountingSettings implements AgentSettings {
  readonly m = new Map<string, string>();
  writes = 0;
  getSetting(k: string): string | undefined {
    return this.m.get(k);
  }
  setSetting(k: string, v: string): void {
    this.writes++;
    this.m.set(k, v);
  }
}

const SEL = [{ bank: 'sha256' as const, pcrs: [0, 7] }];
const c = (reset_count: number, restart_count = 0) => ({ reset_count, restart_count });
const stored = (s: CountingSettings): unknown => JSON.parse(s.getSetting(TPM_ATTESTATION_SETTING)!);

function setup(state: Record<string, unknown>): { s: CountingSettings; kept: KeptTpmState } {
  const s = new CountingSettings();
  s.m.set(TPM_ATTESTATION_SETTING, JSON.stringify(state));
  return { s, kept: new KeptTpmState() };
}

describe('markSent', () => {
  it('stores nothing when the state already has these counters as sent', () => {
    const { s, kept } = setup({ pcr_selection: SEL, accepted: c(4), sent: c(4) });
    kept.markSent(s, kept.attestation(s)!, c(4));
    expect(s.writes).toBe(0);
  });

  it('stores new counters (a reboot) as sent, keeping the rest', () => {
    const { s, kept } = setup({ pcr_selection: SEL, accepted: c(4), sent: c(4) });
    kept.markSent(s, kept.attestation(s)!, c(5, 1));
    expect(s.writes).toBe(1);
    expect(stored(s)).toEqual({ pcr_selection: SEL, accepted: c(4), sent: c(5, 1) });
    // The first quote after a join: nothing sent yet.
    const fresh = setup({ pcr_selection: SEL, accepted: c(4) });
    fresh.kept.markSent(fresh.s, fresh.kept.attestation(fresh.s)!, c(4));
    expect(fresh.s.writes).toBe(1);
    expect(stored(fresh.s)).toEqual({ pcr_selection: SEL, accepted: c(4), sent: c(4) });
  });

  it('writes when another writer changed the setting since the state was read (the stored text is the truth)', () => {
    const { s, kept } = setup({ pcr_selection: SEL, accepted: c(4), sent: c(4) });
    const st = kept.attestation(s)!;
    // E.g. a join stored a new selection and counters in between.
    s.m.set(TPM_ATTESTATION_SETTING, JSON.stringify({ pcr_selection: [{ bank: 'sha1', pcrs: [1] }], accepted: c(9) }));
    kept.markSent(s, st, c(4));
    expect(s.writes).toBe(1);
    expect(stored(s)).toEqual({ pcr_selection: SEL, accepted: c(4), sent: c(4) });
  });

  it('writes when handed a state that is not the one the setting parsed to', () => {
    const { s, kept } = setup({ pcr_selection: SEL, accepted: c(4), sent: c(4) });
    kept.attestation(s);
    kept.markSent(s, { pcr_selection: SEL, accepted: c(3), sent: c(4) }, c(4));
    expect(s.writes).toBe(1);
    expect(stored(s)).toEqual({ pcr_selection: SEL, accepted: c(3), sent: c(4) });
  });
});

describe('acceptAttestation', () => {
  it('stores nothing when the sent counters are accepted already; promotes them otherwise', () => {
    const steady = setup({ pcr_selection: SEL, accepted: c(4), sent: c(4) });
    acceptAttestation(steady.s, steady.kept);
    expect(steady.s.writes).toBe(0);
    const rebooted = setup({ pcr_selection: SEL, accepted: c(4), sent: c(5) });
    acceptAttestation(rebooted.s, rebooted.kept);
    expect(rebooted.s.writes).toBe(1);
    expect(stored(rebooted.s)).toEqual({ pcr_selection: SEL, accepted: c(5), sent: c(5) });
    const nothingSent = setup({ pcr_selection: SEL, accepted: c(4) });
    acceptAttestation(nothingSent.s, nothingSent.kept);
    expect(nothingSent.s.writes).toBe(0);
    const noneAccepted = setup({ pcr_selection: SEL, sent: c(2) });
    acceptAttestation(noneAccepted.s, noneAccepted.kept);
    expect(stored(noneAccepted.s)).toEqual({ pcr_selection: SEL, accepted: c(2), sent: c(2) });
  });

  it('sameCounters: both counters, and none only equals none', () => {
    expect(sameCounters(c(1, 2), c(1, 2))).toBe(true);
    expect(sameCounters(c(1, 2), c(1, 3))).toBe(false);
    expect(sameCounters(c(1, 2), c(2, 2))).toBe(false);
    expect(sameCounters(undefined, undefined)).toBe(true);
    expect(sameCounters(c(0, 0), undefined)).toBe(false);
    expect(sameCounters(undefined, c(0, 0))).toBe(false);
  });
});

describe('kept PCR values', () => {
  it('are offered only for the exact selection they were quoted over (the digest check is fresh-evidence.ts’s)', () => {
    const kept = new KeptTpmState();
    const v = [{ hash: 0x0b, pcr: 0, digest: new Uint8Array(32) }];
    expect(kept.lastPcrValues(SEL)).toBeUndefined();
    kept.keepPcrValues(SEL, v);
    expect(kept.lastPcrValues(SEL)).toBe(v);
    expect(kept.lastPcrValues([{ bank: 'sha256', pcrs: [0, 7, 16] }])).toBeUndefined();
    expect(kept.lastPcrValues([{ bank: 'sha1', pcrs: [0, 7] }])).toBeUndefined();
    // The values are this agent's, in memory: another method's memo has none.
    expect(new KeptTpmState().lastPcrValues(SEL)).toBeUndefined();
  });
});
