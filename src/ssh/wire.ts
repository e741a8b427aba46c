/**
 * The SSH binary encoding (RFC 4251 §5): uint32 and uint64 big-endian, `string` = uint32 length
 * + bytes, `mpint` = a two's-complement big-endian integer in a string, minimal, with a leading
 * zero byte when the high bit of a positive value is set. Certificates, public key blobs,
 * signatures and OpenSSH private key files are all built from these.
 */
import { SigilError, type ErrorCode } from '../errors.js';

/** Builds one SSH structure; `toBuffer()` concatenates once. */
export class SshWriter {
  readonly #parts: Buffer[] = [];

  uint32(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new TypeError(`uint32 out of range: ${n}`);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    this.#parts.push(b);
    return this;
  }

  uint64(n: bigint): this {
    if (n < 0n || n > 0xffffffffffffffffn) throw new TypeError(`uint64 out of range: ${n}`);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(n);
    this.#parts.push(b);
    return this;
  }

  string(s: Buffer | string): this {
    const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    this.uint32(b.length);
    this.#parts.push(b);
    return this;
  }

  /** A non-negative integer given as unsigned big-endian bytes (leading zeros allowed). */
  mpint(unsigned: Buffer): this {
    return this.string(mpintBytes(unsigned));
  }

  /** Bytes as they are (already encoded fields). */
  raw(b: Buffer): this {
    this.#parts.push(b);
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

/** The content of an mpint for a non-negative value (RFC 4251 §5). */
export function mpintBytes(unsigned: Buffer): Buffer {
  let i = 0;
  while (i < unsigned.length && unsigned[i] === 0) i++;
  const v = unsigned.subarray(i);
  if (v.length === 0) return Buffer.alloc(0);
  return v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : Buffer.from(v);
}

/** Reads one SSH structure; every malformation is a SigilError with the caller's code. */
export class SshReader {
  #off = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly code: ErrorCode = 'bad_request',
    private readonly what = 'SSH data',
  ) {}

  get offset(): number {
    return this.#off;
  }

  get remaining(): number {
    return this.buf.length - this.#off;
  }

  fail(msg: string): never {
    throw new SigilError(this.code, `${this.what}: ${msg}`);
  }

  #take(n: number, field: string): Buffer {
    if (n > this.remaining) this.fail(`${field} is truncated`);
    const b = this.buf.subarray(this.#off, this.#off + n);
    this.#off += n;
    return b;
  }

  uint32(field = 'uint32'): number {
    return this.#take(4, field).readUInt32BE();
  }

  uint64(field = 'uint64'): bigint {
    return this.#take(8, field).readBigUInt64BE();
  }

  string(field = 'string'): Buffer {
    const n = this.uint32(`${field} length`);
    return this.#take(n, field);
  }

  /** A string that must be UTF-8 text without NUL (names, principals, key ids). */
  text(field = 'string'): string {
    const b = this.string(field);
    const s = b.toString('utf8');
    if (!Buffer.from(s, 'utf8').equals(b) || s.includes('\0')) this.fail(`${field} is not valid UTF-8 text`);
    return s;
  }

  /** A non-negative mpint, returned as minimal unsigned big-endian bytes. */
  mpintUnsigned(field = 'mpint'): Buffer {
    const b = this.string(field);
    if (b.length === 0) return Buffer.alloc(0);
    if (b[0]! & 0x80) this.fail(`${field} is negative`);
    if (b[0] === 0 && (b.length === 1 || !(b[1]! & 0x80))) this.fail(`${field} is not minimally encoded`);
    return b[0] === 0 ? b.subarray(1) : b;
  }

  /** Everything not read yet. */
  rest(): Buffer {
    return this.#take(this.remaining, 'rest');
  }

  end(): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} unexpected trailing bytes`);
  }
}
