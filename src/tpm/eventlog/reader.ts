/**
 * A bounds-checked little-endian reader for event-log bytes. The TPM codecs elsewhere in
 * src/tpm are big-endian; the TCG event log is little-endian (PFP §10.2: "all values are
 * little-endian"), so it gets its own small reader rather than a flag on the TPM one.
 *
 * Every read checks the remaining length first and never allocates from a length field:
 * `bytes(n)` returns a view after checking `n` fits, so a hostile size costs nothing.
 */
import { SigilError } from '../../errors.js';

/** Every malformed-log refusal goes through here so the code and the prefix stay uniform. */
export function eventLogError(message: string): SigilError {
  return new SigilError('eventlog_invalid', `event log: ${message}`);
}

export class LeReader {
  private pos: number;

  /**
   * @param buf   the bytes to read
   * @param what  names the structure in error messages, e.g. `event 12 (offset 0x3a0)`
   * @param base  offset of `buf` inside the whole log, so messages carry absolute offsets
   */
  constructor(
    private readonly buf: Buffer,
    public what: string,
    private readonly base = 0,
  ) {
    this.pos = 0;
  }

  get offset(): number {
    return this.pos;
  }

  get absoluteOffset(): number {
    return this.base + this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, field: string): void {
    if (n > this.remaining) {
      throw eventLogError(
        `${this.what}: truncated: ${field} needs ${n} byte${n === 1 ? '' : 's'} at offset ${this.base + this.pos}, only ${this.remaining} left`,
      );
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf.readUInt8(this.pos++);
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A UINT64 length or address; refused when it cannot be a JS safe integer. */
  u64(field: string): number {
    this.need(8, field);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw eventLogError(`${this.what}: ${field} ${v} is out of range`);
    return Number(v);
  }

  /** A view of the next `n` bytes (no copy); callers copy what they keep. */
  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  rest(): Buffer {
    return this.bytes(this.remaining, 'rest');
  }
}

/** Little-endian writer used by the log writer and the event-data encoders. */
export class LeWriter {
  private readonly parts: Buffer[] = [];

  u8(v: number): this {
    const b = Buffer.alloc(1);
    b.writeUInt8(v);
    this.parts.push(b);
    return this;
  }

  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    this.parts.push(b);
    return this;
  }

  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.parts.push(b);
    return this;
  }

  u64(v: number | bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(b);
    return this;
  }

  bytes(b: Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}
