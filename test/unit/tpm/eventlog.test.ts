import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import {
  decodeCrtmVersion,
  decodeEventString,
  decodeFirmwareBlob,
  decodeImageLoadEvent,
  decodeSeparator,
  decodeStartupLocality,
  decodeUefiVariable,
  EFI_GLOBAL_VARIABLE_GUID,
  encodeCrtmVersion,
  encodeFilePathDevicePath,
  encodeFirmwareBlob,
  encodeImageLoadEvent,
  encodeStartupLocality,
  encodeUefiVariable,
  EV,
  eventTypeName,
  extractBootFacts,
  formatGuid,
  guidBytes,
  LeWriter,
  parseEventLog,
  replayEventLog,
  secureBootEnabled,
  writeEventLog,
  type EventToWrite,
  type PcrBank,
} from '../../../src/tpm/eventlog/index.js';
import { bootEvents, DEFAULT_BOOT, simulatedBootLog } from '../../helpers/firmware-boot.js';
import { SEABIOS_LOG_B64, SEABIOS_PCRS_SHA256, TWO_BANK_LOG_B64, TWO_BANK_PCR8 } from './eventlog-samples.js';

const h = (alg: PcrBank, ...parts: Uint8Array[]): Buffer => {
  const x = createHash(alg);
  for (const p of parts) x.update(p);
  return x.digest();
};

/** PCR replay done the long way, independent of replay.ts. */
function manualReplay(events: EventToWrite[], bank: PcrBank, size: number, pcr0Init?: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  if (pcr0Init) out.set(0, pcr0Init);
  for (const e of events) {
    if (e.type === 'EV_NO_ACTION') continue;
    const digest = e.digests?.[bank] ? Buffer.from(e.digests[bank]!) : h(bank, e.measured ?? e.data);
    out.set(e.pcr, h(bank, out.get(e.pcr) ?? Buffer.alloc(size), digest));
  }
  return out;
}

function expectLogError(fn: () => unknown, pattern: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a SigilError').toBeInstanceOf(SigilError);
  expect((err as SigilError).code).toBe('eventlog_invalid');
  expect((err as SigilError).message).toMatch(/^event log: /);
  expect((err as SigilError).message).toMatch(pattern);
}

const sample: EventToWrite[] = [
  { pcr: 0, type: 'EV_S_CRTM_VERSION', data: encodeCrtmVersion('Test FW 2.0') },
  {
    pcr: 0,
    type: 'EV_POST_CODE',
    data: encodeFirmwareBlob({ base: 0xff000000, length: 4096 }),
    measured: Buffer.from('firmware volume'),
  },
  {
    pcr: 7,
    type: 'EV_EFI_VARIABLE_DRIVER_CONFIG',
    data: encodeUefiVariable({ guid: EFI_GLOBAL_VARIABLE_GUID, name: 'SecureBoot', data: Buffer.from([1]) }),
  },
  { pcr: 3, type: 'EV_NO_ACTION', data: Buffer.from('informational only') },
  { pcr: 7, type: 'EV_SEPARATOR', data: Buffer.alloc(4) },
  { pcr: 4, type: 0x80000003, data: Buffer.from('image load event'), measured: Buffer.from('MZ boot loader') },
  { pcr: 14, type: 0x12345678, data: Buffer.alloc(0) },
];

