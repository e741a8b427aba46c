/**
 * Typed codecs: every TPM structure is a `Codec<R, W>` object with `read` and `write`, so a
 * command declaration names its parameter types and the compiler derives the argument and
 * result types from them. No reflection, no string tags.
 */
import { TpmReader, TpmWriter } from '../marshal.js';

/** `R` is what `read` returns; `W` what `write` accepts (usually the same). */
export interface Codec<R, W = R> {
  /** Part 2 name, for error messages ("TPMT_PUBLIC"). */
  readonly name: string;
  read(r: TpmReader): R;
  write(w: TpmWriter, v: W): void;
}

/** The decoded type of a codec. */
export type Decoded<C> = C extends Codec<infer R, infer _W> ? R : never;
/** The type a codec accepts when encoding. */
export type Encodable<C> = C extends Codec<infer _R, infer W> ? W : never;

/**
 * A TPM2B around a structure, keeping the exact bytes it was parsed from (or encoded to):
 * signatures and Names cover those bytes, never a re-encoding.
 */
export interface Sized<T> {
  readonly value: T;
  /** The content bytes, without the u16 size prefix. */
  readonly bytes: Uint8Array;
}

/** To encode a sized structure, give its value; `bytes`, when present, are sent verbatim. */
export interface SizedInput<T> {
  readonly value: T;
  readonly bytes?: Uint8Array;
}

export function codec<R, W = R>(
  name: string,
  read: (r: TpmReader) => R,
  write: (w: TpmWriter, v: W) => void,
): Codec<R, W> {
  return { name, read, write };
}

export const u8: Codec<number> = codec(
  'UINT8',
  (r) => r.u8(),
  (w, v) => void w.u8(v),
);
export const u16: Codec<number> = codec(
  'UINT16',
  (r) => r.u16(),
  (w, v) => void w.u16(v),
);
export const u32: Codec<number> = codec(
  'UINT32',
  (r) => r.u32(),
  (w, v) => void w.u32(v),
);
export const i32: Codec<number> = codec(
  'INT32',
  (r) => r.i32(),
  (w, v) => void w.i32(v),
);
export const u64: Codec<bigint, bigint | number> = codec(
  'UINT64',
  (r) => r.u64(),
  (w, v) => void w.u64(v),
);

/** TPMI_YES_NO (Part 2 §9.2). */
export const yesNo: Codec<boolean> = codec(
  'TPMI_YES_NO',
  (r) => {
    const v = r.u8('TPMI_YES_NO');
    if (v > 1) r.fail(`TPMI_YES_NO is ${v}`);
    return v === 1;
  },
  (w, v) => void w.u8(v ? 1 : 0),
);

/** A TPM2B of plain bytes, optionally bounded (TPM2B_DIGEST and friends, Part 2 §10.4). */
export function bytes2b(name: string, max = 0xffff): Codec<Uint8Array> {
  return codec(
    name,
    (r) => r.tpm2b(name, max),
    (w, v) => {
      if (v.length > max) throw new TypeError(`${name} is ${v.length} bytes, more than ${max}`);
      w.tpm2b(v);
    },
  );
}

/** A TPM2B whose content is a structure; keeps the exact content bytes. */
export function sized<R, W>(name: string, inner: Codec<R, W>): Codec<Sized<R>, SizedInput<W>> {
  return codec(
    name,
    (r) => r.sized((sub) => inner.read(sub), name),
    (w, v) => {
      if (v.bytes !== undefined) w.tpm2b(v.bytes);
      else w.sized((sw) => inner.write(sw, v.value));
    },
  );
}

/** A TPML: u32 count then items (Part 2 §10.9). `max` bounds the count against hostile input. */
export function list<R, W>(name: string, item: Codec<R, W>, max = 1024): Codec<R[], readonly W[]> {
  return codec(
    name,
    (r) => {
      const n = r.u32(`${name}.count`);
      if (n > max) r.fail(`${name} has ${n} entries, more than ${max}`);
      const out: R[] = [];
      for (let i = 0; i < n; i++) out.push(item.read(r));
      return out;
    },
    (w, v) => {
      w.u32(v.length);
      for (const x of v) item.write(w, x);
    },
  );
}

/** Encode one value. */
export function marshal<W>(c: Codec<unknown, W>, v: W): Uint8Array {
  const w = new TpmWriter();
  c.write(w, v);
  return w.build();
}

/** Decode bytes that must hold exactly one value. */
export function unmarshal<R>(c: Codec<R, never>, bytes: Uint8Array): R {
  const r = new TpmReader(bytes, c.name);
  const v = c.read(r);
  r.assertDone();
  return v;
}

/** Wrap a value for a sized codec, encoding it now so `bytes` are known. */
export function toSized<R, W>(inner: Codec<R, W>, value: W & R): Sized<R> {
  return { value, bytes: marshal(inner, value) };
}

/**
 * A TPM2B structure that may be empty (size 0), read as `null`: TPM2B_SENSITIVE for
 * LoadExternal of a public key, an absent TPM2B_PUBLIC.
 */
export function optionalSized<R, W>(name: string, inner: Codec<R, W>): Codec<Sized<R> | null, SizedInput<W> | null> {
  const s = sized(name, inner);
  return codec(
    name,
    (r) => {
      const bytes = r.tpm2b(name);
      if (bytes.length === 0) return null;
      const sub = new TpmReader(bytes, `${r.what}.${name}`);
      const value = inner.read(sub);
      sub.assertDone();
      return { value, bytes };
    },
    (w, v) => {
      if (v === null) w.u16(0);
      else s.write(w, v);
    },
  );
}
