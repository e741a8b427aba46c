/**
 * The event-log parser's bounds and structure checks, one refused input per check, each with the
 * exact message (issue #20: the survivors of `npm run mutate -- parsers`). The log is what a
 * hostile or broken agent uploads as boot evidence; every check here is a place where the parser
 * would otherwise read a field at the wrong place, trust a declared size, or accept a log the
 * replay cannot mean anything for.
 */
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { EV, LeReader, LeWriter, parseEventLog, writeEventLog } from '../../../src/tpm/eventlog/index.js';

/** The exact refusal: code `eventlog_invalid`, the uniform prefix, then `message`. */
function refused(input: Buffer, message: string, limits?: Parameters<typeof parseEventLog>[1]): void {
  let err: unknown;
  try {
    parseEventLog(input, limits);
  } catch (e) {
    err = e;
  }
  expect(err, `expected: ${message}`).toBeInstanceOf(SigilError);
  expect((err as SigilError).code).toBe('eventlog_invalid');
  expect((err as SigilError).message).toBe(`event log: ${message}`);
}

const NOT_AGILE = (got: string): string =>
  `not a crypto-agile log: the first event must be EV_NO_ACTION carrying "Spec ID Event03" (got ${got}); ` +
  'SHA-1-only (TPM 1.2 format) logs are not supported';

interface SpecOpts {
  signature?: string;
  platformClass?: number;
  major?: number;
  uintnSize?: number;
  algs?: Array<[number, number]>;
  count?: number;
  vendorInfo?: Buffer;
  extra?: Buffer;
}

/** TCG_EfiSpecIDEvent body with every field chosen by the test. */
function specData(o: SpecOpts = {}): Buffer {
  const algs = o.algs ?? [
    [0x0004, 20],
    [0x000b, 32],
  ];
  const w = new LeWriter()
    .bytes(Buffer.from(o.signature ?? 'Spec ID Event03\0', 'latin1'))
    .u32(o.platformClass ?? 0)
    .u8(0)
    .u8(o.major ?? 2)
    .u8(0)
    .u8(o.uintnSize ?? 2)
    .u32(o.count ?? algs.length);
  for (const [id, size] of algs) w.u16(id).u16(size);
  const vendor = o.vendorInfo ?? Buffer.from([1, 2, 3]);
  w.u8(vendor.length).bytes(vendor);
  if (o.extra) w.bytes(o.extra);
  return w.toBuffer();
}

/** The SHA-1-format first record around `data`, with the header fields chosen by the test. */
function header(data: Buffer, h: { pcr?: number; type?: number; digest?: Buffer; size?: number } = {}): Buffer {
  return new LeWriter()
    .u32(h.pcr ?? 0)
    .u32(h.type ?? EV.EV_NO_ACTION)
    .bytes(h.digest ?? Buffer.alloc(20))
    .u32(h.size ?? data.length)
    .bytes(data)
    .toBuffer();
}

/** One crypto-agile record; `digests` as [algId, bytes] pairs. */
function event(
  pcr: number,
  type: number,
  digests: Array<[number, Buffer]>,
  data: Buffer,
  count = digests.length,
): Buffer {
  const w = new LeWriter().u32(pcr).u32(type).u32(count);
  for (const [id, d] of digests) w.u16(id).bytes(d);
  return w.u32(data.length).bytes(data).toBuffer();
}

const SHA1 = Buffer.alloc(20, 0x11);
const SHA256 = Buffer.alloc(32, 0x22);
const DATA = Buffer.from('abcd');
const HDR = header(specData()); // 32 + 40 bytes
const EVENT = event(
  7,
  EV.EV_SEPARATOR,
  [
    [0x0004, SHA1],
    [0x000b, SHA256],
  ],
  DATA,
);
const LOG = Buffer.concat([HDR, EVENT]);