describe('event log: write → parse → replay', () => {
  it('round-trips every field in three banks', () => {
    const banks: PcrBank[] = ['sha1', 'sha256', 'sha384'];
    const log = parseEventLog(writeEventLog(sample, banks, { vendorInfo: Buffer.from('sigil') }));
    expect(log.specId).toMatchObject({ specVersionMajor: 2, specVersionMinor: 0, uintnSize: 2, platformClass: 0 });
    expect(log.specId.algorithms).toEqual([
      { algId: 0x0004, name: 'sha1', digestSize: 20 },
      { algId: 0x000b, name: 'sha256', digestSize: 32 },
      { algId: 0x000c, name: 'sha384', digestSize: 48 },
    ]);
    expect(log.specId.vendorInfo.toString()).toBe('sigil');
    expect(log.events.map((e) => [e.index, e.pcr, e.typeName])).toEqual([
      [1, 0, 'EV_S_CRTM_VERSION'],
      [2, 0, 'EV_POST_CODE'],
      [3, 7, 'EV_EFI_VARIABLE_DRIVER_CONFIG'],
      [4, 3, 'EV_NO_ACTION'],
      [5, 7, 'EV_SEPARATOR'],
      [6, 4, 'EV_EFI_BOOT_SERVICES_APPLICATION'],
      [7, 14, 'EV_UNKNOWN_0x12345678'],
    ]);
    sample.forEach((e, i) => expect(log.events[i]!.data.equals(Buffer.from(e.data))).toBe(true));
    // EV_NO_ACTION digests are zero; others hash what was measured.
    expect(log.events[3]!.digests.get('sha256')!.equals(Buffer.alloc(32))).toBe(true);
    expect(log.events[5]!.digests.get('sha384')!.equals(h('sha384', Buffer.from('MZ boot loader')))).toBe(true);

    for (const [bank, size] of [
      ['sha1', 20],
      ['sha256', 32],
      ['sha384', 48],
    ] as const) {
      const replayed = replayEventLog(log, bank);
      const expected = manualReplay(sample, bank, size);
      expect([...replayed.keys()].sort()).toEqual([...expected.keys()].sort());
      for (const [pcr, v] of expected)
        expect(replayed.get(pcr)!.toString('hex'), `${bank} PCR ${pcr}`).toBe(v.toString('hex'));
      expect(replayed.has(3)).toBe(false); // EV_NO_ACTION is never extended
    }
  });

  it('uses explicit digests as given (a log can claim anything; replay tells)', () => {
    const fake = Buffer.alloc(32, 0xab);
    const log = parseEventLog(
      writeEventLog([{ pcr: 9, type: 'EV_IPL', data: Buffer.from('x'), digests: { sha256: fake } }], ['sha256']),
    );
    expect(log.events[0]!.digests.get('sha256')!.equals(fake)).toBe(true);
    expect(
      replayEventLog(log, 'sha256')
        .get(9)!
        .equals(h('sha256', Buffer.alloc(32), fake)),
    ).toBe(true);
  });

  it('starts PCR 0 at the StartupLocality (0…03) and not later than the first PCR 0 extend', () => {
    const events: EventToWrite[] = [
      { pcr: 0, type: 'EV_NO_ACTION', data: encodeStartupLocality(3) },
      ...sample.slice(0, 2),
    ];
    const init = Buffer.alloc(32);
    init[31] = 3;
    const replayed = replayEventLog(parseEventLog(writeEventLog(events, ['sha256'])), 'sha256');
    expect(replayed.get(0)!.equals(manualReplay(events, 'sha256', 32, init).get(0)!)).toBe(true);
    expect(replayed.get(0)!.equals(manualReplay(events, 'sha256', 32).get(0)!)).toBe(false);

    const late = writeEventLog(
      [sample[0]!, { pcr: 0, type: 'EV_NO_ACTION', data: encodeStartupLocality(3) }],
      ['sha256'],
    );
    expectLogError(
      () => replayEventLog(parseEventLog(late), 'sha256'),
      /StartupLocality\) comes after PCR 0 was already extended/,
    );
  });

  it('starts PCR 0 at 0…04 for an H-CRTM event', () => {
    const events: EventToWrite[] = [{ pcr: 0, type: 'EV_EFI_HCRTM_EVENT', data: Buffer.from('HCRTM') }];
    const init = Buffer.alloc(32);
    init[31] = 4;
    const replayed = replayEventLog(parseEventLog(writeEventLog(events, ['sha256'])), 'sha256');
    expect(replayed.get(0)!.equals(h('sha256', init, h('sha256', Buffer.from('HCRTM'))))).toBe(true);
  });

  it('refuses to replay a bank the log does not carry', () => {
    const log = parseEventLog(writeEventLog(sample, ['sha1']));
    expectLogError(() => replayEventLog(log, 'sha256'), /no sha256 digests \(its Spec ID event declares sha1\)/);
  });

  it('ignores zero padding after the last event (logs copied from the ACPI area)', () => {
    const log = writeEventLog(sample, ['sha256']);
    const padded = Buffer.concat([log, Buffer.alloc(4096)]);
    expect(parseEventLog(padded).events).toHaveLength(sample.length);
  });
});

