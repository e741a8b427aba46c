/**
 * native/: loading libraries, what a missing one says, and the library report `sigil doctor`
 * uses. The TCTI itself is exercised against swtpm in test/integration/tpm/transport.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { checkNativeLibraries, tctiLoaderStatus } from '../../../native/check.js';
import { NativeError } from '../../../native/errors.js';
import { loadLibrary, loadOptionalLibrary, requireKoffi } from '../../../native/koffi.js';
import { TCTILDR_INSTALL, TCTILDR_SONAME, Tss2TctiLdr } from '../../../native/tss2-tctildr.js';

describe('loading a library', () => {
  it('a missing one is NativeError library_missing naming what to install', () => {
    const koffi = requireKoffi('test');
    let err: unknown;
    try {
      loadLibrary(koffi, 'libsigil-absent.so.0', TCTILDR_INSTALL);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NativeError);
    expect(err).toMatchObject({ failure: 'library_missing', library: 'libsigil-absent.so.0' });
    expect((err as Error).message).toMatch(
      /^cannot load libsigil-absent\.so\.0: install the Debian package libtss2-tctildr0/,
    );
    expect(loadOptionalLibrary(koffi, 'libsigil-absent.so.0')).toBeUndefined();
  });

  it('the TCTI loader is declared once per process (koffi never frees what it declared)', async () => {
    const a = Tss2TctiLdr.load();
    expect(Tss2TctiLdr.load()).toBe(a);
    // A TCTI that cannot initialise answers a TSS2_RC, decoded by libtss2-rc when it is there.
    const r = await a.initialize('mssim:host=127.0.0.1,port=1');
    expect(r.context).toBeUndefined();
    expect(r.rc).not.toBe(0);
    expect(a.decodeRc(r.rc)).toContain(`0x${r.rc.toString(16)}`);
  });
});

describe('how src/ reaches native/', () => {
  it('"#native/…" (package.json "imports") is the native/ source under vitest: one module, one NativeError class', async () => {
    const viaImports = await import('#native/errors.js');
    expect(viaImports.NativeError).toBe(NativeError);
  });
});

describe('checkNativeLibraries', () => {
  it('reports koffi, the TPM libraries, SO_PEERCRED and each configured PKCS#11 module', () => {
    const report = checkNativeLibraries({ pkcs11Modules: ['/nonexistent/libsigil-pkcs11.so'] });
    expect(report.map((s) => s.library)).toEqual([
      'koffi',
      TCTILDR_SONAME,
      'libtss2-rc.so.0',
      'libc.so.6',
      '/nonexistent/libsigil-pkcs11.so',
    ]);
    expect(report[0]!.present).toBe(true);
    const missing = report.at(-1)!;
    expect(missing).toMatchObject({ present: false, purpose: expect.stringContaining('PKCS#11') });
    expect(missing.detail).toMatch(/No such file/);
    expect(tctiLoaderStatus()).toMatchObject({ library: TCTILDR_SONAME, install: TCTILDR_INSTALL });
  });
});
