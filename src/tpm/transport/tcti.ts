/**
 * Any tpm2-tss TCTI (mssim, tabrmd, swtpm, device, cmd, …) through libtss2-tctildr. The C
 * boundary — the koffi declarations, the TCTI function table, loading the library — is
 * native/tss2-tctildr.ts; this file is the transport on top of it: one command in flight, the
 * response size limit, and TSS2_RCs and missing libraries turned into SigilErrors.
 */
import { NativeError } from '#native/errors.js';
import { TCTI_TIMEOUT_BLOCK, Tss2TctiLdr, type TctiContext } from '#native/tss2-tctildr.js';
import { SigilError } from '../../errors.js';
import { MAX_RESPONSE_SIZE, SerialQueue } from './transport.js';
import type { TpmTransport } from './transport.js';

/** The loader, or `config_invalid` naming what to install (the fix is an install, not a retry). */
function loadLoader(): Tss2TctiLdr {
  try {
    return Tss2TctiLdr.load();
  } catch (err) {
    if (err instanceof NativeError) throw new SigilError('config_invalid', err.message, { cause: err });
    throw err;
  }
}

export class TctiTransport implements TpmTransport {
  private readonly queue = new SerialQueue();
  private ctx: TctiContext | undefined;

  private constructor(
    private readonly loader: Tss2TctiLdr,
    ctx: TctiContext,
    readonly conf: string,
  ) {
    this.ctx = ctx;
  }

  /** `conf` is a tpm2-tools TCTI string: "mssim:host=localhost,port=2321", "tabrmd:bus_type=session", … */
  static async open(conf: string): Promise<TctiTransport> {
    const loader = loadLoader();
    const { rc, context } = loader.initialize(conf);
    if (!context) {
      throw new SigilError('tpm_unavailable', `the TCTI "${conf}" could not be initialised: ${loader.decodeRc(rc)}`);
    }
    return new TctiTransport(loader, context, conf);
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    return this.queue.run(async () => {
      const ctx = this.ctx;
      if (!ctx) throw new SigilError('tpm_unavailable', 'the TPM transport is closed');
      const trc = await ctx.transmit(Buffer.from(command));
      if (trc !== 0) throw new SigilError('tpm_unavailable', `TCTI transmit failed: ${this.loader.decodeRc(trc)}`);
      const size: [number] = [MAX_RESPONSE_SIZE];
      const buf = Buffer.alloc(MAX_RESPONSE_SIZE);
      const rrc = await ctx.receive(size, buf, TCTI_TIMEOUT_BLOCK);
      if (rrc !== 0) throw new SigilError('tpm_unavailable', `TCTI receive failed: ${this.loader.decodeRc(rrc)}`);
      return buf.subarray(0, Number(size[0]));
    });
  }

  close(): Promise<void> {
    return this.queue.run(async () => {
      const ctx = this.ctx;
      if (!ctx) return;
      this.ctx = undefined;
      ctx.finalize();
    });
  }
}
