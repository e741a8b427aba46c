import { describe, expect, it } from 'vitest';
import { TPM_CC } from '../../../src/tpm/constants.js';
import { TPM_RC, TpmError, decodeRc, isTpmRc } from '../../../src/tpm/errors.js';
import { SigilError } from '../../../src/errors.js';

describe('TPM_RC decoding (Part 2 §6.6)', () => {
  it('format one: session, handle and parameter positions', () => {
    expect(decodeRc(0x98e)).toMatchObject({
      base: TPM_RC.AUTH_FAIL,
      formatOne: true,
      session: 1,
      name: 'TPM_RC_AUTH_FAIL',
    });
    expect(decodeRc(0x9a2)).toMatchObject({ base: TPM_RC.BAD_AUTH, session: 1 });
    expect(decodeRc(0x18b)).toMatchObject({ base: TPM_RC.HANDLE, handle: 1, name: 'TPM_RC_HANDLE' });
    expect(decodeRc(0x2d5)).toMatchObject({ base: TPM_RC.SIZE, parameter: 2 });
    expect(decodeRc(0x99d)).toMatchObject({ base: TPM_RC.POLICY_FAIL, session: 1, name: 'TPM_RC_POLICY_FAIL' });
    const plain = decodeRc(0x084);
    expect(plain.base).toBe(TPM_RC.VALUE);
    expect([plain.handle, plain.parameter, plain.session]).toEqual([undefined, undefined, undefined]);
  });

  it('format zero: errors, warnings, vendor and TPM 1.2 codes', () => {
    expect(decodeRc(0x100)).toMatchObject({
      base: TPM_RC.INITIALIZE,
      formatOne: false,
      warning: false,
      name: 'TPM_RC_INITIALIZE',
    });
    expect(decodeRc(0x902)).toMatchObject({ base: TPM_RC.OBJECT_MEMORY, warning: true, name: 'TPM_RC_OBJECT_MEMORY' });
    expect(decodeRc(0x922)).toMatchObject({ base: TPM_RC.RETRY, warning: true });
    expect(decodeRc(0x910)).toMatchObject({ name: 'TPM_RC_REFERENCE_H0' });
    expect(decodeRc(0x501)).toMatchObject({ vendor: true });
    expect(decodeRc(0x01e)).toMatchObject({ tpm12: true, name: 'TPM_RC_BAD_TAG' });
  });

  it('TpmError names the command and the decoded code; retryable for RETRY/YIELDED/TESTING', () => {
    const e = new TpmError(TPM_CC.Quote, 0x99d);
    expect(e).toBeInstanceOf(SigilError);
    expect(e.message).toBe('TPM2_Quote failed: TPM_RC_POLICY_FAIL in session 1 (rc 0x0000099d)');
    expect(e.code).toBe('tpm_error');
    expect(e.retryable).toBe(false);
    expect(new TpmError(TPM_CC.Sign, 0x922).retryable).toBe(true);
    expect(new TpmError(TPM_CC.Sign, 0x90a).retryable).toBe(true);
    expect(new TpmError(TPM_CC.Load, 0x902).code).toBe('tpm_unavailable');
  });

  it('isTpmRc compares canonical codes, whatever the position', () => {
    expect(isTpmRc(new TpmError(TPM_CC.Sign, 0x98e), TPM_RC.AUTH_FAIL)).toBe(true);
    expect(isTpmRc(new TpmError(TPM_CC.Sign, 0x98e), 0xa8e)).toBe(true); // AUTH_FAIL in session 2
    expect(isTpmRc(new TpmError(TPM_CC.Sign, 0x98e), TPM_RC.BAD_AUTH)).toBe(false);
    expect(isTpmRc(new Error('x'), TPM_RC.AUTH_FAIL)).toBe(false);
  });
});
