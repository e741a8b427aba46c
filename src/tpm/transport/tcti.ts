/**
 * Any tpm2-tss TCTI (mssim, tabrmd, swtpm, device, cmd, …) through libtss2-tctildr and koffi
 * (native/ holds the C boundary's checks). tss2_tcti.h defines the context's first fields,
 * TSS2_TCTI_CONTEXT_COMMON_V1: magic (u64), version (u32), then the function pointers
 * transmit, receive, finalize, cancel, getPollHandles, setLocality. The loader returns a
 * context implementing that interface for the child TCTI named by the configuration string.
 *
 * Calls go through koffi's worker threads (`.async`), so a blocking receive never stalls the
 * event loop; the queue keeps one command in flight.
 */
import { SigilError } from '../../errors.js';
import { MAX_RESPONSE_SIZE, SerialQueue } from './transport.js';
import type { TpmTransport } from './transport.js';

/** TSS2_TCTI_TIMEOUT_BLOCK: wait for the response as long as it takes. */
const TIMEOUT_BLOCK = -1;
const TCTILDR = 'libtss2-tctildr.so.0';

/** The slice of koffi's API used here (typed locally so compiling never needs koffi installed). */
interface KoffiLib {
  func(signature: string): unknown;
}
interface KoffiModule {
  load(path: string): KoffiLib;
  opaque(name: string): unknown;
  struct(name: string, fields: Record<string, string>): unknown;
  proto(signature: string): unknown;
  decode(ptr: unknown, type: unknown): unknown;
}
type KoffiFn = ((...args: unknown[]) => unknown) & { async: (...args: unknown[]) => void };

interface Native {
  koffi: KoffiModule;
  initialize: (conf: string, out: unknown[]) => number;
  finalize: (ctx: unknown[]) => void;
  common: unknown;
  transmitProto: unknown;
  receiveProto: unknown;
  decodeRc: (rc: number) => string;
}

let native: Promise<Native> | undefined;

async function loadNative(): Promise<Native> {
  let koffi: KoffiModule;
  try {
    const specifier = 'koffi'; // a variable: resolved at run time only
    const mod = (await import(specifier)) as { default?: KoffiModule } & KoffiModule;
    koffi = mod.default ?? mod;
  } catch (err) {
    throw new SigilError('config_invalid', 'the TCTI loader needs the koffi package (npm install koffi)', { cause: err });
  }
  let lib: KoffiLib;
  try {
    lib = koffi.load(TCTILDR);
  } catch (err) {
    throw new SigilError(
      'config_invalid',
      `cannot load ${TCTILDR}: install the Debian package libtss2-tctildr0 (or libtss2-dev) and the TCTI you name (e.g. libtss2-tcti-mssim0, libtss2-tcti-tabrmd0)`,
      { cause: err },
    );
  }
  koffi.opaque('SIGIL_TSS2_TCTI_CONTEXT');
  const common = koffi.struct('SIGIL_TSS2_TCTI_CONTEXT_COMMON_V1', {
    magic: 'uint64_t',
    version: 'uint32_t',
    transmit: 'void *',
    receive: 'void *',
    finalize: 'void *',
    cancel: 'void *',
    getPollHandles: 'void *',
    setLocality: 'void *',
  });
  const transmitProto = koffi.proto('uint32_t SigilTctiTransmit(SIGIL_TSS2_TCTI_CONTEXT *ctx, size_t size, const uint8_t *command)');
  const receiveProto = koffi.proto(
    'uint32_t SigilTctiReceive(SIGIL_TSS2_TCTI_CONTEXT *ctx, _Inout_ size_t *size, _Out_ uint8_t *response, int32_t timeout)',
  );
  const initialize = lib.func('uint32_t Tss2_TctiLdr_Initialize(const char *conf, _Out_ SIGIL_TSS2_TCTI_CONTEXT **ctx)') as Native['initialize'];
  const finalize = lib.func('void Tss2_TctiLdr_Finalize(_Inout_ SIGIL_TSS2_TCTI_CONTEXT **ctx)') as Native['finalize'];
  let decodeRc = (rc: number): string => `0x${rc.toString(16)}`;
  try {
    const rcLib = koffi.load('libtss2-rc.so.0');
    const f = rcLib.func('const char *Tss2_RC_Decode(uint32_t rc)') as (rc: number) => string;
    decodeRc = (rc) => `${f(rc)} (0x${rc.toString(16)})`;
  } catch {
    // libtss2-rc only improves messages.
  }
  return { koffi, initialize, finalize, common, transmitProto, receiveProto, decodeRc };
}

function callAsync(fn: KoffiFn, ...args: unknown[]): Promise<number> {
  return new Promise((resolve, reject) => fn.async(...args, (err: unknown, rc: number) => (err ? reject(err) : resolve(rc))));
}

export class TctiTransport implements TpmTransport {
  private readonly queue = new SerialQueue();
  private ctx: unknown;

  private constructor(
    private readonly n: Native,
    ctx: unknown,
    private readonly transmit: KoffiFn,
    private readonly receive: KoffiFn,
    readonly conf: string,
  ) {
    this.ctx = ctx;
  }

  /** `conf` is a tpm2-tools TCTI string: "mssim:host=localhost,port=2321", "tabrmd:bus_type=session", … */
  static async open(conf: string): Promise<TctiTransport> {
    native ??= loadNative();
    let n: Native;
    try {
      n = await native;
    } catch (err) {
      native = undefined;
      throw err;
    }
    const out: unknown[] = [null];
    const rc = n.initialize(conf, out);
    if (rc !== 0 || !out[0]) {
      throw new SigilError('tpm_unavailable', `the TCTI "${conf}" could not be initialised: ${n.decodeRc(rc)}`);
    }
    const ctx = out[0];
    const c = n.koffi.decode(ctx, n.common) as { transmit: unknown; receive: unknown };
    const transmit = n.koffi.decode(c.transmit, n.transmitProto) as KoffiFn;
    const receive = n.koffi.decode(c.receive, n.receiveProto) as KoffiFn;
    return new TctiTransport(n, ctx, transmit, receive, conf);
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    return this.queue.run(async () => {
      if (!this.ctx) throw new SigilError('tpm_unavailable', 'the TPM transport is closed');
      const cmd = Buffer.from(command);
      const trc = await callAsync(this.transmit, this.ctx, cmd.length, cmd);
      if (trc !== 0) throw new SigilError('tpm_unavailable', `TCTI transmit failed: ${this.n.decodeRc(trc)}`);
      const size = [MAX_RESPONSE_SIZE];
      const buf = Buffer.alloc(MAX_RESPONSE_SIZE);
      const rrc = await callAsync(this.receive, this.ctx, size, buf, TIMEOUT_BLOCK);
      if (rrc !== 0) throw new SigilError('tpm_unavailable', `TCTI receive failed: ${this.n.decodeRc(rrc)}`);
      return buf.subarray(0, Number(size[0]));
    });
  }

  close(): Promise<void> {
    return this.queue.run(async () => {
      if (!this.ctx) return;
      const ctx = this.ctx;
      this.ctx = undefined;
      this.n.finalize([ctx]);
    });
  }
}
