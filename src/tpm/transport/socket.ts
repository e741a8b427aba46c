/**
 * swtpm's raw socket protocol: the data channel of `swtpm socket --server type=tcp|unixio`
 * takes marshaled commands and answers marshaled responses, no framing besides the TPM's own
 * header (whose responseSize says when a response is complete). This is not the mssim
 * protocol of the Microsoft/IBM simulators (which wraps commands); those go through the TCTI.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { SigilError } from '../../errors.js';
import { MAX_RESPONSE_SIZE, RESPONSE_HEADER_SIZE, SerialQueue } from './transport.js';
import type { TpmTransport } from './transport.js';

export type SocketAddress = { host: string; port: number } | { path: string };

export interface SocketTransportOptions {
  /** Per-command timeout; real TPMs take seconds for RSA key generation. Default 120 s. */
  timeoutMs?: number;
  /** Connection timeout. Default 10 s. */
  connectTimeoutMs?: number;
}

function describe(addr: SocketAddress): string {
  return 'path' in addr ? `unix:${addr.path}` : `${addr.host}:${addr.port}`;
}

export class SocketTransport implements TpmTransport {
  private readonly queue = new SerialQueue();
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { resolve: (b: Uint8Array) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly address: SocketAddress,
    private readonly timeoutMs: number,
  ) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e) =>
      this.fail(new SigilError('tpm_unavailable', `TPM socket ${describe(address)}: ${e.message}`, { cause: e })),
    );
    // After close() nothing waits and nothing may be sent: no error to build (one per connection).
    socket.on('close', () => {
      if (!this.closed || this.waiter)
        this.fail(new SigilError('tpm_unavailable', `TPM socket ${describe(address)} closed`));
    });
  }

  static connect(address: SocketAddress, opts: SocketTransportOptions = {}): Promise<SocketTransport> {
    return new Promise((resolve, reject) => {
      const socket =
        'path' in address ? connect({ path: address.path }) : connect({ host: address.host, port: address.port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new SigilError('tpm_unavailable', `TPM socket ${describe(address)}: connection timed out`));
      }, opts.connectTimeoutMs ?? 10_000);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(
          new SigilError('tpm_unavailable', `cannot connect to the TPM at ${describe(address)}: ${e.message}`, {
            cause: e,
          }),
        );
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new SocketTransport(socket, address, opts.timeoutMs ?? 120_000));
      });
    });
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    return this.queue.run(() => this.roundTrip(command));
  }

  private roundTrip(command: Uint8Array): Promise<Uint8Array> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new SigilError('tpm_unavailable', 'the TPM transport is closed'));
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        // The stream position is unknown after a timeout: the connection cannot be reused.
        this.fail(
          new SigilError(
            'tpm_unavailable',
            `the TPM at ${describe(this.address)} did not answer within ${this.timeoutMs} ms`,
          ),
        );
        this.socket.destroy();
      }, this.timeoutMs);
      this.waiter = {
        resolve: (b) => {
          clearTimeout(timer);
          resolve(b);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.socket.write(command);
      this.tryComplete();
    });
  }

  private onData(d: Buffer): void {
    this.chunks.push(d);
    this.buffered += d.length;
    this.tryComplete();
  }

  private tryComplete(): void {
    if (!this.waiter || this.buffered < RESPONSE_HEADER_SIZE) return;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [all];
    const size = all.readUInt32BE(2);
    if (size < RESPONSE_HEADER_SIZE || size > MAX_RESPONSE_SIZE) {
      this.fail(new SigilError('internal', `the TPM sent a response header claiming ${size} bytes`));
      this.socket.destroy();
      return;
    }
    if (this.buffered < size) return;
    const response = Buffer.from(all.subarray(0, size));
    const rest = all.subarray(size);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    const w = this.waiter;
    this.waiter = undefined;
    w.resolve(response);
  }

  private fail(e: Error): void {
    if (!this.failure && !this.closed) this.failure = e;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure ?? e);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
      setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, 1000).unref();
    });
  }
}