describe('event log: every truncation names the field, its size and the absolute offset', () => {
  it('the first record (SHA-1 format), field by field', () => {
    const fields: Array<[string, number, number]> = [
      ['pcrIndex', 0, 4],
      ['eventType', 4, 4],
      ['SHA-1 digest', 8, 20],
      ['eventSize', 28, 4],
    ];
    for (let n = 1; n < 32; n++) {
      const [f, start, len] = fields.find(([, s, l]) => n < s + l)!;
      refused(
        LOG.subarray(0, n),
        `Spec ID event (offset 0): truncated: ${f} needs ${len} bytes at offset ${start}, only ${n - start} left`,
      );
    }
    // Under 16 bytes after the header there is no room for the signature: not a crypto-agile log.
    for (let n = 32; n < 48; n++) refused(LOG.subarray(0, n), NOT_AGILE('EV_NO_ACTION'));
    for (let n = 48; n < 72; n++) {
      refused(
        LOG.subarray(0, n),
        `Spec ID event (offset 0): truncated: Spec ID event data needs 40 bytes at offset 32, only ${n - 32} left`,
      );
    }
    expect(parseEventLog(LOG.subarray(0, 72)).events).toEqual([]);
  });

  it('the Spec ID event body, when eventSize stops inside it (the data after it is not read as the body)', () => {
    const body = specData();
    const fields: Array<[string, number, number]> = [
      ['platformClass', 16, 4],
      ['specVersionMinor', 20, 1],
      ['specVersionMajor', 21, 1],
      ['specErrata', 22, 1],
      ['uintnSize', 23, 1],
      ['numberOfAlgorithms', 24, 4],
      ['digestSizes[0].algorithmId', 28, 2],
      ['digestSizes[0].digestSize', 30, 2],
      ['digestSizes[1].algorithmId', 32, 2],
      ['digestSizes[1].digestSize', 34, 2],
      ['vendorInfoSize', 36, 1],
      ['vendorInfo', 37, 3],
    ];
    for (let k = 16; k < body.length; k++) {
      const [f, start, len] = fields.find(([, s, l]) => k < s + l)!;
      const left = k - start;
      refused(
        header(body, { size: k }),
        `Spec ID event: truncated: ${f} needs ${len} byte${len === 1 ? '' : 's'} at offset ${32 + start}, only ${left} left`,
      );
    }
  });

  it('a crypto-agile record, field by field (the event type is named once read)', () => {
    const fields: Array<[string, number, number]> = [
      ['pcrIndex', 0, 4],
      ['eventType', 4, 4],
      ['digests.count', 8, 4],
      ['digests[0].hashAlg', 12, 2],
      ['sha1 digest', 14, 20],
      ['digests[1].hashAlg', 34, 2],
      ['sha256 digest', 36, 32],
      ['eventSize', 68, 4],
      ['event data', 72, 4],
    ];
    for (let n = 1; n < EVENT.length; n++) {
      const [f, start, len] = fields.find(([, s, l]) => n < s + l)!;
      const what = start < 8 ? 'event 1 (offset 72)' : 'event 1 (EV_SEPARATOR, offset 72)';
      refused(
        LOG.subarray(0, 72 + n),
        `${what}: truncated: ${f} needs ${len} bytes at offset ${72 + start}, only ${n - start} left`,
      );
    }
    expect(parseEventLog(LOG).events).toHaveLength(1);
  });
});

