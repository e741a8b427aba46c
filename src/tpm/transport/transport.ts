/**
 * A TPM transport moves one marshaled command to the TPM and returns its marshaled response.
 * It knows nothing about TPM structures beyond the 10-byte response header it may need to
 * frame a stream. One file per transport: socket (swtpm), device (/dev/tpmrm0), tcti (tpm2-tss).
 */
export interface TpmTransport {
  /** Send one command; resolves with the whole response. Concurrent calls are serialized. */
  send(command: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Part 1 §18.2 response header: tag (u16), responseSize (u32), responseCode (u32). */
export const RESPONSE_HEADER_SIZE = 10;

/** Largest response Sigil accepts from any transport (real TPMs answer ≤ 4 KiB). */
export const MAX_RESPONSE_SIZE = 64 * 1024;

/** Run tasks one at a time, in call order, whatever each one's outcome. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.tail.then(task, task);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
