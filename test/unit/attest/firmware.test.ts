import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { VerifiedEventLog } from '../../../src/attest/eventlog.js';
import {
  containsWords,
  evaluateProfile as evaluateVerified,
  loadFirmwareProfiles,
  parseFirmwareProfile,
  type FirmwareProfile,
  type ProfileRefusal,
  type ProfileResult,
} from '../../../src/attest/firmware/index.js';
import {
  encodeUefiVariable,
  EFI_GLOBAL_VARIABLE_GUID,
  parseEventLog,
  replayEventLog,
  writeEventLog,
  type ParsedLog,
  type PcrBank,
} from '../../../src/tpm/eventlog/index.js';
import { bootEvents, DEFAULT_BOOT, simulatedBootLog, type BootSpec } from '../../helpers/firmware-boot.js';

const PROFILES_DIR = resolve(import.meta.dirname, '..', '..', '..', 'firmware-profiles');
const profiles = loadFirmwareProfiles(PROFILES_DIR);
const pinned = profiles.get('lab-gateway-v1')!;
const measured = profiles.get('lab-gateway-measured-boot')!;

/** A device booting `spec`: its quoted PCRs (all of them, in `bank`) and its parsed event log. */
function device(spec: BootSpec = {}, bank: PcrBank = 'sha256') {
  const { eventLog, pcrsByBank } = simulatedBootLog(spec, [bank]);
  return { pcrs: pcrsByBank.get(bank)!, eventLog: parseEventLog(eventLog), bank };
}

/**
 * What the tpm join does with a device's evidence: replay its log against the quoted PCRs
 * (attest/eventlog.ts) — a mismatch is refused there, shown here as a profile refusal — and only
 * then judge the profile with the verified log.
 */
function evaluateProfile(
  profile: FirmwareProfile,
  d: { pcrs: Map<number, Buffer>; eventLog?: ParsedLog; bank?: PcrBank },
): ProfileResult {
  if (d.eventLog === undefined) return evaluateVerified(profile, { pcrs: d.pcrs });
  const r = VerifiedEventLog.replay(d.eventLog, new Map([[d.bank ?? profile.pcrBank, d.pcrs]]));
  if (!r.ok) {
    const m = r.mismatch;
    return {
      ok: false,
      profile: profile.name,
      check: 'eventlog_replay',
      ...(m.pcr !== undefined ? { pcr: m.pcr, expected: [m.expected!], got: m.got! } : {}),
      message: m.message,
    };
  }
  return evaluateVerified(profile, { pcrs: d.pcrs, eventLog: r.log });
}

function refusal(r: ProfileResult): ProfileRefusal {
  expect(r.ok, JSON.stringify(r)).toBe(false);
  return r as ProfileRefusal;
}

const sha256hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('example profiles (firmware-profiles/)', () => {
  it('load, and lab-gateway-v1 pins exactly the harness default boot', () => {
    expect([...profiles.keys()].sort()).toEqual(['lab-gateway-measured-boot', 'lab-gateway-v1']);
    const d = device();
    for (const pcr of [0, 4, 7]) expect(pinned.pcrs.get(pcr), `PCR ${pcr}`).toContain(d.pcrs.get(pcr)!.toString('hex'));
    // The second PCR 0 value is firmware 1.1.0 of the same simulated device.
    expect(pinned.pcrs.get(0)).toContain(
      device({ firmwareVersion: 'Sigil Lab UEFI 1.1.0' }).pcrs.get(0)!.toString('hex'),
    );
    expect(measured.eventLog!.rules.bootLoaderDigests).toEqual([sha256hex(DEFAULT_BOOT.bootLoader)]);
  });
});

