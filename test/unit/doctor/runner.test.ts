import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { formatReport, runChecks } from '../../../src/doctor/runner.js';
import { fail, ok, warn, type Check } from '../../../src/doctor/types.js';

describe('doctor runner', () => {
  it('reports in the given order, never throws, and turns a crash into fail … internal', async () => {
    let aborted = false;
    const checks: Array<Check<null>> = [
      { name: 'fine', run: () => ok('all good') },
      {
        name: 'slow',
        timeoutMs: 50,
        run: (_ctx, signal) =>
          new Promise((resolve) => {
            signal.addEventListener('abort', () => ((aborted = true), resolve(ok('too late'))));
          }),
      },
      {
        name: 'crash',
        run: () => {
          throw new TypeError('x is undefined');
        },
      },
      { name: 'coded', run: async () => Promise.reject(new SigilError('tpm_unavailable', 'no TPM')) },
      { name: 'meh', run: () => warn('could be better', 'do this') },
    ];
    const r = await runChecks(checks, null);
    expect(r.ok).toBe(false);
    expect(r.checks.map((c) => [c.name, c.status])).toEqual([
      ['fine', 'ok'],
      ['slow', 'fail'],
      ['crash', 'fail'],
      ['coded', 'fail'],
      ['meh', 'warn'],
    ]);
    expect(aborted).toBe(true);
    expect(r.checks[1]!.detail).toContain('did not finish within 0.05 s');
    expect(r.checks[2]!.detail).toBe('internal: x is undefined');
    expect(r.checks[3]!.detail).toBe('tpm_unavailable: no TPM');
    expect(r.checks[0]!.fix).toBeNull();
    expect(r.checks[4]!.fix).toBe('do this');
  });

  it('warnings alone keep the report ok; the text form is one aligned line per check', async () => {
    const r = await runChecks<null>(
      [
        { name: 'a', run: () => ok('fine') },
        { name: 'longer', run: () => warn('hmm', 'fix it') },
      ],
      null,
    );
    expect(r.ok).toBe(true);
    expect(formatReport(r)).toBe(
      'ok    a       fine\nwarn  longer  hmm — fix: fix it\ndoctor: no failures (2 checks, 0 fail, 1 warn)\n',
    );
    // OpenSSL's error stack ends in a newline: the text form still gives one line per check.
    const ml = await runChecks<null>([{ name: 'tls', run: () => fail('alert 116\n', 'add\n  bootstrap:') }], null);
    expect(formatReport(ml)).toBe(
      'fail  tls  alert 116 — fix: add bootstrap:\ndoctor: failures found (1 checks, 1 fail, 0 warn)\n',
    );
    const f = await runChecks<null>([{ name: 'x', run: () => fail('broken', 'chmod 700 /d') }], null);
    expect(f.ok).toBe(false);
    expect(formatReport(f)).toContain('fail  x  broken — fix: chmod 700 /d\ndoctor: failures found');
  });
});
