import { describe, expect, it } from 'vitest';
import { TpmParseError, TpmReader, TpmWriter } from '../../../src/tpm/marshal.js';
import { bytes2b, list, marshal, optionalSized, sized, u16, unmarshal } from '../../../src/tpm/structures/codec.js';

describe('TpmWriter / TpmReader', () => {
  it('round-trips big-endian integers, bytes and TPM2Bs', () => {
    const w = new TpmWriter(4);
    w.u8(0xab)
      .u16(0x1234)
      .u32(0xdeadbeef)
      .u64(0x0102030405060708n)
      .i32(-2)
      .tpm2b(Buffer.from('hi'))
      .bytes(Uint8Array.of(9));
    const b = w.build();
    expect(Buffer.from(b).toString('hex')).toBe('ab1234deadbeef0102030405060708fffffffe0002686909');
    const r = new TpmReader(b);
    expect([r.u8(), r.u16(), r.u32(), r.u64(), r.i32()]).toEqual([0xab, 0x1234, 0xdeadbeef, 0x0102030405060708n, -2]);
    expect(Buffer.from(r.tpm2b()).toString()).toBe('hi');
    expect(r.remaining).toBe(1);
    expect(Array.from(r.rest())).toEqual([9]);
    r.assertDone();
  });

  it('u32 above 2^31 stays unsigned', () => {
    expect(new TpmReader(Uint8Array.of(0x81, 0x01, 0x00, 0x01)).u32()).toBe(0x81010001);
  });

  it('sized() patches the size; capture() and sliceFrom() keep exact bytes', () => {
    const w = new TpmWriter();
    w.sized((s) => s.u32(7).u8(1));
    expect(Buffer.from(w.build()).toString('hex')).toBe('00050000000701');
    const r = new TpmReader(Uint8Array.of(0, 2, 0xaa, 0xbb, 0xcc));
    const { value, bytes } = r.capture((x) => x.tpm2b());
    expect(Array.from(value)).toEqual([0xaa, 0xbb]);
    expect(Array.from(bytes)).toEqual([0, 2, 0xaa, 0xbb]);
    expect(Array.from(r.sliceFrom(1))).toEqual([2, 0xaa, 0xbb]);
  });

  it('malformed input is a TpmParseError (bad_request) naming the structure and offset', () => {
    const r = new TpmReader(Uint8Array.of(0, 5, 1), 'TPM2B_TEST');
    const err = (() => {
      try {
        r.tpm2b('buffer');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(TpmParseError);
    expect(err).toMatchObject({ code: 'bad_request', offset: 2 });
    expect((err as Error).message).toMatch(/^TPM2B_TEST: truncated reading buffer/);
    expect(() => unmarshal(u16, Uint8Array.of(1, 2, 3))).toThrow(/1 trailing bytes/);
    expect(() => new TpmReader(Uint8Array.of(0, 65)).tpm2b('x', 64)).toThrow(/more than the 64 allowed/);
  });

  it('writer refuses out-of-range values as caller misuse (TypeError)', () => {
    expect(() => new TpmWriter().u8(256)).toThrow(TypeError);
    expect(() => new TpmWriter().u16(-1)).toThrow(TypeError);
    expect(() => new TpmWriter().u32(2 ** 32)).toThrow(TypeError);
    expect(() => new TpmWriter().tpm2b(new Uint8Array(0x10000))).toThrow(TypeError);
    expect(() => marshal(bytes2b('TPM2B_SMALL', 4), new Uint8Array(5))).toThrow(/more than 4/);
  });
});

describe('generic codecs', () => {
  it('list: count then items, bounded', () => {
    const l = list('TPML_U16', u16, 3);
    expect(Buffer.from(marshal(l, [1, 2])).toString('hex')).toBe('0000000200010002');
    expect(unmarshal(l, Buffer.from('0000000200010002', 'hex'))).toEqual([1, 2]);
    expect(() => unmarshal(l, Buffer.from('00000004', 'hex'))).toThrow(/more than 3/);
  });

  it('sized: reads keep the content bytes; given bytes are written verbatim', () => {
    const s = sized('TPM2B_U16', u16);
    const v = unmarshal(s, Buffer.from('00020102', 'hex'));
    expect(v.value).toBe(0x0102);
    expect(Array.from(v.bytes)).toEqual([1, 2]);
    expect(Buffer.from(marshal(s, { value: 0, bytes: Uint8Array.of(9, 9) })).toString('hex')).toBe('00020909');
    expect(() => unmarshal(s, Buffer.from('0003010203', 'hex'))).toThrow(/trailing/);
  });

  it('optionalSized: size 0 is null', () => {
    const o = optionalSized('TPM2B_OPT', u16);
    expect(unmarshal(o, Uint8Array.of(0, 0))).toBeNull();
    expect(Buffer.from(marshal(o, null)).toString('hex')).toBe('0000');
    expect(unmarshal(o, Uint8Array.of(0, 2, 0, 7))?.value).toBe(7);
  });
});
