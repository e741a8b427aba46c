/**
 * `sigil doctor`'s TPM check when the TCTI goes through libtss2-tctildr: a missing loader is
 * reported as the package to install (native/check.ts), not as "is tabrmd running?".
 */
import { describe, expect, it, vi } from 'vitest';
import type { NativeLibraryStatus } from '../../../native/check.js';
import { tpmCheck } from '../../../src/doctor/agent/tpm.js';
import type { AgentDoctorContext } from '../../../src/doctor/agent/context.js';

const loader = vi.hoisted(() => ({ present: true }));
vi.mock('#native/check.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../native/check.js')>();
  return {
    ...real,
    tctiLoaderStatus: (): NativeLibraryStatus => ({
      ...real.tctiLoaderStatus(),
      present: loader.present,
      detail: loader.present ? 'loads' : 'cannot open shared object file',
    }),
  };
});

const ctx = { onClose: () => undefined } as unknown as AgentDoctorContext;
const run = (tcti: string) => tpmCheck({ tcti, why: 'join.method tpm' }).run(ctx, new AbortController().signal);

describe('doctor tpm check: the TCTI loader', () => {
  it('a TCTI through the loader, loader missing: fail naming the Debian package', async () => {
    loader.present = false;
    const r = await run('mssim:host=127.0.0.1,port=1');
    expect(r.status).toBe('fail');
    expect(r.detail).toContain('libtss2-tctildr.so.0 is missing');
    expect(r.fix).toContain('libtss2-tctildr0');
  });

  it('loader present but the TCTI does not answer: the usual advice', async () => {
    loader.present = true;
    const r = await run('mssim:host=127.0.0.1,port=1');
    expect(r.status).toBe('fail');
    expect(r.fix).toContain('tpm2-abrmd running?');
  });

  it('swtpm: does not use the loader, so its absence is not blamed', async () => {
    loader.present = false;
    const r = await run('swtpm:host=127.0.0.1,port=1');
    expect(r.status).toBe('fail');
    expect(r.fix).toContain('start the TPM (simulator)');
  });
});
