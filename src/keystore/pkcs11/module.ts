/**
 * Loading a PKCS#11 module (through pkcs11js) and reaching a token: one C_Initialize per
 * module per process, shared by every signer on it and finalised when the last one closes
 * (PKCS#11 v2.40 §5.4: C_Initialize twice is CKR_CRYPTOKI_ALREADY_INITIALIZED).
 *
 * pkcs11js is a native addon, loaded on first use so that agents with software or TPM keys
 * never load it.
 *
 * PIN handling: the PIN is read from a file or an environment variable right before C_Login
 * and never stored, logged or put in an error message. pkcs11js errors carry only the CKR_*
 * name and code, which is all this module passes on.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Pkcs11Js from 'pkcs11js';
import { SigilError, type ErrorCode } from '../../errors.js';

export type Pkcs11Lib = Pkcs11Js.PKCS11;
export type Handle = Pkcs11Js.Handle;
export type Pkcs11Template = Pkcs11Js.Template;
export type RsaPSS = Pkcs11Js.RsaPSS;
type Pkcs11Module = typeof Pkcs11Js;

let bindings: Pkcs11Module | undefined;

/** The pkcs11js module (constants, classes). */
export function pkcs11js(): Pkcs11Module {
  if (!bindings) {
    try {
      bindings = createRequire(import.meta.url)('pkcs11js') as Pkcs11Module;
    } catch (err) {
      throw new SigilError('keystore_unavailable', 'the pkcs11js native module cannot be loaded (npm ci builds it)', {
        cause: err,
      });
    }
  }
  return bindings;
}

/**
 * One PKCS#11 module as this process uses it: the initialised library while signers hold it, and
 * the PINs its tokens refused. The record outlives the library (finalised when the last signer
 * closes): a token counts wrong PINs whoever presents them and however often the module is
 * reloaded, so the refusal memory belongs to the module in the process, not to a signer, an
 * agent or a load — two agents in one process on one token must not each spend a try.
 */
interface ModuleRecord {
  lib: Pkcs11Lib | undefined;
  refs: number;
  /**
   * Whether this process initialised the module with CKF_OS_LOCKING_OK, so that it may be called
   * from a thread other than the event loop's (signatures are: see Pkcs11Signer.sign). False when
   * the module cannot lock (CKR_CANT_LOCK) or another component initialised it with flags we
   * cannot know; its calls then stay on the event loop, as they must.
   */
  threaded: boolean;
  /** Tags of refused PINs (see {@link pinTag}): HMACs under `pinTagKey`, never the PIN. */
  readonly refusedPins: Set<string>;
  readonly pinTagKey: Buffer;
}

const loaded = new Map<string, ModuleRecord>();

function recordOf(modulePath: string): ModuleRecord {
  let rec = loaded.get(modulePath);
  if (!rec)
    loaded.set(
      modulePath,
      (rec = { lib: undefined, refs: 0, threaded: false, refusedPins: new Set(), pinTagKey: randomBytes(32) }),
    );
  return rec;
}

/** Load and initialise `modulePath` (or share the already loaded instance). Pair with {@link releaseModule}. */
export function acquireModule(modulePath: string): Pkcs11Lib {
  const hit = loaded.get(modulePath);
  if (hit?.lib) {
    hit.refs++;
    return hit.lib;
  }
  if (!modulePath.startsWith('/'))
    throw new SigilError('config_invalid', `PKCS#11 module path must be absolute (got "${modulePath}")`);
  const P = pkcs11js();
  const lib = new P.PKCS11();
  try {
    lib.load(modulePath);
  } catch (err) {
    throw new SigilError(
      'config_invalid',
      `cannot load PKCS#11 module ${modulePath}: ${ckrName(err) ?? 'not a loadable PKCS#11 library'}`,
      { cause: err },
    );
  }
  const rec = recordOf(modulePath);
  rec.threaded = initialize(lib, modulePath);
  rec.lib = lib;
  rec.refs = 1;
  return lib;
}