describe('event log: the first record must be the crypto-agile Spec ID event', () => {
  it('another event type carrying the Spec ID signature', () => {
    refused(header(specData(), { type: EV.EV_POST_CODE }), NOT_AGILE('EV_POST_CODE'));
  });

  it('a TPM 1.2 "Spec ID Event00" log', () => {
    refused(header(specData({ signature: 'Spec ID Event00\0' })), NOT_AGILE('EV_NO_ACTION'));
  });

  it('an eventSize under 16, even when the signature follows it', () => {
    refused(header(specData(), { size: 15 }), NOT_AGILE('EV_NO_ACTION'));
    // Exactly 16 is read: the body then stops after the signature.
    refused(
      header(specData(), { size: 16 }),
      'Spec ID event: truncated: platformClass needs 4 bytes at offset 48, only 0 left',
    );
    // …also when the log itself ends right there.
    refused(
      header(specData(), { size: 16 }).subarray(0, 48),
      'Spec ID event: truncated: platformClass needs 4 bytes at offset 48, only 0 left',
    );
  });

  it('on PCR 0 only, with an all-zero digest', () => {
    refused(header(specData(), { pcr: 1 }), 'Spec ID event: pcrIndex must be 0, got 1');
    const d = Buffer.alloc(20);
    d[19] = 1;
    refused(header(specData(), { digest: d }), 'Spec ID event: the digest must be all zeros');
    const first = Buffer.alloc(20);
    first[0] = 0x80;
    refused(header(specData(), { digest: first }), 'Spec ID event: the digest must be all zeros');
  });

  it('its eventSize within maxEventDataBytes, the limit itself included', () => {
    refused(HDR, 'Spec ID event: eventSize 40 is over the 39-byte limit', { maxEventDataBytes: 39 });
    expect(parseEventLog(HDR, { maxEventDataBytes: 40 }).specId.algorithms).toHaveLength(2);
  });

  it('specVersionMajor 2, uintnSize 1 or 2', () => {
    refused(header(specData({ major: 1 })), 'Spec ID event: specVersionMajor must be 2, got 1');
    refused(header(specData({ uintnSize: 0 })), 'Spec ID event: uintnSize must be 1 or 2, got 0');
    refused(header(specData({ uintnSize: 3 })), 'Spec ID event: uintnSize must be 1 or 2, got 3');
    expect(parseEventLog(header(specData({ uintnSize: 1 }))).specId.uintnSize).toBe(1);
    expect(parseEventLog(header(specData({ uintnSize: 2 }))).specId.uintnSize).toBe(2);
  });

  it('numberOfAlgorithms up to maxAlgorithms, the limit itself included', () => {
    refused(HDR, 'Spec ID event: numberOfAlgorithms 2 is over the limit of 1', { maxAlgorithms: 1 });
    expect(parseEventLog(HDR, { maxAlgorithms: 2 }).specId.algorithms).toHaveLength(2);
  });

  it('a plausible digest size for an algorithm it does not know: 1 to 64 bytes', () => {
    refused(
      header(specData({ algs: [[0x0027, 0]] })),
      'Spec ID event: digest size 0 for algorithm 0x0027 is not plausible',
    );
    refused(
      header(specData({ algs: [[0x0027, 65]] })),
      'Spec ID event: digest size 65 for algorithm 0x0027 is not plausible',
    );
    expect(parseEventLog(header(specData({ algs: [[0x0027, 64]] }))).specId.algorithms).toEqual([
      { algId: 0x27, name: undefined, digestSize: 64 },
    ]);
    expect(parseEventLog(header(specData({ algs: [[0x0027, 1]] }))).specId.algorithms[0]!.digestSize).toBe(1);
  });

  it('nothing after vendorInfo inside eventSize', () => {
    refused(
      header(specData({ extra: Buffer.from([9]) })),
      'Spec ID event: 1 unexpected bytes after vendorInfo (eventSize 41)',
    );
    const spec = parseEventLog(HDR).specId;
    expect(spec.vendorInfo.equals(Buffer.from([1, 2, 3]))).toBe(true);
    expect(spec).toMatchObject({ platformClass: 0, specVersionMinor: 0, specVersionMajor: 2, specErrata: 0 });
  });
});

