/**
 * A TPM character device: /dev/tpmrm0 (the kernel resource manager, preferred: it flushes a
 * client's transient objects and sessions when the file closes) or /dev/tpm0 (raw, exclusive).
 * One write is one command; one read returns the whole response (TCG PC Client Platform TPM
 * Profile, Linux tpm_dev semantics).
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { SigilError } from '../../errors.js';
import { MAX_RESPONSE_SIZE, RESPONSE_HEADER_SIZE, SerialQueue } from './transport.js';
import type { TpmTransport } from './transport.js';

export class DeviceTransport implements TpmTransport {
  private readonly queue = new SerialQueue();
  private closed = false;

  private constructor(
    private readonly file: FileHandle,
    readonly path: string,
  ) {}

  static async open(path = '/dev/tpmrm0'): Promise<DeviceTransport> {
    try {
      return new DeviceTransport(await open(path, 'r+'), path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const hint =
        code === 'EACCES'
          ? ' (permission denied: run as a member of the tss group, or set up a udev rule)'
          : code === 'ENOENT'
            ? ' (no such device: is there a TPM, and is the tpm_crb/tpm_tis driver loaded?)'
            : code === 'EBUSY'
              ? ' (busy: /dev/tpm0 allows one user; use /dev/tpmrm0)'
              : '';
      throw new SigilError('config_invalid', `cannot open the TPM device ${path}${hint}`, { cause: err });
    }
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    return this.queue.run(async () => {
      if (this.closed) throw new SigilError('tpm_unavailable', 'the TPM transport is closed');
      try {
        await this.file.write(command, 0, command.length);
        const buf = Buffer.alloc(MAX_RESPONSE_SIZE);
        const { bytesRead } = await this.file.read(buf, 0, buf.length, null);
        if (bytesRead < RESPONSE_HEADER_SIZE)
          throw new SigilError('internal', `the TPM device returned ${bytesRead} bytes`);
        return buf.subarray(0, bytesRead);
      } catch (err) {
        if (err instanceof SigilError) throw err;
        throw new SigilError('tpm_unavailable', `TPM device ${this.path}: ${(err as Error).message}`, { cause: err });
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.run(() => this.file.close());
  }
}
