/**
 * koffi, the FFI every file in native/ reaches C through, and the one way a shared library is
 * opened here: by its soname (the dynamic loader's search path, as `ldconfig -p` shows it), with
 * the Debian package that ships it in the error when it is not there.
 *
 * A synchronous require, on first use and never at import time: a Sigil that never touches a
 * TCTI or a Unix-socket peer must not need either, and peer-credentials.ts runs inside a
 * connection handler. Node caches the module and the dynamic loader refcounts libraries, so
 * loading again is cheap and nothing here is kept between calls.
 */
import { createRequire } from 'node:module';
import type * as Koffi from 'koffi';
import { NativeError } from './errors.js';

export type KoffiModule = typeof Koffi;
export type KoffiLibrary = Koffi.IKoffiLib;
export type KoffiFunction = Koffi.KoffiFunction;
export type KoffiType = Koffi.IKoffiCType;

export function requireKoffi(purpose: string): KoffiModule {
  try {
    return createRequire(import.meta.url)('koffi') as KoffiModule;
  } catch (err) {
    throw new NativeError('library_missing', `${purpose} needs the koffi package (npm install koffi)`, {
      library: 'koffi',
      cause: err,
    });
  }
}

/** A library the code cannot work without; `install` says what provides it (a Debian package and alternatives). */
export function loadLibrary(koffi: KoffiModule, soname: string, install: string): KoffiLibrary {
  try {
    return koffi.load(soname);
  } catch (err) {
    throw new NativeError('library_missing', `cannot load ${soname}: install ${install}`, {
      library: soname,
      cause: err,
    });
  }
}

/** A library that only improves something (messages, diagnostics): undefined when absent. */
export function loadOptionalLibrary(koffi: KoffiModule, soname: string): KoffiLibrary | undefined {
  try {
    return koffi.load(soname);
  } catch {
    return undefined;
  }
}
