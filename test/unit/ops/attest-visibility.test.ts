/**
 * What an operator sees of attestations (issue #16): the issuer's metrics computed from the
 * instances' facts (src/server/metrics/attestation-metrics.ts), `ctl instances show`'s view and
 * text (src/server/admin/attestation-view.ts, src/cli/attestation-text.ts), and the alert rules
 * in docs/alerts.yaml, which must parse and name metrics the issuer exports.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { attestationLines } from '../../../src/cli/attestation-text.js';
import { attestationView } from '../../../src/server/admin/attestation-view.js';
import {
  AttestationSampler,
  attestationSeries,
  MIN_SAMPLE_MS,
} from '../../../src/server/metrics/attestation-metrics.js';
import { createIssuerMetrics } from '../../../src/server/metrics/issuer-metrics.js';
import type { InstanceRecord, Stores } from '../../../src/server/store/types.js';

const NOW = 10_000_000_000;

function inst(over: Partial<InstanceRecord> & { facts?: Record<string, unknown> }): InstanceRecord {
  return {
    id: 'i',
    bot: 'gw',
    joinMethod: 'tpm',
    spiffeId: 'spiffe://x/bot/gw/i',
    generation: 1,
    locked: false,
    lockReason: null,
    facts: {},
    keyStorage: 'tpm',
    exportable: false,
    createdAt: NOW - 7_200_000,
    updatedAt: NOW,
    lastSeenAt: NOW,
    currentSerial: '01',
    currentNotAfter: NOW + 3_600_000,
    ...over,
  };
}
const good = (ageS: number) => ({
  attestation: { ok: true, at: NOW - ageS * 1000 },
  last_good_attestation_at: NOW - ageS * 1000,
});

describe('sigil_attestation_age_seconds and sigil_attestation_failing_instances', () => {
  it('are the oldest good attestation and the failing count per bot, over live attesting instances', () => {
    const s = attestationSeries(
      [
        inst({ id: 'a', facts: good(60) }),
        inst({ id: 'b', facts: good(900) }),
        // Failed since its last good one, 20 minutes ago.
        inst({ id: 'c', facts: { attestation: { ok: false }, last_good_attestation_at: NOW - 1_200_000 } }),
        // Never attested well: as old as the instance (2 h).
        inst({ id: 'd', bot: 'cams', facts: { attestation: { ok: false } } }),
        // Not counted: locked, expired, gone, not attesting.
        inst({ id: 'e', locked: true, facts: good(99_999) }),
        inst({ id: 'f', currentNotAfter: NOW - 1, facts: good(99_999) }),
        inst({ id: 'g', currentNotAfter: null, facts: good(99_999) }),
        inst({ id: 'h', bot: 'tokens', facts: {} }),
      ],
      NOW,
    );
    expect(s.age).toEqual([
      { labels: { bot: 'cams' }, value: 7200 },
      { labels: { bot: 'gw' }, value: 1200 },
    ]);
    expect(s.failing).toEqual([
      { labels: { bot: 'cams' }, value: 1 },
      { labels: { bot: 'gw' }, value: 1 },
    ]);
  });

  it('list the instances at most once per MIN_SAMPLE_MS, and both gauges come from one listing', async () => {
    const clock = { t: NOW };
    let listings = 0;
    const list = async () => {
      listings++;
      return [inst({ facts: good(30) })];
    };
    const sampler = new AttestationSampler(list, () => clock.t);
    await Promise.all([sampler.sample(), sampler.sample()]);
    expect(listings).toBe(1);
    clock.t += MIN_SAMPLE_MS - 1;
    await sampler.sample();
    expect(listings).toBe(1);
    clock.t += 1;
    expect((await sampler.sample()).age[0]!.value).toBe(30 + MIN_SAMPLE_MS / 1000);
    expect(listings).toBe(2);

    const stores = {
      instances: { list: async () => (listings++, [inst({ facts: good(45) })]) },
      certificates: { expiringBefore: async () => [] },
    } as unknown as Stores;
    listings = 0;
    const m = createIssuerMetrics(stores, () => clock.t);
    m.attestationFailures.inc({ check: 'pcr_mismatch', via: 'attest' });
    const text = await m.registry.scrape();
    expect(text).toContain(`sigil_attestation_age_seconds{bot="gw"} ${45 + MIN_SAMPLE_MS / 1000}`);
    expect(text).toContain('sigil_attestation_failing_instances{bot="gw"} 0');
    expect(text).toContain('sigil_attestation_failures_total{check="pcr_mismatch",via="attest"} 1');
    expect(listings).toBe(1);
  });
});

describe('instances show: the last attestation', () => {
  const facts = {
    attestation: {
      at: NOW,
      ok: false,
      via: 'attest',
      profile: 'lab-v1',
      check: 'pcr_mismatch',
      message: 'PCR 16 differs',
      diff: [{ bank: 'sha256', pcr: 16, expected: ['a'.repeat(64)], got: 'b'.repeat(64) }],
      reset_count: 4,
      restart_count: 1,
      rebooted: true,
    },
    last_good_attestation_at: NOW - 600_000,
  };

  it('is read from the facts, every field checked for its type', () => {
    expect(attestationView({})).toBeNull();
    expect(attestationView(facts)).toEqual({
      at: new Date(NOW).toISOString(),
      result: 'refused',
      via: 'attest',
      profile: 'lab-v1',
      check: 'pcr_mismatch',
      message: 'PCR 16 differs',
      pcr_diff: [{ bank: 'sha256', pcr: 16, expected: ['a'.repeat(64)], got: 'b'.repeat(64) }],
      reset_count: 4,
      restart_count: 1,
      rebooted: true,
      last_good_at: new Date(NOW - 600_000).toISOString(),
    });
    // A hand-edited or foreign record: shown as far as it is well-formed.
    expect(
      attestationView({ attestation: { ok: 'yes', at: 'x', diff: [{ pcr: 'x' }, null, { pcr: 7 }] } }),
    ).toMatchObject({
      result: 'refused',
      at: null,
      pcr_diff: [{ bank: '?', pcr: 7, expected: [], got: '?' }],
    });
  });

  it('is printed with the check, each differing PCR and the boot facts', () => {
    const text = attestationLines(attestationView(facts)).join('\n');
    expect(text).toBe(
      [
        `attestation: refused at ${new Date(NOW).toISOString()} via attest, profile lab-v1`,
        '  check:     pcr_mismatch — PCR 16 differs',
        `  pcr sha256:16 expected ${'a'.repeat(16)}…, got ${'b'.repeat(16)}…`,
        '  boot:      reset_count 4, restart_count 1, rebooted yes',
        `  last good: ${new Date(NOW - 600_000).toISOString()}`,
      ].join('\n'),
    );
    expect(attestationLines(null)[0]).toMatch(/^attestation: none/);
  });
});

describe('docs/alerts.yaml', () => {
  it('parses, and its attestation rules use metrics the issuer exports', async () => {
    const doc = parseYaml(readFileSync(new URL('../../../docs/alerts.yaml', import.meta.url), 'utf8')) as {
      groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
    };
    const rules = Object.fromEntries(doc.groups.flatMap((g) => g.rules).map((r) => [r.alert, r.expr]));
    expect(rules['SigilAttestationStale']).toContain('sigil_attestation_age_seconds');
    expect(rules['SigilAttestationFailed']).toContain('sigil_attestation_failures_total');
    const stores = {
      instances: { list: async () => [] },
      certificates: { expiringBefore: async () => [] },
    } as unknown as Stores;
    const text = await createIssuerMetrics(stores, () => NOW).registry.scrape();
    for (const name of ['sigil_attestation_age_seconds', 'sigil_attestation_failures_total'])
      expect(text).toContain(`# TYPE ${name} `);
  });
});