describe('event log: the records after it', () => {
  it('PCR 0 to 23, and the message says the range', () => {
    refused(
      Buffer.concat([HDR, event(24, EV.EV_IPL, [], DATA)]),
      'event 1 (EV_IPL, offset 72): PCR index 24 is out of range (0-23)',
    );
    expect(parseEventLog(Buffer.concat([HDR, event(23, EV.EV_IPL, [], DATA)])).events[0]!.pcr).toBe(23);
  });

  it('no more digests than declared algorithms (plural when there are several)', () => {
    refused(
      Buffer.concat([HDR, event(4, EV.EV_IPL, [], DATA, 3)]),
      'event 1 (EV_IPL, offset 72): 3 digests, but the Spec ID event declares 2 algorithms',
    );
    const one = header(specData({ algs: [[0x000b, 32]] }));
    refused(
      Buffer.concat([one, event(4, EV.EV_IPL, [], DATA, 2)]),
      'event 1 (EV_IPL, offset 68): 2 digests, but the Spec ID event declares 1 algorithm',
    );
  });

  it('one digest per algorithm: a second digest of a bank would let the log show two values', () => {
    refused(
      Buffer.concat([
        HDR,
        event(
          4,
          EV.EV_IPL,
          [
            [0x000b, SHA256],
            [0x000b, Buffer.alloc(32, 0x33)],
          ],
          DATA,
        ),
      ]),
      'event 1 (EV_IPL, offset 72): two sha256 digests',
    );
  });

  it('event data within maxEventDataBytes, the limit itself included', () => {
    const log = Buffer.concat([HDR, event(4, EV.EV_IPL, [[0x000b, SHA256]], Buffer.alloc(50, 1))]);
    refused(log, 'event 1 (EV_IPL, offset 72): eventSize 50 is over the 49-byte limit', { maxEventDataBytes: 49 });
    expect(parseEventLog(log, { maxEventDataBytes: 50 }).events[0]!.data.length).toBe(50);
  });

  it('maxLogBytes and maxEvents, each limit itself included', () => {
    refused(LOG, `the log is ${LOG.length} bytes, over the ${LOG.length - 1}-byte limit`, {
      maxLogBytes: LOG.length - 1,
    });
    expect(parseEventLog(LOG, { maxLogBytes: LOG.length }).events).toHaveLength(1);
    const two = Buffer.concat([LOG, EVENT]);
    refused(two, 'more than 1 events', { maxEvents: 1 });
    expect(parseEventLog(two, { maxEvents: 2 }).events.map((e) => e.offset)).toEqual([72, 72 + EVENT.length]);
  });

  it('zero padding after the last record is dropped, a non-zero byte after it is a record', () => {
    const padded = Buffer.concat([LOG, Buffer.alloc(64)]);
    expect(parseEventLog(padded).events).toHaveLength(1);
    refused(
      Buffer.concat([LOG, Buffer.from([5])]),
      `event 2 (offset ${LOG.length}): truncated: pcrIndex needs 4 bytes at offset ${LOG.length}, only 1 left`,
    );
    // The records are read from the log as written: a written log parses back to the same offsets.
    const written = writeEventLog([{ pcr: 7, type: 'EV_SEPARATOR', data: DATA }], ['sha1', 'sha256']);
    expect(parseEventLog(written).events[0]!.offset).toBe(written.length - EVENT.length);
  });
});

describe('LeReader', () => {
  it('a UINT64 must be a safe integer: 2^53 - 1 is read, 2^53 is refused', () => {
    const ok = new LeWriter().u64(BigInt(Number.MAX_SAFE_INTEGER)).toBuffer();
    expect(new LeReader(ok, 'x').u64('len')).toBe(Number.MAX_SAFE_INTEGER);
    const over = new LeWriter().u64(BigInt(Number.MAX_SAFE_INTEGER) + 1n).toBuffer();
    expect(() => new LeReader(over, 'blob').u64('len')).toThrow(
      new SigilError('eventlog_invalid', 'event log: blob: len 9007199254740992 is out of range'),
    );
  });

  it('reports absolute offsets (base + position) and reads the rest', () => {
    const r = new LeReader(Buffer.from([1, 2, 3, 4, 5]), 'part', 100);
    expect(r.u8('a')).toBe(1);
    expect(r.absoluteOffset).toBe(101);
    expect(r.rest()).toEqual(Buffer.from([2, 3, 4, 5]));
    expect(r.absoluteOffset).toBe(105);
    expect(r.remaining).toBe(0);
    expect(() => r.u8('b')).toThrow(
      new SigilError('eventlog_invalid', 'event log: part: truncated: b needs 1 byte at offset 105, only 0 left'),
    );
  });
});