/**
 * C_Initialize asking the module to use the operating system's locks (CK_C_INITIALIZE_ARGS with
 * CKF_OS_LOCKING_OK, PKCS#11 v2.40 §5.4): then it may be called from several threads, and a
 * signature can be made on a worker thread while the event loop goes on. A module that cannot
 * lock (CKR_CANT_LOCK) is initialised plainly, for single-threaded use. Returns whether threads
 * are allowed.
 */
function initialize(lib: Pkcs11Lib, modulePath: string): boolean {
  const P = pkcs11js();
  for (const options of [{ flags: P.CKF_OS_LOCKING_OK }, undefined]) {
    try {
      lib.C_Initialize(options);
      return options !== undefined;
    } catch (err) {
      const code = ckrCode(err);
      // Another component of this process initialised it, with flags we cannot know; share that
      // (and never finalise it), single-threaded.
      if (code === P.CKR_CRYPTOKI_ALREADY_INITIALIZED) return false;
      // CKR_CANT_LOCK is the spec's answer of a module that cannot lock; some older modules
      // refuse CK_C_INITIALIZE_ARGS they do not expect with CKR_ARGUMENTS_BAD instead.
      const refusedFlags = code === P.CKR_CANT_LOCK || code === P.CKR_ARGUMENTS_BAD;
      if (!refusedFlags || options === undefined) throw mapError(err, `initialising ${modulePath}`);
    }
  }
  return false;
}

/** Whether `modulePath`'s calls may be made off the event loop (see {@link ModuleRecord.threaded}). */
export function isModuleThreaded(modulePath: string): boolean {
  const rec = loaded.get(modulePath);
  return rec?.lib !== undefined && rec.threaded;
}

export function releaseModule(modulePath: string): void {
  const hit = loaded.get(modulePath);
  const lib = hit?.lib;
  if (!hit || !lib) return;
  if (--hit.refs > 0) return;
  hit.lib = undefined; // the record (and what its tokens refused) stays
  try {
    lib.C_Finalize();
  } catch {
    // Finalising is best effort: the process may be exiting, the token may be gone.
  }
  try {
    lib.close();
  } catch {
    // ignore
  }
}

/** Whether `modulePath` is loaded and initialised in this process (a signer holds it open). */
export function isModuleLoaded(modulePath: string): boolean {
  return loaded.get(modulePath)?.lib !== undefined;
}

/** The slot holding the token with CKA_LABEL-style label `label` (token labels are blank-padded to 32). */
export function findSlot(lib: Pkcs11Lib, label: string): Handle {
  const slots = lib.C_GetSlotList(true);
  const labels: string[] = [];
  for (const slot of slots) {
    const l = lib.C_GetTokenInfo(slot).label.replace(/[ \0]+$/, '');
    if (l === label) return slot;
    labels.push(l);
  }
  throw new SigilError(
    'config_invalid',
    `no PKCS#11 token labelled "${label}" (tokens present: ${
      labels
        .filter((l) => l)
        .map((l) => `"${l}"`)
        .join(', ') || 'none'
    })`,
  );
}

export interface PinSource {
  pinFile?: string;
  pinEnv?: string;
}

