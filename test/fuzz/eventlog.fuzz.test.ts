/**
 * Fuzzing the TCG PC Client crypto-agile event log path (PFP §10): gunzip → parseEventLog →
 * replay in every bank → boot facts (the UEFI variable, image-load and string decoders), as
 * the tpm join runs it on the `event_log` an agent sends (attest/eventlog.ts).
 */
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { readEventLog } from '../../src/attest/eventlog.js';
import { MAX_EVENT_LOG_BYTES } from '../../src/join/tpm/wire.js';
import {
  decodeImageLoadEvent,
  decodeUefiVariable,
  extractBootFacts,
  parseEventLog,
  PCR_BANKS,
  replayEventLog,
} from '../../src/tpm/eventlog/index.js';
import { simulatedBootLog } from '../helpers/firmware-boot.js';
import {
  fuzzParams,
  fuzzTimeout,
  leLengthFieldsAt,
  mustBeCoded,
  mutated,
  randomBytes,
  type LengthField,
} from './harness.js';
import { replayRegressions } from './regressions.js';

const seeds = [
  simulatedBootLog({}, ['sha256']).eventLog,
  simulatedBootLog({}, ['sha1', 'sha256', 'sha384']).eventLog,
  simulatedBootLog({ secureBoot: false }, ['sha256']).eventLog,
];

/** Little-endian u32 fields anywhere (event sizes, digest counts, algorithm counts), u64 for UEFI lengths. */
const logFields = (b: Buffer): LengthField[] => [...leLengthFieldsAt(4)(b), ...leLengthFieldsAt(8)(b)];

/** Everything the issuer does with a parsed log, in every bank it knows. */
function fullPath(raw: Buffer): void {
  const log = parseEventLog(raw);
  for (const bank of PCR_BANKS) {
    try {
      replayEventLog(log, bank);
    } catch (e) {
      if (!(e instanceof SigilError)) throw e;
      continue; // a bank the log does not carry
    }
    const facts = extractBootFacts(log, bank);
    if (!facts.ok && typeof facts.message !== 'string') throw new TypeError('a refused fact has no message');
  }
  // The decoders a firmware profile may call directly on any event's data.
  for (const ev of log.events.slice(0, 64)) {
    for (const decode of [decodeUefiVariable, decodeImageLoadEvent]) {
      try {
        decode(ev.data);
      } catch (e) {
        if (!(e instanceof SigilError)) throw e;
      }
    }
  }
}

export const EVENTLOG_TARGETS: Record<string, (b: Buffer) => unknown> = {
  eventLog: fullPath,
  gzipped: (b) => readEventLog(b.toString('base64'), MAX_EVENT_LOG_BYTES),
  uefiVariable: decodeUefiVariable,
  imageLoad: decodeImageLoadEvent,
};

