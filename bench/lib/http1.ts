/**
 * A lean HTTP/1.1 client over one keep-alive TLS connection, one request at a time: what a load
 * generator needs and nothing else (no agent pool, no header objects, no streams per request).
 * Node's https.request costs tens of microseconds per request on the client, which at thousands
 * of requests per second is the generator's CPU rather than the server's.
 *
 * The TLS is real: the caller passes the only CA to trust and, where the server is not named by
 * a DNS name, its own identity check (Sigil: the issuer's SPIFFE ID under the pinned root).
 * Bodies are read by Content-Length or chunked transfer coding; anything else is an error.
 */
import tls, { type PeerCertificate } from 'node:tls';

export interface Http1Options {
  host: string;
  port: number;
  /** PEM of the only CA trusted for this server. */
  ca: string;
  /** Replaces the hostname check (return an Error to refuse the server). */
  checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined;
  timeoutMs?: number;
}

export interface Http1Response {
  status: number;
  body: Buffer;
}

/** A failure of the connection itself (not an HTTP status): the request may or may not have been processed. */
export class Http1ConnectionError extends Error {
  override readonly name = 'Http1ConnectionError';
}

const CRLF2 = Buffer.from('\r\n\r\n');

interface InFlight {
  resolve: (r: Http1Response) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class Http1Connection {
  #socket: tls.TLSSocket | undefined;
  #inFlight: InFlight | undefined;
  #buf: Buffer | undefined;
  #headerEnd = -1;
  #status = 0;
  #bodyLength = -1; // -1: chunked
  #keepAlive = true;
  readonly #hostHeader: string;
  readonly #timeoutMs: number;

  constructor(private readonly opts: Http1Options) {
    this.#hostHeader = `${opts.host}:${opts.port}`;
    this.#timeoutMs = opts.timeoutMs ?? 15_000;
  }

  /** TLS connections opened so far (reconnects after errors count). */
  connects = 0;

  #connect(): tls.TLSSocket {
    this.connects++;
    const s = tls.connect({
      host: this.opts.host,
      port: this.opts.port,
      ca: this.opts.ca,
      rejectUnauthorized: true,
      ...(this.opts.checkServerIdentity ? { checkServerIdentity: this.opts.checkServerIdentity } : {}),
    });
    s.setNoDelay(true);
    s.on('data', (chunk: Buffer) => this.#onData(chunk));
    const lost = (e?: Error): void => {
      if (this.#socket !== s) return; // an old connection closing late: not this request's
      this.#socket = undefined;
      this.#fail(new Http1ConnectionError(`connection to ${this.#hostHeader} lost: ${e?.message ?? 'closed'}`));
    };
    s.on('error', lost);
    s.on('close', () => lost());
    return s;
  }

  /** Send one request; the connection is (re)opened as needed. Only one request may be in flight. */
  request(method: 'GET' | 'POST', path: string, body?: string | Buffer): Promise<Http1Response> {
    if (this.#inFlight) return Promise.reject(new Error('Http1Connection: a request is already in flight'));
    const socket = (this.#socket ??= this.#connect());
    const payload = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body) : body;
    const head =
      `${method} ${path} HTTP/1.1\r\nhost: ${this.#hostHeader}\r\naccept: application/json\r\n` +
      (payload ? `content-type: application/json\r\ncontent-length: ${payload.length}\r\n` : '') +
      '\r\n';
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        if (this.#socket === socket) this.#socket = undefined;
        this.#fail(
          new Http1ConnectionError(`request to ${this.#hostHeader}${path} timed out after ${this.#timeoutMs} ms`),
        );
      }, this.#timeoutMs);
      this.#inFlight = { resolve, reject, timer };
      this.#buf = undefined;
      this.#headerEnd = -1;
      socket.write(payload ? Buffer.concat([Buffer.from(head, 'latin1'), payload]) : head);
    });
  }

  #fail(e: Error): void {
    const f = this.#inFlight;
    if (!f) return;
    this.#inFlight = undefined;
    clearTimeout(f.timer);
    f.reject(e);
  }

  #onData(chunk: Buffer): void {
    if (!this.#inFlight) return; // unsolicited bytes: ignored; the next request resets the parser
    this.#buf = this.#buf ? Buffer.concat([this.#buf, chunk]) : chunk;
    const buf = this.#buf;
    if (this.#headerEnd < 0) {
      const end = buf.indexOf(CRLF2);
      if (end < 0) return;
      this.#headerEnd = end + 4;
      const head = buf.toString('latin1', 0, end);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      if (!status) return this.#protocolError('no HTTP/1.x status line');
      this.#status = Number(status[1]);
      const len = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      const chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
      if (!len && !chunked) return this.#protocolError('response has neither Content-Length nor chunked coding');
      this.#bodyLength = len ? Number(len[1]) : -1;
      this.#keepAlive = !/\r\nconnection:\s*close/i.test(head) && !head.startsWith('HTTP/1.0');
    }
    let body: Buffer | undefined;
    if (this.#bodyLength >= 0) {
      if (buf.length - this.#headerEnd < this.#bodyLength) return;
      body = buf.subarray(this.#headerEnd, this.#headerEnd + this.#bodyLength);
    } else {
      try {
        body = dechunk(buf.subarray(this.#headerEnd));
      } catch (e) {
        return this.#protocolError((e as Error).message);
      }
      if (body === undefined) return;
    }
    const f = this.#inFlight;
    this.#inFlight = undefined;
    this.#buf = undefined;
    clearTimeout(f.timer);
    if (!this.#keepAlive) {
      this.#socket?.end();
      this.#socket = undefined;
    }
    f.resolve({ status: this.#status, body });
  }

  #protocolError(what: string): void {
    const s = this.#socket;
    this.#socket = undefined;
    s?.destroy();
    this.#fail(new Http1ConnectionError(`bad HTTP response from ${this.#hostHeader}: ${what}`));
  }

  close(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
  }
}

/** Decode a complete chunked body (RFC 9112 §7.1), or undefined while the last chunk has not arrived. */
export function dechunk(data: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', i);
    if (eol < 0) return undefined;
    const size = parseInt(data.toString('latin1', i, eol).split(';')[0]!, 16);
    if (!Number.isFinite(size)) throw new Error('bad chunk size');
    if (size === 0) return data.indexOf('\r\n', eol + 2) < 0 ? undefined : Buffer.concat(parts);
    if (data.length < eol + 2 + size + 2) return undefined;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
}