/** Read the user PIN. The value is returned to the caller for C_Login only. */
export function readPin(src: PinSource): string {
  if (src.pinFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(src.pinFile, 'utf8');
    } catch (err) {
      throw new SigilError(
        'config_invalid',
        `cannot read the PKCS#11 PIN file ${src.pinFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    const pin = text.replace(/\r?\n$/, '');
    if (pin.length === 0) throw new SigilError('config_invalid', `the PKCS#11 PIN file ${src.pinFile} is empty`);
    return pin;
  }
  if (src.pinEnv !== undefined) {
    const pin = process.env[src.pinEnv];
    if (pin === undefined || pin.length === 0)
      throw new SigilError('config_invalid', `the environment variable ${src.pinEnv} (PKCS#11 PIN) is not set`);
    return pin;
  }
  throw new SigilError(
    'config_invalid',
    'a PKCS#11 key needs pin_file or pin_env (the PIN is never taken from the command line or the config itself)',
  );
}

/**
 * A PIN a token refused, as an HMAC under the module record's random key (never the PIN). A
 * daemon retries failed renewals with backoff; a hardware token or HSM counts every wrong PIN
 * and locks itself after a few (PKCS#11 v2.40 CKF_USER_PIN_LOCKED), so the same wrong PIN is
 * never presented twice. Editing the PIN file (or variable) makes it a new PIN.
 */
function pinTag(rec: ModuleRecord, tokenLabel: string, pin: string): string {
  return createHmac('sha256', rec.pinTagKey).update(tokenLabel).update('\0').update(pin).digest('hex');
}

/**
 * Open an R/W session on `slot` of the module `modulePath` (loaded with {@link acquireModule})
 * and log the user in (already logged in by another session is fine).
 */
export function openSession(
  modulePath: string,
  lib: Pkcs11Lib,
  slot: Handle,
  pin: PinSource,
  tokenLabel: string,
): Handle {
  const rec = recordOf(modulePath);
  const P = pkcs11js();
  let session: Handle;
  try {
    session = lib.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  } catch (err) {
    throw mapError(err, `opening a session on token "${tokenLabel}"`);
  }
  let tried: string | undefined;
  try {
    const value = readPin(pin);
    tried = pinTag(rec, tokenLabel, value);
    if (rec.refusedPins.has(tried)) {
      throw new SigilError(
        'config_invalid',
        `not logging in to PKCS#11 token "${tokenLabel}": it refused this PIN before, and a token locks after a few wrong PINs (fix ${pin.pinFile ? `the PIN file ${pin.pinFile}` : `$${pin.pinEnv}`}; a changed PIN is tried again)`,
      );
    }
    lib.C_Login(session, P.CKU_USER, value);
  } catch (err) {
    if (ckrCode(err) !== P.CKR_USER_ALREADY_LOGGED_IN) {
      try {
        lib.C_CloseSession(session);
      } catch {
        // ignore
      }
      if (err instanceof SigilError) throw err;
      const name = ckrName(err);
      if (
        name === 'CKR_PIN_INCORRECT' ||
        name === 'CKR_PIN_LEN_RANGE' ||
        name === 'CKR_PIN_LOCKED' ||
        name === 'CKR_PIN_EXPIRED'
      ) {
        if (tried !== undefined) rec.refusedPins.add(tried);
        throw new SigilError(
          'config_invalid',
          `login to PKCS#11 token "${tokenLabel}" failed: ${name} (check ${pin.pinFile ? `the PIN file ${pin.pinFile}` : `$${pin.pinEnv}`})`,
        );
      }
      throw mapError(err, `logging in to token "${tokenLabel}"`);
    }
  }
  return session;
}

export function ckrCode(err: unknown): number | undefined {
  const P = bindings;
  if (P && err instanceof P.Pkcs11Error) return err.code;
  return undefined;
}

/** The CKR_* name of a pkcs11js error, never its native stack. */
export function ckrName(err: unknown): string | undefined {
  const P = bindings;
  if (P && err instanceof P.Pkcs11Error)
    return /^CKR_[A-Z0-9_]+$/.test(err.message) ? err.message : `CKR 0x${err.code.toString(16)}`;
  return undefined;
}

/** Errors a token returns when it went away or was reset: worth a retry later. */
const UNAVAILABLE = new Set([
  'CKR_DEVICE_REMOVED',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_MEMORY',
  'CKR_SESSION_COUNT',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
]);

export function mapError(err: unknown, doing: string): SigilError {
  if (err instanceof SigilError) return err;
  const name = ckrName(err);
  const code: ErrorCode = name !== undefined && UNAVAILABLE.has(name) ? 'keystore_unavailable' : 'keystore_error';
  return new SigilError(code, `PKCS#11 ${doing} failed: ${name ?? 'native error'}`, { cause: err });
}