describe('evaluateProfile: pinned PCRs', () => {
  it('accepts the golden boot and each value of a rollout', () => {
    const r = evaluateProfile(pinned, device());
    expect(r).toEqual({
      ok: true,
      profile: 'lab-gateway-v1',
      matched: { pcrs: { '0': pinned.pcrs.get(0)![0], '4': pinned.pcrs.get(4)![0], '7': pinned.pcrs.get(7)![0] } },
    });
    expect(evaluateProfile(pinned, device({ firmwareVersion: 'Sigil Lab UEFI 1.1.0' })).ok).toBe(true);
  });

  it('names the PCR, the accepted values and what the quote showed', () => {
    const d = device({ firmwareVersion: 'Sigil Lab UEFI 1.2.0' });
    const r = refusal(evaluateProfile(pinned, d));
    expect(r).toMatchObject({
      check: 'pcr_value',
      pcr: 0,
      expected: pinned.pcrs.get(0),
      got: d.pcrs.get(0)!.toString('hex'),
    });
    expect(r.message).toBe(
      `firmware profile lab-gateway-v1: PCR 0 is ${r.got}, expected one of ${pinned.pcrs.get(0)!.join(', ')}`,
    );

    const off = refusal(evaluateProfile(pinned, device({ secureBoot: false })));
    expect(off).toMatchObject({ check: 'pcr_value', pcr: 7, expected: pinned.pcrs.get(7) });
    expect(off.message).toMatch(/PCR 7 is [0-9a-f]{64}, expected e57982bc/);

    expect(refusal(evaluateProfile(pinned, device({ bootLoader: Buffer.from('MZ evil') })))).toMatchObject({
      check: 'pcr_value',
      pcr: 4,
    });
  });

  it('refuses a quote that leaves out a pinned PCR, or is in another bank', () => {
    const d = device();
    d.pcrs.delete(7);
    expect(refusal(evaluateProfile(pinned, d))).toMatchObject({
      check: 'pcr_missing',
      pcr: 7,
      expected: pinned.pcrs.get(7),
    });
    expect(refusal(evaluateProfile(pinned, device({}, 'sha1')))).toMatchObject({
      check: 'pcr_value',
      pcr: 0,
      message: expect.stringMatching(/20 bytes, not a sha256 value/),
    });
  });
});