describe('event log: real samples', () => {
  it('parses and replays a SeaBIOS log to its quoted PCRs', () => {
    const log = parseEventLog(Buffer.from(SEABIOS_LOG_B64, 'base64'));
    expect(log.events).toHaveLength(17);
    expect(log.specId.algorithms.map((a) => a.name)).toEqual(['sha256']);
    const replayed = replayEventLog(log, 'sha256');
    for (const [pcr, value] of Object.entries(SEABIOS_PCRS_SHA256))
      expect(replayed.get(Number(pcr))!.toString('hex'), `PCR ${pcr}`).toBe(value);
    const sep = log.events.find((e) => e.type === EV.EV_SEPARATOR)!;
    expect(decodeSeparator(sep.data)).toEqual({ value: 0xffffffff, error: false });
    expect(decodeEventString(log.events.find((e) => e.typeName === 'EV_IPL')!.data).text).toBe('MBR');
  });

  it('parses a two-bank log with uintnSize 1 and replays both banks', () => {
    const log = parseEventLog(Buffer.from(TWO_BANK_LOG_B64, 'base64'));
    expect(log.specId.uintnSize).toBe(1);
    expect(log.events).toHaveLength(1);
    expect(log.events[0]!.typeName).toBe('EV_EVENT_TAG');
    expect(replayEventLog(log, 'sha1').get(8)!.toString('hex')).toBe(TWO_BANK_PCR8.sha1);
    expect(replayEventLog(log, 'sha256').get(8)!.toString('hex')).toBe(TWO_BANK_PCR8.sha256);
  });
});

