/**
 * Which native libraries this host has, for `sigil doctor` and for error messages: each one is
 * dlopen'ed (through koffi) the way the code that needs it would, and reported present or not
 * with what provides it. Loading runs no library code that matters — a PKCS#11 module is opened
 * but never C_Initialize'd, the TCTI loader initialises no TCTI.
 */
import { NativeError } from './errors.js';
import { requireKoffi, type KoffiModule } from './koffi.js';
import { LIBC_SONAME, PeerCredentialReader } from './peer-credentials.js';
import { TCTILDR_INSTALL, TCTILDR_SONAME, TSS2_RC_SONAME } from './tss2-tctildr.js';

const TCTILDR_PURPOSE = 'TPM TCTIs other than swtpm: and device: (mssim, tabrmd, …), or any with SIGIL_TPM_NATIVE=1';

export interface NativeLibraryStatus {
  /** A soname, a module path, or the koffi package. */
  library: string;
  /** What Sigil uses it for. */
  purpose: string;
  present: boolean;
  /** Why it is missing (the loader's message), or what was found. */
  detail: string;
  /** What provides it (a Debian package, an npm package). */
  install: string;
}

export interface NativeCheckOptions {
  /** PKCS#11 modules named by the configuration (agent `pkcs11.module`, x509 join key URIs). */
  pkcs11Modules?: readonly string[];
}

function koffiOrUndefined(): KoffiModule | undefined {
  try {
    return requireKoffi('Sigil');
  } catch {
    return undefined;
  }
}

function probe(koffi: KoffiModule | undefined, library: string, purpose: string, install: string): NativeLibraryStatus {
  if (!koffi)
    return { library, purpose, present: false, detail: 'koffi is missing, so nothing native can be loaded', install };
  try {
    koffi.load(library);
    return { library, purpose, present: true, detail: 'loads', install };
  } catch (err) {
    return { library, purpose, present: false, detail: (err as Error).message, install };
  }
}

/** koffi first (everything else is reached through it), then the TPM libraries, libc's SO_PEERCRED, the PKCS#11 modules. */
export function checkNativeLibraries(opts: NativeCheckOptions = {}): NativeLibraryStatus[] {
  const out: NativeLibraryStatus[] = [];
  let koffi: KoffiModule | undefined;
  try {
    koffi = requireKoffi('Sigil');
    out.push({
      library: 'koffi',
      purpose: 'calling C libraries (everything below)',
      present: true,
      detail: `koffi ${(koffi as { version?: string }).version ?? ''}`.trim(),
      install: 'npm install koffi',
    });
  } catch (err) {
    out.push({
      library: 'koffi',
      purpose: 'calling C libraries (everything below)',
      present: false,
      detail: (err as Error).message,
      install: 'npm install koffi',
    });
  }
  out.push(probe(koffi, TCTILDR_SONAME, TCTILDR_PURPOSE, TCTILDR_INSTALL));
  out.push(
    probe(
      koffi,
      TSS2_RC_SONAME,
      'readable TPM error codes from the TCTI loader (optional)',
      'the Debian package libtss2-rc0',
    ),
  );
  out.push(peerCredentialStatus(koffi));
  for (const module of opts.pkcs11Modules ?? []) {
    out.push(
      probe(
        koffi,
        module,
        'a PKCS#11 module named by the configuration',
        'the token vendor’s module (e.g. the Debian package softhsm2 for /usr/lib/softhsm/libsofthsm2.so)',
      ),
    );
  }
  return out;
}

function peerCredentialStatus(koffi: KoffiModule | undefined): NativeLibraryStatus {
  const base = {
    library: LIBC_SONAME,
    purpose: 'peer credentials of Workload API connections (SO_PEERCRED)',
    install: 'the C library (Debian: libc6); Linux only',
  };
  if (!koffi) return { ...base, present: false, detail: 'koffi is missing' };
  try {
    PeerCredentialReader.open();
    return { ...base, present: true, detail: `getsockopt(SO_PEERCRED) on ${process.platform}/${process.arch}` };
  } catch (err) {
    return { ...base, present: false, detail: err instanceof NativeError ? err.message : String(err) };
  }
}

/** The TCTI loader alone (what a TCTI other than swtpm:/device: needs). */
export function tctiLoaderStatus(): NativeLibraryStatus {
  const koffi = koffiOrUndefined();
  return probe(koffi, TCTILDR_SONAME, TCTILDR_PURPOSE, TCTILDR_INSTALL);
}