describe('event log fuzzing', () => {
  it('the seeds parse and replay', () => {
    for (const s of seeds) fullPath(s);
    expect(parseEventLog(seeds[0]!).events.length).toBeGreaterThan(5);
  });

  it(
    'parse, replay and boot facts on mutated logs',
    () => {
      const arb = fc.oneof(
        { weight: 1, arbitrary: randomBytes(2048) },
        { weight: 6, arbitrary: mutated(seeds, logFields) },
      );
      fc.assert(
        fc.property(arb, (b) => mustBeCoded('event log', b, fullPath)),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it(
    'the UEFI decoders on mutated event data',
    () => {
      const data = parseEventLog(seeds[0]!)
        .events.map((e) => e.data)
        .filter((d) => d.length >= 32);
      const arb = fc.tuple(fc.constantFrom('uefiVariable', 'imageLoad'), mutated(data, logFields));
      fc.assert(
        fc.property(arb, ([t, b]) => mustBeCoded(t, b, EVENTLOG_TARGETS[t]!)),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it(
    'gzip wrapping: mutated gzip streams and logs',
    () => {
      const arb = fc.oneof(
        mutated(
          seeds.map((s) => gzipSync(s)),
          () => [],
        ),
        mutated(seeds, logFields).map((b) => gzipSync(b)),
      );
      fc.assert(
        fc.property(arb, (b) => mustBeCoded('readEventLog', b, EVENTLOG_TARGETS.gzipped!)),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );
});

describe('event log: claimed sizes are never allocated', () => {
  const head = seeds[0]!.subarray(0, parseEventLog(seeds[0]!).events[0]!.offset);
  const event = (size: number): Buffer => {
    const b = Buffer.alloc(4 + 4 + 4 + 4);
    b.writeUInt32LE(0, 0); // PCR 0
    b.writeUInt32LE(1, 4); // EV_POST_CODE
    b.writeUInt32LE(0, 8); // no digests
    b.writeUInt32LE(size, 12);
    return Buffer.concat([b, Buffer.from('tiny')]);
  };
  const cases: Array<[string, Buffer]> = [
    ['eventSize 0xffffffff', Buffer.concat([head, event(0xffffffff)])],
    ['eventSize 2^31', Buffer.concat([head, event(0x80000000)])],
    [
      'Spec ID eventSize 0x7fffffff',
      Buffer.concat([head.subarray(0, 28), Buffer.from([0xff, 0xff, 0xff, 0x7f]), head.subarray(32, 64)]),
    ],
  ];
  for (const [what, b] of cases) {
    it(what, () => {
      mustBeCoded(what, b, fullPath, { maxMs: 50 });
      expect(() => fullPath(b)).toThrow(expect.objectContaining({ code: 'eventlog_invalid' }));
    });
  }
  it('UEFI_VARIABLE_DATA lengths of 2^53-1 and 2^63', () => {
    const guid = Buffer.alloc(16);
    for (const n of [0x1fffffffffffffn, 0x8000000000000000n]) {
      const v = Buffer.alloc(32);
      v.writeBigUInt64LE(n, 0);
      v.writeBigUInt64LE(n, 8);
      const b = Buffer.concat([guid, v]);
      mustBeCoded('decodeUefiVariable', b, decodeUefiVariable, { maxMs: 50 });
      expect(() => decodeUefiVariable(b)).toThrow(SigilError);
    }
  });
  it('a gzip bomb stops at the 4 MiB output cap, quickly', () => {
    const bomb = gzipSync(Buffer.alloc(32 * 1024 * 1024), { level: 9 });
    expect(bomb.length).toBeLessThan(36 * 1024);
    mustBeCoded('readEventLog(bomb)', bomb, EVENTLOG_TARGETS.gzipped!, { maxMs: 500 });
  });
  it('a join stops parsing at MAX_JOIN_EVENTS, quickly and in little memory (100,000 cheap events sent)', () => {
    // 16-byte records with no digests: the cheapest events there are. gzip makes 1.6 MB of them
    // 3 KB; with the parser's general limit (100k) one request cost ~200 ms and ~48 MiB of
    // transient heap, so a join takes at most MAX_JOIN_EVENTS (10k; real boot logs: hundreds).
    const one = event(0).subarray(0, 16);
    const log = Buffer.concat([head, Buffer.concat(Array.from({ length: 100_001 }, () => one))]);
    const gz = gzipSync(log);
    expect(gz.length).toBeLessThan(36 * 1024);
    mustBeCoded('readEventLog(100k events)', gz, EVENTLOG_TARGETS.gzipped!, { maxMs: 300, maxAlloc: 32 * 1024 * 1024 });
    expect(() => readEventLog(gz.toString('base64'), MAX_EVENT_LOG_BYTES)).toThrow(/more than 10000 events/);
    expect(() => readEventLog(gz.toString('base64'), MAX_EVENT_LOG_BYTES)).toThrow(
      expect.objectContaining({ code: 'eventlog_invalid' }),
    );
  });
});

replayRegressions('eventlog', EVENTLOG_TARGETS);