describe('event log: hostile and broken input', () => {
  const good = writeEventLog(sample, ['sha256']);
  const eventStarts = (() => {
    const log = parseEventLog(good);
    return new Set([...log.events.map((e) => e.offset), good.length]);
  })();

  it('refuses every truncation with a precise error (or parses an intact prefix)', () => {
    for (let n = 1; n < good.length; n++) {
      const cut = good.subarray(0, n);
      let lastStart = 0;
      for (const s of eventStarts) if (s <= n && s > lastStart) lastStart = s;
      const tailIsZero = cut.subarray(lastStart).every((b) => b === 0);
      if (eventStarts.has(n) || (lastStart > 0 && tailIsZero)) {
        expect(() => parseEventLog(cut), `cut at ${n}`).not.toThrow();
        continue;
      }
      expectLogError(() => parseEventLog(cut), /truncated|not a crypto-agile log|Spec ID event/);
    }
  });

  it('names the event, the field and the offset', () => {
    const firstEvent = [...eventStarts].sort((a, b) => a - b)[0]!;
    expectLogError(
      () => parseEventLog(good.subarray(0, firstEvent + 10)),
      new RegExp(`event 1 \\(EV_S_CRTM_VERSION, offset ${firstEvent}\\): truncated: digests.count needs 4 bytes`),
    );
  });

  it('refuses an empty log, a TPM 1.2 SHA-1 log and random bytes', () => {
    expectLogError(() => parseEventLog(Buffer.alloc(0)), /empty/);
    const legacy = new LeWriter()
      .u32(0)
      .u32(EV.EV_S_CRTM_VERSION)
      .bytes(Buffer.alloc(20))
      .u32(2)
      .bytes(Buffer.alloc(2))
      .toBuffer();
    expectLogError(() => parseEventLog(legacy), /not a crypto-agile log.*EV_S_CRTM_VERSION.*SHA-1-only/);
    for (let i = 0; i < 200; i++) {
      const junk = randomBytes(1 + (i % 97) * 7);
      expect(() => parseEventLog(junk)).toThrow(SigilError);
    }
  });

  it('refuses garbage after a valid header without reading past the end', () => {
    let parsed = 0;
    for (let i = 0; i < 200; i++) {
      const junk = Buffer.concat([
        good.subarray(0, [...eventStarts].sort((a, b) => a - b)[0]!),
        randomBytes(8 + (i % 50)),
      ]);
      // Random bytes after the header either parse as events (each with its exact length) or are
      // refused with eventlog_invalid; never another error, never an event past the end.
      let log: ReturnType<typeof parseEventLog> | undefined;
      let err: unknown;
      try {
        log = parseEventLog(junk);
      } catch (e) {
        err = e;
      }
      if (err !== undefined) {
        expect(err, `junk ${i}`).toBeInstanceOf(SigilError);
        expect((err as SigilError).code).toBe('eventlog_invalid');
        continue;
      }
      for (const e of log!.events) expect(e.offset + e.data.length, `junk ${i}`).toBeLessThanOrEqual(junk.length);
      parsed++;
    }
    // The loop above says nothing if case took the parse branch by accident: most junk is refused.
    expect(parsed).toBeLessThan(200);
  });

  it('refuses a 3 GB event size at once, without allocating it', () => {
    const hdr = writeEventLog([], ['sha256']);
    const hostile = Buffer.concat([
      hdr,
      new LeWriter().u32(0).u32(EV.EV_IPL).u32(1).u16(0x000b).bytes(Buffer.alloc(32)).u32(0xbfefbfbd).toBuffer(),
    ]);
    const before = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    expectLogError(() => parseEventLog(hostile), /eventSize 3220160445 is over the 1048576-byte limit/);
    expect(performance.now() - t0).toBeLessThan(1000); // zero-filling 3 GB would take seconds, or throw
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
  });

  it('refuses absurd algorithm and digest counts', () => {
    const spec = (count: number, pairs: Array<[number, number]>): Buffer => {
      const body = new LeWriter()
        .bytes(Buffer.from('Spec ID Event03\0', 'latin1'))
        .u32(0)
        .u8(0)
        .u8(2)
        .u8(0)
        .u8(2)
        .u32(count);
      for (const [id, size] of pairs) body.u16(id).u16(size);
      const data = body.u8(0).toBuffer();
      return new LeWriter().u32(0).u32(EV.EV_NO_ACTION).bytes(Buffer.alloc(20)).u32(data.length).bytes(data).toBuffer();
    };
    expectLogError(
      () => parseEventLog(spec(0xffffffff, [[0x000b, 32]])),
      /numberOfAlgorithms 4294967295 is over the limit of 8/,
    );
    expectLogError(() => parseEventLog(spec(0, [])), /numberOfAlgorithms is 0/);
    expectLogError(() => parseEventLog(spec(1, [[0x000b, 20]])), /sha256 digests are 32 bytes, the log declares 20/);
    expectLogError(
      () =>
        parseEventLog(
          spec(2, [
            [0x000b, 32],
            [0x000b, 32],
          ]),
        ),
      /listed twice/,
    );

    const hdr = writeEventLog([], ['sha256']);
    const tooMany = Buffer.concat([hdr, new LeWriter().u32(0).u32(EV.EV_IPL).u32(0xffffffff).toBuffer()]);
    expectLogError(() => parseEventLog(tooMany), /4294967295 digests, but the Spec ID event declares 1 algorithm/);
    const undeclared = Buffer.concat([
      hdr,
      new LeWriter().u32(0).u32(EV.EV_IPL).u32(1).u16(0x0004).bytes(Buffer.alloc(20)).u32(0).toBuffer(),
    ]);
    expectLogError(() => parseEventLog(undeclared), /digest algorithm sha1 is not declared in the Spec ID event/);
    const badPcr = Buffer.concat([hdr, new LeWriter().u32(99).u32(EV.EV_IPL).u32(0).u32(0).toBuffer()]);
    expectLogError(() => parseEventLog(badPcr), /PCR index 99 is out of range/);
  });

  it('keeps an algorithm it does not know under its id and still replays the ones it does', () => {
    const specData = new LeWriter()
      .bytes(Buffer.from('Spec ID Event03\0', 'latin1'))
      .u32(0)
      .u8(0)
      .u8(2)
      .u8(0)
      .u8(2)
      .u32(2)
      .u16(0x0027)
      .u16(48)
      .u16(0x000b)
      .u16(32)
      .u8(0)
      .toBuffer();
    const d = h('sha256', Buffer.from('x'));
    const log = Buffer.concat([
      new LeWriter()
        .u32(0)
        .u32(EV.EV_NO_ACTION)
        .bytes(Buffer.alloc(20))
        .u32(specData.length)
        .bytes(specData)
        .toBuffer(),
      new LeWriter()
        .u32(5)
        .u32(EV.EV_IPL)
        .u32(2)
        .u16(0x0027)
        .bytes(Buffer.alloc(48, 1))
        .u16(0x000b)
        .bytes(d)
        .u32(1)
        .bytes(Buffer.from('x'))
        .toBuffer(),
    ]);
    const parsed = parseEventLog(log);
    expect(parsed.specId.algorithms[0]).toEqual({ algId: 0x0027, name: undefined, digestSize: 48 });
    expect(parsed.events[0]!.digests.get('0x0027')!.length).toBe(48);
    expect(
      replayEventLog(parsed, 'sha256')
        .get(5)!
        .equals(h('sha256', Buffer.alloc(32), d)),
    ).toBe(true);
  });

  it('enforces the caps it is given', () => {
    expectLogError(() => parseEventLog(good, { maxLogBytes: 100 }), /over the 100-byte limit/);
    expectLogError(() => parseEventLog(good, { maxEvents: 3 }), /more than 3 events/);
  });
});

