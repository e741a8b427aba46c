/**
 * Any tpm2-tss TCTI (mssim, tabrmd, swtpm, device, cmd, …) through libtss2-tctildr. The C
 * boundary — the koffi declarations, the TCTI function table, loading the library — is
 * native/tss2-tctildr.ts; this file is the transport on top of it: one command in flight, the
 * response size limit, deadlines, and TSS2_RCs and missing libraries turned into SigilErrors.
 *
 * Deadlines: a native call cannot be interrupted, and a TCTI waits without a timeout for the answer
 * to its first control command at initialisation. A daemon or simulator that stopped answering (or
 * a port that is something else) would hold the agent forever. So each wait is bounded here like
 * the socket transport's (./socket.ts): past it the operation fails `tpm_unavailable` and the
 * context is retired; it is finalised only once the native call running on it returns (finalising
 * under a running call would free what it uses). Receive takes a timeout, so it is called in
 * one-second slices (TSS2_TCTI_RC_TRY_AGAIN: call again for the same response) and never holds a
 * thread much past the deadline. Initialisation has none: a call given up on keeps one of node's
 * four pool threads — which also do the process's file and asynchronous crypto work — until its
 * peer closes, so once {@link MAX_ABANDONED} such calls are out, no new one is started.
 */
import { NativeError } from '#native/errors.js';
import { TCTI_RC_TRY_AGAIN, Tss2TctiLdr, type TctiContext } from '#native/tss2-tctildr.js';
import { SigilError } from '../../errors.js';
import { MAX_RESPONSE_SIZE, SerialQueue } from './transport.js';
import type { TpmTransport } from './transport.js';

/** Native calls given up on (still running) past which no TCTI is initialised. */
export const MAX_ABANDONED = 2;
/** How long one native receive waits before it hands back TRY_AGAIN. */
const RECEIVE_SLICE_MS = 1_000;

export interface TctiOptions {
  /** How long initialisation may wait for the TCTI's peer. Default 10 s. */
  initTimeoutMs?: number;
  /** Per-command timeout; real TPMs take seconds for RSA key generation. Default 120 s. */
  timeoutMs?: number;
}

/** The loader, or `config_invalid` naming what to install (the fix is an install, not a retry). */
function loadLoader(): Tss2TctiLdr {
  try {
    return Tss2TctiLdr.load();
  } catch (err) {
    if (err instanceof NativeError) throw new SigilError('config_invalid', err.message, { cause: err });
    throw err;
  }
}

/** `work`'s result, or `late()`'s error once `ms` passed first. */
function withDeadline<T>(work: Promise<T>, ms: number, late: () => SigilError): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(late()), ms);
    work.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e: unknown) => (clearTimeout(timer), reject(e)),
    );
  });
}

export class TctiTransport implements TpmTransport {
  private readonly queue = new SerialQueue();
  private ctx: TctiContext | undefined;

  private constructor(
    private readonly loader: Tss2TctiLdr,
    ctx: TctiContext,
    readonly conf: string,
    private readonly timeoutMs: number,
  ) {
    this.ctx = ctx;
  }

  /** `conf` is a tpm2-tools TCTI string: "mssim:host=localhost,port=2321", "tabrmd:bus_type=session", … */
  static async open(conf: string, opts: TctiOptions = {}): Promise<TctiTransport> {
    const loader = loadLoader();
    if (loader.abandoned >= MAX_ABANDONED) {
      throw new SigilError(
        'tpm_unavailable',
        `the TCTI "${conf}" is not initialised: ${loader.abandoned} earlier calls into the TPM software stack never returned and each holds a thread of the process; restart it once the TPM, simulator or daemon answers again`,
      );
    }
    const initTimeoutMs = opts.initTimeoutMs ?? 10_000;
    const init = loader.initialize(conf);
    const { rc, context } = await withDeadline(init, initTimeoutMs, () => {
      loader.abandon(init);
      // A context that arrives after we gave up is nobody's: finalise it then.
      init.then(
        (late) => late.context?.finalize().catch(() => undefined),
        () => undefined,
      );
      return new SigilError(
        'tpm_unavailable',
        `the TCTI "${conf}" did not initialise within ${initTimeoutMs} ms: nothing answered its first command (is the TPM, simulator or tabrmd it names running, and is that address really one?)`,
      );
    });
    if (!context) {
      throw new SigilError('tpm_unavailable', `the TCTI "${conf}" could not be initialised: ${loader.decodeRc(rc)}`);
    }
    return new TctiTransport(loader, context, conf, opts.timeoutMs ?? 120_000);
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    return this.queue.run(async () => {
      const ctx = this.ctx;
      if (!ctx) throw new SigilError('tpm_unavailable', 'the TPM transport is closed');
      const size: [number] = [MAX_RESPONSE_SIZE];
      const buf = Buffer.alloc(MAX_RESPONSE_SIZE);
      const deadline = Date.now() + this.timeoutMs;
      const exchange = (async (): Promise<[number, number]> => {
        const trc = await ctx.transmit(Buffer.from(command));
        if (trc !== 0) return [trc, 0];
        for (;;) {
          size[0] = MAX_RESPONSE_SIZE;
          const slice = Math.max(1, Math.min(RECEIVE_SLICE_MS, deadline - Date.now()));
          const rrc = await ctx.receive(size, buf, slice);
          if (rrc !== TCTI_RC_TRY_AGAIN || Date.now() >= deadline) return [0, rrc];
        }
      })();
      const retire = (): void => {
        // Later commands fail at once; the context is finalised when no call runs on it.
        this.ctx = undefined;
        exchange.finally(() => ctx.finalize()).catch(() => undefined);
      };
      const late = (): SigilError =>
        new SigilError('tpm_unavailable', `the TCTI "${this.conf}" did not answer within ${this.timeoutMs} ms`);
      // The receive slices end by themselves at the deadline; this bounds a transmit that hangs.
      const [trc, rrc] = await withDeadline(exchange, this.timeoutMs + RECEIVE_SLICE_MS + 1_000, () => {
        this.loader.abandon(exchange);
        retire();
        return late();
      });
      if (rrc === TCTI_RC_TRY_AGAIN) {
        retire();
        throw late();
      }
      if (trc !== 0) throw new SigilError('tpm_unavailable', `TCTI transmit failed: ${this.loader.decodeRc(trc)}`);
      if (rrc !== 0) throw new SigilError('tpm_unavailable', `TCTI receive failed: ${this.loader.decodeRc(rrc)}`);
      return buf.subarray(0, Number(size[0]));
    });
  }

  close(): Promise<void> {
    return this.queue.run(async () => {
      const ctx = this.ctx;
      if (!ctx) return;
      this.ctx = undefined;
      await ctx.finalize();
    });
  }
}
