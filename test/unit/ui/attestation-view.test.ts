import { describe, expect, it } from 'vitest';
import { attestationOfAuditDetails, readAttestation } from '../../../src/server/attestation-record.js';

describe('attestation record as the fleet view reads it', () => {
  it('reads the record continuous attestation writes', () => {
    const a = readAttestation({
      at: 1000,
      ok: false,
      via: 'renew',
      profile: 'fw',
      check: 'pcr_mismatch',
      message: 'm',
      diff: [{ bank: 'sha256', pcr: 7, expected: ['aa', 'bb'], got: 'cc' }],
      reset_count: 3,
      restart_count: 1,
      rebooted: true,
    });
    expect(a).toEqual({
      at: 1000,
      ok: false,
      via: 'renew',
      profile: 'fw',
      check: 'pcr_mismatch',
      message: 'm',
      diff: [{ bank: 'sha256', pcr: 7, expected: ['aa', 'bb'], got: 'cc' }],
      resetCount: 3,
      restartCount: 1,
      rebooted: true,
    });
  });

  it('turns wrong types into "absent" and bounds what a hostile record can make the page show', () => {
    expect(readAttestation({ ok: 'false' })).toBeUndefined();
    expect(readAttestation([])).toBeUndefined();
    expect(readAttestation(null)).toBeUndefined();
    const a = readAttestation({
      ok: false,
      at: '2026-12-05T04:00:00Z',
      check: 42,
      message: 'x'.repeat(5000),
      diff: [
        ...Array.from({ length: 500 }, (_, i) => ({
          bank: 'sha256',
          pcr: i,
          expected: Array(100).fill('e'),
          got: 'g',
        })),
      ],
    })!;
    expect(a.at).toBe(Date.parse('2026-12-05T04:00:00Z'));
    expect(a.check).toBeNull();
    expect(a.message).toHaveLength(1000);
    expect(a.diff).toHaveLength(64);
    expect(a.diff[0]!.expected).toHaveLength(16);
    expect(readAttestation({ ok: true, diff: [null, { pcr: 'x' }, { pcr: 1, expected: [1, 'a'] }] })!.diff).toEqual([
      { bank: '?', pcr: 1, expected: ['a'], got: '?' },
    ]);
  });

  it('finds the record in an audit row: details.attestation or the details themselves', () => {
    expect(attestationOfAuditDetails({ attestation: { ok: true } })?.ok).toBe(true);
    expect(attestationOfAuditDetails({ ok: false, check: 'c' })?.check).toBe('c');
    expect(attestationOfAuditDetails({ message: 'no record' })).toBeUndefined();
  });
});