describe('event data decoders', () => {
  it('formats EFI GUIDs mixed-endian', () => {
    // EFI_GLOBAL_VARIABLE as it appears on the wire in real logs.
    const wire = Buffer.from('61dfe48bca93d211aa0d00e098032b8c', 'hex');
    expect(formatGuid(wire)).toBe(EFI_GLOBAL_VARIABLE_GUID);
    expect(guidBytes(EFI_GLOBAL_VARIABLE_GUID).equals(wire)).toBe(true);
  });

  it('decodes UEFI_VARIABLE_DATA and the SecureBoot state', () => {
    const on = decodeUefiVariable(
      encodeUefiVariable({ guid: EFI_GLOBAL_VARIABLE_GUID, name: 'SecureBoot', data: Buffer.from([1]) }),
    );
    expect(on).toEqual({ guid: EFI_GLOBAL_VARIABLE_GUID, name: 'SecureBoot', data: Buffer.from([1]) });
    expect(secureBootEnabled(on)).toBe(true);
    expect(secureBootEnabled({ ...on, data: Buffer.from([0]) })).toBe(false);
    expect(secureBootEnabled({ ...on, data: Buffer.alloc(0) })).toBe(false);
    const lying = encodeUefiVariable({ guid: EFI_GLOBAL_VARIABLE_GUID, name: 'PK', data: Buffer.alloc(4) });
    lying.writeBigUInt64LE(0xffffffffn, 24); // VariableDataLength far beyond the data
    expect(() => decodeUefiVariable(lying)).toThrow(/truncated: VariableData needs 4294967295 bytes/);
    const hugeName = Buffer.from(lying);
    hugeName.writeBigUInt64LE(0x7fffffffffffn, 16);
    expect(() => decodeUefiVariable(hugeName)).toThrow(/UnicodeNameLength 140737488355327 exceeds the event data/);
  });

  it('decodes CRTM versions, separators, strings, firmware blobs and StartupLocality', () => {
    expect(decodeCrtmVersion(encodeCrtmVersion('Sigil Lab UEFI 1.0.0'))).toBe('Sigil Lab UEFI 1.0.0');
    expect(decodeCrtmVersion(Buffer.from('0000', 'hex'))).toBe('');
    expect(() => decodeCrtmVersion(Buffer.from('abc'))).toThrow(/not a UTF-16 string/);
    expect(decodeSeparator(Buffer.alloc(4))).toEqual({ value: 0, error: false });
    expect(decodeSeparator(Buffer.from('01000000', 'hex'))).toEqual({ value: 1, error: true });
    expect(() => decodeSeparator(Buffer.alloc(3))).toThrow(/expected 4/);
    expect(decodeEventString(Buffer.from('kernel_cmdline: /vmlinuz ro\0'))).toEqual({
      text: 'kernel_cmdline: /vmlinuz ro',
      encoding: 'utf8',
    });
    expect(decodeEventString(Buffer.from(' quiet\0', 'utf16le'))).toEqual({ text: ' quiet', encoding: 'utf16le' });
    expect(decodeFirmwareBlob(encodeFirmwareBlob({ base: 0x820000, length: 0xe0000 }))).toEqual({
      base: 0x820000,
      length: 0xe0000,
    });
    expect(decodeStartupLocality(encodeStartupLocality(3))).toBe(3);
    expect(decodeStartupLocality(Buffer.from('Spec ID Event03\0'))).toBeUndefined();
    expect(() => decodeStartupLocality(Buffer.concat([Buffer.from('StartupLocality\0'), Buffer.from([2])]))).toThrow(
      /not 0, 3 or 4/,
    );
  });

  it('decodes an image load event and its file path', () => {
    const dp = encodeFilePathDevicePath('\\EFI\\BOOT\\BOOTX64.EFI');
    const ev = decodeImageLoadEvent(
      encodeImageLoadEvent({
        imageLocationInMemory: 0x7e3a0000,
        imageLengthInMemory: 1234,
        imageLinkTimeAddress: 0,
        devicePath: dp,
      }),
    );
    expect(ev).toMatchObject({
      imageLocationInMemory: 0x7e3a0000,
      imageLengthInMemory: 1234,
      filePath: '\\EFI\\BOOT\\BOOTX64.EFI',
    });
    expect(ev.devicePath.equals(dp)).toBe(true);
  });

  it('names event types like the spec', () => {
    expect(eventTypeName(0x80000003)).toBe('EV_EFI_BOOT_SERVICES_APPLICATION');
    expect(eventTypeName(0xdeadbeef)).toBe('EV_UNKNOWN_0xdeadbeef');
  });
});