describe('evaluateProfile: event-log rules', () => {
  it('accepts a log that replays to the quote and satisfies every rule', () => {
    const r = evaluateProfile(measured, device());
    expect(r).toEqual({
      ok: true,
      profile: 'lab-gateway-measured-boot',
      matched: {
        pcrs: {},
        eventLog: {
          replayedPcrs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
          secureBoot: 'enabled',
          bootLoaderDigests: [sha256hex(DEFAULT_BOOT.bootLoader)],
          kernelCmdlines: [`${DEFAULT_BOOT.kernelPath} ${DEFAULT_BOOT.kernelCmdline}`],
          crtmVersions: ['Sigil Lab UEFI 1.0.0'],
        },
      },
    });
    // A firmware update the rules allow passes without re-pinning PCR 0.
    expect(evaluateProfile(measured, device({ firmwareVersion: 'Sigil Lab UEFI 1.1.0' })).ok).toBe(true);
  });

  it('checks replay first: a log from another boot is refused before any rule', () => {
    const quote = device({ secureBoot: false }).pcrs; // this device booted without secure boot…
    const r = refusal(evaluateProfile(measured, { pcrs: quote, eventLog: device().eventLog })); // …but sends a good log
    expect(r).toMatchObject({ check: 'eventlog_replay', pcr: 7, expected: [quote.get(7)!.toString('hex')] });
    expect(r.message).toMatch(/the event log replays sha256 PCR 7 to [0-9a-f]{64}, but the quote says [0-9a-f]{64}/);
  });

  it('refuses each broken rule with what it expected and found', () => {
    expect(refusal(evaluateProfile(measured, device({ secureBoot: false })))).toMatchObject({
      check: 'secure_boot',
      pcr: 7,
      expected: ['enabled'],
      got: 'disabled',
    });
    const evil = Buffer.from('MZ evil loader');
    expect(refusal(evaluateProfile(measured, device({ bootLoader: evil })))).toMatchObject({
      check: 'boot_loader_digest',
      pcr: 4,
      got: sha256hex(evil),
      expected: measured.eventLog!.rules.bootLoaderDigests,
    });
    const cmd = refusal(evaluateProfile(measured, device({ kernelCmdline: 'root=/dev/sda1 ro quiet lockdown=none' })));
    expect(cmd).toMatchObject({
      check: 'kernel_cmdline',
      pcr: 8,
      expected: ['lockdown=integrity'],
      got: `${DEFAULT_BOOT.kernelPath} root=/dev/sda1 ro quiet lockdown=none`,
    });
    expect(refusal(evaluateProfile(measured, device({ kernelCmdline: 'rootwait lockdown=integrity' })))).toMatchObject({
      check: 'kernel_cmdline',
      expected: ['ro'],
    });
    expect(refusal(evaluateProfile(measured, device({ firmwareVersion: 'Evil UEFI 6.6.6' })))).toMatchObject({
      check: 'crtm_version',
      pcr: 0,
      got: 'Evil UEFI 6.6.6',
    });
  });

  it('refuses a missing log unless require is false', () => {
    const d = device();
    expect(refusal(evaluateProfile(measured, { pcrs: d.pcrs }))).toMatchObject({ check: 'eventlog_missing' });
    const optional: FirmwareProfile = { ...measured, eventLog: { ...measured.eventLog!, require: false } };
    expect(evaluateProfile(optional, { pcrs: d.pcrs })).toEqual({
      ok: true,
      profile: measured.name,
      matched: { pcrs: {} },
    });
    // require: false still judges a log that is sent.
    expect(refusal(evaluateProfile(optional, device({ secureBoot: false })))).toMatchObject({ check: 'secure_boot' });
  });

  it('refuses a forged log whose data disagrees with its digests', () => {
    // The device booted with a permissive command line; the log shows a compliant one next to the real digest.
    const real = bootEvents({ kernelCmdline: 'root=/dev/sda1 ro lockdown=none' });
    const quote = device({ kernelCmdline: 'root=/dev/sda1 ro lockdown=none' }).pcrs;
    const forged = real.map((e) =>
      e.pcr === 8
        ? {
            ...e,
            data: Buffer.from(`kernel_cmdline: ${DEFAULT_BOOT.kernelPath} ro lockdown=integrity\0`),
            digests: { sha256: createHash('sha256').update(e.measured!).digest() },
          }
        : e,
    );
    const r = refusal(
      evaluateProfile(measured, { pcrs: quote, eventLog: parseEventLog(writeEventLog(forged, ['sha256'])) }),
    );
    expect(r).toMatchObject({ check: 'eventlog_event', pcr: 8, event: expect.any(Number) });
    expect(r.message).toMatch(/its sha256 digest is not the hash of its data/);
  });

  it('does not trust events in PCRs the quote leaves out', () => {
    const d = device();
    d.pcrs.delete(8);
    expect(refusal(evaluateProfile(measured, d))).toMatchObject({
      check: 'kernel_cmdline',
      pcr: 8,
      message: expect.stringMatching(/PCR 8, which the quote does not cover/),
    });
  });

  it('refuses a log without the profile bank, and rules with no evidence', () => {
    const sha1Log = parseEventLog(simulatedBootLog({}, ['sha1']).eventLog);
    expect(refusal(evaluateProfile(measured, { pcrs: device().pcrs, eventLog: sha1Log }))).toMatchObject({
      check: 'eventlog_replay',
      message: expect.stringMatching(/no sha256 digests/),
    });
    const bare = parseEventLog(writeEventLog([{ pcr: 4, type: 'EV_SEPARATOR', data: Buffer.alloc(4) }], ['sha256']));
    const quote = new Map([
      [
        4,
        createHash('sha256')
          .update(Buffer.concat([Buffer.alloc(32), createHash('sha256').update(Buffer.alloc(4)).digest()]))
          .digest(),
      ],
    ]);
    expect(refusal(evaluateProfile(measured, { pcrs: quote, eventLog: bare }))).toMatchObject({
      check: 'secure_boot',
      message: expect.stringMatching(/does not measure the SecureBoot variable/),
    });
    const sbOnly: FirmwareProfile = {
      ...measured,
      eventLog: {
        require: true,
        rules: {
          secureBoot: 'any',
          bootLoaderDigests: ['00'.repeat(32)],
          kernelCmdlineContains: undefined,
          crtmVersions: undefined,
        },
      },
    };
    expect(refusal(evaluateProfile(sbOnly, { pcrs: quote, eventLog: bare }))).toMatchObject({
      check: 'boot_loader_digest',
      message: expect.stringMatching(/no boot application/),
    });
  });

  it('refuses SecureBoot measured twice with different values', () => {
    const twice = [
      ...bootEvents(),
      {
        pcr: 7,
        type: 'EV_EFI_VARIABLE_DRIVER_CONFIG' as const,
        data: encodeUefiVariable({ guid: EFI_GLOBAL_VARIABLE_GUID, name: 'SecureBoot', data: Buffer.from([0]) }),
      },
    ];
    const log = parseEventLog(writeEventLog(twice, ['sha256']));
    const r = refusal(evaluateProfile(measured, { pcrs: replayEventLog(log, 'sha256'), eventLog: log }));
    expect(r).toMatchObject({
      check: 'eventlog_event',
      pcr: 7,
      message: expect.stringMatching(/SecureBoot is measured again with a different value/),
    });
  });
});

