/**
 * libtss2-tctildr, the tpm2-tss TCTI loader (Debian: libtss2-tctildr0), through koffi. It opens
 * any TCTI — mssim, tabrmd, swtpm, device, cmd, … — named by a tpm2-tools configuration string
 * and returns a context implementing tss2_tcti.h's interface, whose first fields are
 * TSS2_TCTI_CONTEXT_COMMON_V1: magic (u64), version (u32), then the function pointers transmit,
 * receive, finalize, cancel, getPollHandles, setLocality. Transmit and receive are called
 * through those pointers; the loader's own Tss2_TctiLdr_Finalize releases the context.
 *
 * Every call goes through koffi's worker threads (`.async`), so none stalls the event loop:
 * receive blocks until the TPM answers, and initialise blocks too — the swtpm and mssim TCTIs
 * send a control command and wait for its answer, tabrmd's makes a D-Bus call (measured: against
 * a peer that accepts and never answers, a synchronous Tss2_TctiLdr_Initialize never returned, and
 * the process's timers and signal handlers never ran again). Keeping one command in flight, and
 * giving up on a call that does not return, is the caller's job (src/tpm/transport/tcti.ts).
 *
 * The loader is made once per process ({@link Tss2TctiLdr.load}): koffi never frees a declared
 * type or function (measured: ~11 KB of RSS per load, which an agent opening a TCTI per TPM
 * operation would leak every minute), and the dynamic loader keeps the library mapped for the
 * process anyway. It holds code, not configuration: every TCTI string initialises its own
 * context. The types are anonymous so that they cannot clash with another koffi user's names.
 */
import { NativeError } from './errors.js';
import {
  loadLibrary,
  loadOptionalLibrary,
  requireKoffi,
  type KoffiFunction,
  type KoffiModule,
  type KoffiType,
} from './koffi.js';

export const TCTILDR_SONAME = 'libtss2-tctildr.so.0';
/** What provides it, for the error and for `sigil doctor`. */
export const TCTILDR_INSTALL =
  'the Debian package libtss2-tctildr0 (or libtss2-dev) and the TCTI you name (e.g. libtss2-tcti-mssim0, libtss2-tcti-tabrmd0)';
/** Tss2_RC_Decode: only improves messages (Debian: libtss2-rc0). */
export const TSS2_RC_SONAME = 'libtss2-rc.so.0';

/**
 * TSS2_TCTI_RC_TRY_AGAIN (tss2_common.h: TCTI layer 10 << 16 | TSS2_BASE_RC_TRY_AGAIN 9): receive's
 * timeout passed with no response yet; calling receive again goes on waiting for the same one.
 */
export const TCTI_RC_TRY_AGAIN = 0x000a0009;

/** An initialised TCTI context. Every call returns the TSS2_RC (0 = success). */
export interface TctiContext {
  transmit(command: Buffer): Promise<number>;
  /** `size[0]` is the buffer's size on entry and the response's on return (`_Inout_ size_t *size`). */
  receive(size: [number], response: Buffer, timeoutMs: number): Promise<number>;
  /** Tss2_TctiLdr_Finalize; the context is unusable afterwards. Never while a transmit or receive is running. */
  finalize(): Promise<void>;
}

type Initialize = KoffiFunction & ((conf: string, out: unknown[]) => number);
type Finalize = KoffiFunction & ((ctx: unknown[]) => void);

/** A native call on one of node's pool threads (koffi runs `.async` calls as libuv work). */
function callAsync<T = number>(fn: KoffiFunction, ...args: unknown[]): Promise<T> {
  return new Promise((resolve, reject) =>
    fn.async(...args, (err: unknown, result: T) => (err ? reject(err) : resolve(result))),
  );
}

/** The process's loader, once it loaded (a failure is not remembered: installing the package fixes the next try). */
let loaded: Tss2TctiLdr | undefined;

export class Tss2TctiLdr {
  /**
   * Native calls started and not returned. Each holds one of node's four pool threads (which also
   * run the process's file system and asynchronous crypto work) until it returns: callers refuse
   * to start more once calls they gave up on pile up (src/tpm/transport/tcti.ts).
   */
  inFlight = 0;
  /** Of those, the ones their caller stopped waiting for ({@link abandon}). */
  abandoned = 0;