describe('boot facts (what profiles read)', () => {
  it('reads the simulated boot', () => {
    const { eventLog } = simulatedBootLog();
    const r = extractBootFacts(parseEventLog(eventLog), 'sha256');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.facts.secureBoot?.enabled).toBe(true);
    expect(r.facts.crtmVersions.map((c) => c.text)).toEqual([DEFAULT_BOOT.firmwareVersion]);
    expect(r.facts.bootApplications).toEqual([
      expect.objectContaining({
        digest: h('sha256', DEFAULT_BOOT.bootLoader).toString('hex'),
        path: DEFAULT_BOOT.bootLoaderPath,
      }),
    ]);
    expect(r.facts.kernelCmdlines.map((c) => [c.pcr, c.text])).toEqual([
      [8, `${DEFAULT_BOOT.kernelPath} ${DEFAULT_BOOT.kernelCmdline}`],
    ]);
  });

  it('refuses event data that does not hash to its digest', () => {
    const events = bootEvents();
    const cmdline = events.find((e) => e.pcr === 8)!;
    // Keep the digest of the real command line, show a different one: replay still matches.
    const forged = events.map((e) =>
      e === cmdline
        ? {
            ...e,
            data: Buffer.from('kernel_cmdline: /boot/vmlinuz ro lockdown=integrity\0'),
            digests: { sha256: h('sha256', cmdline.measured!) },
          }
        : e,
    );
    const log = parseEventLog(writeEventLog(forged, ['sha256']));
    expect(replayEventLog(log, 'sha256').get(8)!.equals(simulatedBootLog().pcrsByBank.get('sha256')!.get(8)!)).toBe(
      true,
    );
    const r = extractBootFacts(log, 'sha256');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.event.pcr).toBe(8);
    expect(r.message).toMatch(/EV_IPL, PCR 8\): its sha256 digest is not the hash of its data/);

    const sb = events.find((e) => e.pcr === 7)!;
    const flipped = events.map((e) =>
      e === sb
        ? {
            ...e,
            data: encodeUefiVariable({ guid: EFI_GLOBAL_VARIABLE_GUID, name: 'SecureBoot', data: Buffer.from([1]) }),
            digests: {
              sha256: h(
                'sha256',
                encodeUefiVariable({ guid: EFI_GLOBAL_VARIABLE_GUID, name: 'SecureBoot', data: Buffer.from([0]) }),
              ),
            },
          }
        : e,
    );
    const r2 = extractBootFacts(parseEventLog(writeEventLog(flipped, ['sha256'])), 'sha256');
    expect(r2.ok).toBe(false);
  });
});