describe('profile files: validation errors name the file and the field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-profiles-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const hex64 = 'ab'.repeat(32);

  const bad = (text: string): string => {
    try {
      parseFirmwareProfile(text, 'x.yaml');
    } catch (e) {
      expect(e).toBeInstanceOf(SigilError);
      expect((e as SigilError).code).toBe('config_invalid');
      return (e as SigilError).message;
    }
    throw new Error('expected a config_invalid error');
  };

  it('parses a full profile into normalised values', () => {
    const p = parseFirmwareProfile(
      `name: model-a\npcr_bank: sha256\npcrs:\n  7: ["0x${hex64.toUpperCase()}", "${hex64}"]\n  "0": ["${hex64}"]\nevent_log:\n  rules:\n    secure_boot: disabled\n    crtm_versions: ["1.0"]\n`,
      'x.yaml',
    );
    expect(p.pcrs).toEqual(
      new Map([
        [0, [hex64]],
        [7, [hex64]],
      ]),
    );
    expect(p.eventLog).toEqual({
      require: true,
      rules: {
        secureBoot: 'disabled',
        bootLoaderDigests: undefined,
        kernelCmdlineContains: undefined,
        crtmVersions: ['1.0'],
      },
    });
  });

  it('refuses bad values precisely', () => {
    expect(bad(`name: a\npcr_bank: sha256\npcrs:\n  "7": ["${'ab'.repeat(20)}"]\n`)).toBe(
      'x.yaml: pcrs.7.0: expected 64 hex digits for sha256, got 40',
    );
    expect(bad(`name: a\npcr_bank: sha1\npcrs:\n  "7": ["${'ab'.repeat(20)}", "${hex64}"]\n`)).toBe(
      'x.yaml: pcrs.7.1: expected 40 hex digits for sha1, got 64',
    );
    expect(bad(`name: a\npcr_bank: sha256\npcrs:\n  "7": [0000]\n`)).toMatch(
      /^x\.yaml: pcrs\.7\.0: expected a hex string in quotes/,
    );
    expect(bad(`name: a\npcr_bank: sha256\npcrs:\n  "7": ["xyz"]\n`)).toBe('x.yaml: pcrs.7.0: not a hex string');
    expect(bad(`name: a\npcr_bank: sha256\npcrs:\n  "24": ["${hex64}"]\n`)).toMatch(
      /^x\.yaml: pcrs\.24: PCR keys are PCR numbers 0-23/,
    );
    expect(bad(`name: a\npcr_bank: md5\npcrs:\n  "0": ["${hex64}"]\n`)).toMatch(/^x\.yaml: pcr_bank: /);
    expect(
      bad(`name: a\npcr_bank: sha256\npcrs:\n  "0": ["${hex64}"]\nevent_log:\n  rules:\n    secureboot: enabled\n`),
    ).toMatch(/^x\.yaml: event_log\.rules: .*secureboot/);
    expect(bad(`name: a\npcr_bank: sha256\nevent_log:\n  rules:\n    boot_loader_digests: ["abcd"]\n`)).toBe(
      'x.yaml: event_log.rules.boot_loader_digests.0: expected 64 hex digits for sha256, got 4',
    );
    expect(bad(`name: a\npcr_bank: sha256\nevent_log:\n  rules:\n    secure_boot: maybe\n`)).toMatch(
      /^x\.yaml: event_log\.rules\.secure_boot: /,
    );
    expect(bad(`name: a\npcr_bank: sha256\n`)).toBe('x.yaml: (top level): a profile needs pcrs, event_log, or both');
    expect(bad(`name: Bad Name\npcr_bank: sha256\npcrs:\n  "0": ["${hex64}"]\n`)).toMatch(/^x\.yaml: name: names are/);
    expect(bad('name: [unclosed\n')).toMatch(/^x\.yaml: YAML error: /);
    expect(bad(`name: a\n---\nname: b\n`)).toBe('x.yaml: one profile per file (found 2 YAML documents)');
    expect(bad('')).toBe('x.yaml: the file is empty');
  });

  it('refuses duplicate names across files and an unreadable directory', () => {
    writeFileSync(join(dir, 'one.yaml'), `name: same\npcr_bank: sha256\npcrs:\n  "0": ["${hex64}"]\n`);
    writeFileSync(join(dir, 'two.yml'), `name: same\npcr_bank: sha256\npcrs:\n  "4": ["${hex64}"]\n`);
    writeFileSync(join(dir, 'notes.txt'), 'not a profile');
    expect(() => loadFirmwareProfiles(dir)).toThrow(
      `${join(dir, 'two.yml')}: profile name "same" is already defined in ${join(dir, 'one.yaml')}`,
    );
    expect(() => loadFirmwareProfiles(join(dir, 'missing'))).toThrow(/cannot read directory .*missing: ENOENT/);
  });
});

describe('containsWords', () => {
  it('matches whole words in order', () => {
    expect(containsWords('root=/x ro quiet', 'ro')).toBe(true);
    expect(containsWords('root=/x rootwait', 'ro')).toBe(false);
    expect(containsWords('a console=ttyS0  quiet b', 'console=ttyS0 quiet')).toBe(true);
    expect(containsWords('quiet console=ttyS0', 'console=ttyS0 quiet')).toBe(false);
  });
});
