/**
 * The issuer's continuous-attestation rules that need no TPM (server/ops/attestation.ts,
 * join/tpm/rule.ts, attest/binding.ts, server/crl): the renewal age gate, the binding's domain
 * separation, the rule's policy fields and bounds, which instances the CRL lists and which audit
 * rows make the CRL publisher look again. The quote checks themselves run against a real swtpm in
 * test/unit/tpm/continuous-attestation.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { attestationBinding, renewalBinding } from '../../../src/attest/binding.js';
import { validateJoinRule } from '../../../src/join/server-methods.js';
import { changesRevocation } from '../../../src/server/crl/publisher.js';
import { ATTESTATION_FAILED_INSTANCES, LOCKED_INSTANCES } from '../../../src/server/crl/revoked.js';
import {
  attestationAuditDetails,
  checkAttestationAge,
  diffText,
  type AttestationPolicy,
} from '../../../src/server/ops/attestation.js';
import type { InstanceRecord } from '../../../src/server/store/types.js';

const NOW = 1_800_000_000_000;
const inst = (facts: Record<string, unknown>, locked = false): InstanceRecord => ({
  id: 'tpm-1',
  bot: 'gw',
  joinMethod: 'tpm',
  spiffeId: 'spiffe://example.org/bot/gw/tpm-1',
  generation: 2,
  locked,
  lockReason: null,
  facts,
  keyStorage: 'tpm',
  exportable: false,
  createdAt: 0,
  updatedAt: 0,
  lastSeenAt: 0,
  currentSerial: null,
  currentNotAfter: null,
});
const policy = (maxAgeMs?: number): AttestationPolicy => ({ rule: 'attested', onFailure: 'refuse', maxAgeMs });
const codeOf = (f: () => void): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
};

describe('checkAttestationAge (a renewal without a quote of its own)', () => {
  const good = { attestation: { ok: true, at: NOW - 60_000 }, last_good_attestation_at: NOW - 60_000 };

  it('without max_attestation_age every renewal must attest: attestation_required', () => {
    expect(codeOf(() => checkAttestationAge(inst(good), policy(), NOW))).toBe('attestation_required');
  });

  it('passes while the last good attestation is at most max_attestation_age old', () => {
    expect(codeOf(() => checkAttestationAge(inst(good), policy(3600_000), NOW))).toBeUndefined();
    expect(codeOf(() => checkAttestationAge(inst(good), policy(60_000), NOW))).toBeUndefined();
  });

  it('older, or never: attestation_stale', () => {
    expect(codeOf(() => checkAttestationAge(inst(good), policy(59_999), NOW))).toBe('attestation_stale');
    expect(codeOf(() => checkAttestationAge(inst({ attestation: { ok: true } }), policy(3600_000), NOW))).toBe(
      'attestation_stale',
    );
  });

  it('a standing failure refuses with its check, however recent the last good one', () => {
    const failed = { ...good, attestation: { ok: false, check: 'pcr_mismatch', message: 'PCR 16 …' } };
    expect(codeOf(() => checkAttestationAge(inst(failed), policy(3600_000), NOW))).toBe('pcr_mismatch');
  });
});

describe('attestationBinding', () => {
  it('differs by op, request id and extra, and is not a concatenation (fields are length-prefixed)', () => {
    const b = attestationBinding('renew', 'req-1', Buffer.from('k'));
    expect(b).toHaveLength(32);
    expect(attestationBinding('attest', 'req-1', Buffer.from('k')).equals(b)).toBe(false);
    expect(attestationBinding('renew', 'req-2', Buffer.from('k')).equals(b)).toBe(false);
    expect(attestationBinding('renew', 'req-1', Buffer.from('j')).equals(b)).toBe(false);
    expect(
      attestationBinding('renew', 'req-1k', Buffer.alloc(0)).equals(
        attestationBinding('renew', 'req-1', Buffer.from('k')),
      ),
    ).toBe(false);
    expect(renewalBinding('req-1', Buffer.from('spki')).equals(renewalBinding('req-1', Buffer.from('spkj')))).toBe(
      false,
    );
  });
});

describe('tpm rule: on_attestation_failure and max_attestation_age', () => {
  const block = (extra: Record<string, unknown>) => ({
    method: 'tpm',
    bot: 'gw',
    tpm: { ek_ca_files: ['/etc/ca.pem'], firmware_profiles: ['lab-gateway-v1'], ...extra },
  });
  it('accepts refuse or lock and a bounded duration', () => {
    expect(validateJoinRule('r', block({ on_attestation_failure: 'lock', max_attestation_age: '1h' }))).toMatchObject({
      on_attestation_failure: 'lock',
      max_attestation_age: 3600,
    });
  });
  it('refuses another policy, a duration out of bounds, and the fields without firmware_profiles', () => {
    expect(() => validateJoinRule('r', block({ on_attestation_failure: 'ignore' }))).toThrow();
    expect(() => validateJoinRule('r', block({ max_attestation_age: '30s' }))).toThrow(/between 1m and 30d/);
    expect(() => validateJoinRule('r', block({ max_attestation_age: '31d' }))).toThrow(/between 1m and 30d/);
    expect(() =>
      validateJoinRule('r', {
        method: 'tpm',
        bot: 'gw',
        tpm: { ek_ca_files: ['/etc/ca.pem'], on_attestation_failure: 'lock' },
      }),
    ).toThrow(/need firmware_profiles/);
  });
});

describe('the CRL: attestation-failed instances, and the rows that change it', () => {
  const stores = (list: InstanceRecord[]) => ({ instances: { list: async () => list } }) as never;
  it('lists an instance whose last attestation failed without locking it; a lock is listed as a lock', async () => {
    const failed = inst({ attestation: { ok: false, check: 'pcr_mismatch' } });
    const lockedFail = {
      ...inst({ attestation: { ok: false, check: 'pcr_mismatch', locked: true } }, true),
      id: 'tpm-2',
    };
    const fine = { ...inst({ attestation: { ok: true } }), id: 'tpm-3' };
    const listed = await ATTESTATION_FAILED_INSTANCES.instances(stores([failed, lockedFail, fine]));
    expect(listed.map((x) => [x.inst.id, x.cause])).toEqual([['tpm-1', 'attestation failed: pcr_mismatch']]);
    expect((await LOCKED_INSTANCES.instances(stores([failed, lockedFail, fine]))).map((x) => x.inst.id)).toEqual([
      'tpm-2',
    ]);
  });

  it('an attestation that failed or recovered makes the publisher look again; a routine one does not', () => {
    const rec = { attestation: { ok: true } };
    expect(
      changesRevocation({ action: 'renew', outcome: 'refused', code: 'pcr_mismatch', details: { attestation: {} } }),
    ).toBe(true);
    expect(
      changesRevocation({
        action: 'renew',
        outcome: 'ok',
        code: null,
        details: { ...rec, attestation_recovered: true },
      }),
    ).toBe(true);
    expect(changesRevocation({ action: 'renew', outcome: 'ok', code: null, details: rec })).toBe(false);
    expect(changesRevocation({ action: 'renew', outcome: 'refused', code: 'pcr_mismatch', details: {} })).toBe(false);
  });

  it('audit details carry the record, the diff, and recovery after a failure', () => {
    const diff = [{ bank: 'sha256', pcr: 16, expected: ['00'], got: 'ab' }];
    expect(
      attestationAuditDetails({ at: 1, ok: false, via: 'renew', profile: null, diff, locked: true }, undefined),
    ).toEqual({
      attestation: { at: 1, ok: false, via: 'renew', profile: null, diff, locked: true },
      pcr_diff: diff,
      locked: true,
    });
    expect(attestationAuditDetails({ at: 2, ok: true, via: 'renew', profile: 'p' }, { ok: false })).toMatchObject({
      attestation_recovered: true,
    });
    expect(diffText(diff)).toBe('sha256:16 expected 00 got ab');
  });
});