  private constructor(
    private readonly koffi: KoffiModule,
    private readonly initializeFn: Initialize,
    private readonly finalizeFn: Finalize,
    private readonly common: KoffiType,
    private readonly transmitProto: KoffiType,
    private readonly receiveProto: KoffiType,
    private readonly rcDecode: ((rc: number) => string) | undefined,
  ) {}

  /** dlopen the loader (and libtss2-rc if present). Throws NativeError `library_missing` naming the package. */
  static load(): Tss2TctiLdr {
    loaded ??= Tss2TctiLdr.declare();
    return loaded;
  }

  private static declare(): Tss2TctiLdr {
    const koffi = requireKoffi('the TCTI loader');
    const lib = loadLibrary(koffi, TCTILDR_SONAME, TCTILDR_INSTALL);
    // TSS2_TCTI_CONTEXT_COMMON_V1 (tss2_tcti.h), as far as the fields used here.
    const common = koffi.struct({
      magic: 'uint64_t',
      version: 'uint32_t',
      transmit: 'void *',
      receive: 'void *',
      finalize: 'void *',
      cancel: 'void *',
      getPollHandles: 'void *',
      setLocality: 'void *',
    });
    const transmitProto = koffi.proto('uint32_t (void *ctx, size_t size, const uint8_t *command)');
    const receiveProto = koffi.proto(
      'uint32_t (void *ctx, _Inout_ size_t *size, _Out_ uint8_t *response, int32_t timeout)',
    );
    const initialize = lib.func(
      'uint32_t Tss2_TctiLdr_Initialize(const char *conf, _Out_ void **ctx)',
    ) as unknown as Initialize;
    const finalize = lib.func('void Tss2_TctiLdr_Finalize(_Inout_ void **ctx)') as unknown as Finalize;
    const rcLib = loadOptionalLibrary(koffi, TSS2_RC_SONAME);
    const decode = rcLib?.func('const char *Tss2_RC_Decode(uint32_t rc)') as ((rc: number) => string) | undefined;
    return new Tss2TctiLdr(koffi, initialize, finalize, common, transmitProto, receiveProto, decode);
  }

  /** The caller stops waiting for `call` (its deadline passed): counted in {@link abandoned} until it returns. */
  abandon(call: Promise<unknown>): void {
    this.abandoned++;
    call.then(
      () => this.abandoned--,
      () => this.abandoned--,
    );
  }

  private counted<T>(call: Promise<T>): Promise<T> {
    this.inFlight++;
    return call.finally(() => this.inFlight--);
  }

  /** "0x…" — with Tss2_RC_Decode's text in front when libtss2-rc is there. */
  decodeRc(rc: number): string {
    const hex = `0x${rc.toString(16)}`;
    return this.rcDecode ? `${this.rcDecode(rc)} (${hex})` : hex;
  }

  /**
   * Tss2_TctiLdr_Initialize(conf), on a worker thread: the context, or the TSS2_RC that refused it.
   * It may never settle (nothing answers the TCTI's first command): callers bound the wait.
   */
  async initialize(conf: string): Promise<{ rc: number; context?: TctiContext }> {
    const out: unknown[] = [null];
    const rc = await this.counted(callAsync(this.initializeFn, conf, out));
    const ptr = out[0];
    if (rc !== 0 || !ptr) return { rc };
    const fields = this.koffi.decode(ptr, this.common) as { transmit: unknown; receive: unknown };
    const transmit = this.koffi.decode(fields.transmit, this.transmitProto) as KoffiFunction;
    const receive = this.koffi.decode(fields.receive, this.receiveProto) as KoffiFunction;
    let live = true;
    const alive = (): void => {
      if (!live) throw new NativeError('call_failed', 'the TCTI context was finalised');
    };
    return {
      rc: 0,
      context: {
        transmit: (command) => (alive(), this.counted(callAsync(transmit, ptr, command.length, command))),
        receive: (size, response, timeoutMs) => (
          alive(),
          this.counted(callAsync(receive, ptr, size, response, timeoutMs))
        ),
        finalize: async () => {
          if (!live) return;
          live = false;
          await this.counted(callAsync<void>(this.finalizeFn, [ptr]));
        },
      },
    };
  }
}
