/**
 * Big-endian TPM 2.0 wire encoding (Part 1 §18.1 "Marshaling": every integer is big-endian,
 * a TPM2B is a u16 byte count followed by that many bytes, a TPML a u32 count then items).
 *
 * The reader keeps positions so a structure can capture the exact bytes it was parsed from:
 * a signature covers the TPMS_ATTEST bytes the TPM produced, and a Name hashes the TPMT_PUBLIC
 * bytes, so neither may ever be re-encoded.
 */
import { SigilError } from '../errors.js';
import type { ErrorCode } from '../errors.js';

/**
 * Malformed TPM bytes: truncated, oversized, trailing data, or a selector this codec does not
 * know. The default code is `bad_request` because the verifier parses what a client sent; the
 * command pipeline re-codes errors in a TPM's own response as `internal`.
 */
export class TpmParseError extends SigilError {
  /** Byte offset where parsing failed. */
  readonly offset: number;

  constructor(message: string, offset: number, code: ErrorCode = 'bad_request') {
    super(code, message);
    this.name = 'TpmParseError';
    this.offset = offset;
  }
}

export class TpmReader {
  private pos = 0;

  /** @param what names the structure in error messages ("TPMS_ATTEST"). */
  constructor(
    readonly buf: Uint8Array,
    readonly what = 'TPM structure',
  ) {}

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  fail(message: string): never {
    throw new TpmParseError(`${this.what}: ${message} (at byte ${this.pos})`, this.pos);
  }

  private need(n: number, field: string): void {
    if (this.remaining < n) this.fail(`truncated reading ${field}: need ${n} bytes, have ${this.remaining}`);
  }

  u8(field = 'u8'): number {
    this.need(1, field);
    return this.buf[this.pos++]!;
  }

  u16(field = 'u16'): number {
    this.need(2, field);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u32(field = 'u32'): number {
    this.need(4, field);
    const b = this.buf;
    const p = this.pos;
    const v = ((b[p]! << 24) >>> 0) + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
    this.pos += 4;
    return v;
  }

  i32(field = 'i32'): number {
    return this.u32(field) | 0;
  }

  u64(field = 'u64'): bigint {
    const hi = this.u32(field);
    const lo = this.u32(field);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** `n` bytes as a view into the input (never copied, never mutated). */
  bytes(n: number, field = 'bytes'): Uint8Array {
    this.need(n, field);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** A TPM2B: u16 size then that many bytes. */
  tpm2b(field = 'TPM2B', max = 0xffff): Uint8Array {
    const size = this.u16(`${field}.size`);
    if (size > max) this.fail(`${field} is ${size} bytes, more than the ${max} allowed`);
    return this.bytes(size, field);
  }

  /**
   * A TPM2B whose content is itself a structure: parse it with `fn` from a sub-reader that
   * must be consumed exactly, and keep the exact content bytes.
   */
  sized<T>(fn: (r: TpmReader) => T, field = 'TPM2B'): { value: T; bytes: Uint8Array } {
    const bytes = this.tpm2b(field);
    const sub = new TpmReader(bytes, `${this.what}.${field}`);
    const value = fn(sub);
    sub.assertDone();
    return { value, bytes };
  }

  /** Run `fn` on this reader and also return the exact bytes it consumed. */
  capture<T>(fn: (r: TpmReader) => T): { value: T; bytes: Uint8Array } {
    const start = this.pos;
    const value = fn(this);
    return { value, bytes: this.buf.subarray(start, this.pos) };
  }

  /** The bytes between `start` and the current position. */
  sliceFrom(start: number): Uint8Array {
    return this.buf.subarray(start, this.pos);
  }

  /** Everything not yet read. */
  rest(): Uint8Array {
    return this.bytes(this.remaining, 'rest');
  }

  assertDone(): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} trailing bytes`);
  }
}

function checkInt(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new TypeError(`${what} out of range: ${v}`);
}

export class TpmWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  get length(): number {
    return this.pos;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    checkInt(v, 0xff, 'u8');
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }

  u16(v: number): this {
    checkInt(v, 0xffff, 'u16');
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    checkInt(v, 0xffffffff, 'u32');
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  i32(v: number): this {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new TypeError(`i32 out of range: ${v}`);
    this.ensure(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: bigint | number): this {
    const b = typeof v === 'bigint' ? v : BigInt(v);
    if (b < 0n || b > 0xffffffffffffffffn) throw new TypeError(`u64 out of range: ${v}`);
    this.ensure(8);
    this.buf.writeBigUInt64BE(b, this.pos);
    this.pos += 8;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** A TPM2B: u16 size then the bytes. */
  tpm2b(b: Uint8Array): this {
    if (b.length > 0xffff) throw new TypeError(`TPM2B too large: ${b.length} bytes`);
    return this.u16(b.length).bytes(b);
  }

  /** A TPM2B whose content is written by `fn`: the size is patched in afterwards. */
  sized(fn: (w: this) => void): this {
    const at = this.pos;
    this.u16(0);
    fn(this);
    const size = this.pos - at - 2;
    if (size > 0xffff) throw new TypeError(`TPM2B too large: ${size} bytes`);
    this.buf.writeUInt16BE(size, at);
    return this;
  }

  /** Overwrite a u32 written earlier (command and response sizes). */
  patchU32(at: number, v: number): this {
    checkInt(v, 0xffffffff, 'u32');
    if (at + 4 > this.pos) throw new RangeError('patch outside the written bytes');
    this.buf.writeUInt32BE(v, at);
    return this;
  }

  /** A copy of the bytes written so far. */
  build(): Uint8Array {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}
