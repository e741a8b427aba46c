/** src/tpm/transport/tcti.ts turns native/'s "library missing" into config_invalid naming the package. */
import { describe, expect, it, vi } from 'vitest';
import { NativeError } from '../../../native/errors.js';

vi.mock('#native/tss2-tctildr.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../native/tss2-tctildr.js')>();
  class Absent {
    static load(): never {
      throw new NativeError('library_missing', `cannot load ${real.TCTILDR_SONAME}: install ${real.TCTILDR_INSTALL}`, {
        library: real.TCTILDR_SONAME,
      });
    }
  }
  return { ...real, Tss2TctiLdr: Absent };
});

describe('TctiTransport without libtss2-tctildr', () => {
  it('is a SigilError config_invalid that names the Debian package', async () => {
    const { TctiTransport } = await import('../../../src/tpm/transport/tcti.js');
    await expect(TctiTransport.open('mssim:host=127.0.0.1,port=2321')).rejects.toMatchObject({
      name: 'SigilError',
      code: 'config_invalid',
      message: expect.stringContaining('install the Debian package libtss2-tctildr0'),
    });
  });
});
