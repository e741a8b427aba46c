/**
 * `crtm_versions` against the CRTM version shapes of real event logs (issue #16 "Defects found
 * against real event logs"): blank padding (a ThinkPad's "N40ET41W "), an empty string, and a
 * GUID instead of text — the GUID text cross-checked with tpm2_eventlog's own GUID rendering.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { VerifiedEventLog } from '../../../src/attest/eventlog.js';
import { crtmVersionText, normalizeCrtmVersion } from '../../../src/attest/firmware/crtm.js';
import { evaluateProfile, parseFirmwareProfile, type ProfileResult } from '../../../src/attest/firmware/index.js';
import {
  encodeCrtmVersion,
  encodeUefiVariable,
  guidBytes,
  parseEventLog,
  replayEventLog,
  writeEventLog,
} from '../../../src/tpm/eventlog/index.js';
import { bootEvents } from '../../helpers/firmware-boot.js';

const work = mkdtempSync(join(tmpdir(), 'sigil-crtm-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A GUID-form CRTM version of the kind some vendors measure (any GUID does; this one is made up). */
const CRTM_GUID = '6a6d1e0c-cf4b-4d1a-a4cf-31e2f0f4b6d7';

/** The harness's boot, with the EV_S_CRTM_VERSION data replaced by `crtmData`, judged by a profile accepting `accepted`. */
function judge(crtmData: Buffer, accepted: string[]): ProfileResult {
  const events = bootEvents();
  expect(events[0]!.type).toBe('EV_S_CRTM_VERSION');
  events[0] = { ...events[0]!, data: crtmData };
  const parsed = parseEventLog(writeEventLog(events, ['sha256']));
  const pcrs = replayEventLog(parsed, 'sha256');
  const r = VerifiedEventLog.replay(parsed, new Map([['sha256', pcrs]]));
  if (!r.ok) throw new Error(r.mismatch.message);
  const profile = parseFirmwareProfile(
    `name: crtm-test\npcr_bank: sha256\nevent_log:\n  rules:\n    crtm_versions: ${JSON.stringify(accepted)}\n`,
    'crtm-test.yaml',
  );
  return evaluateProfile(profile, { pcrs, eventLog: r.log });
}

describe('crtm_versions rule on real-world CRTM shapes', () => {
  it('matches a blank-padded CRTM version (ThinkPad "N40ET41W ") against the trimmed profile value', () => {
    const r = judge(encodeCrtmVersion('N40ET41W '), ['N40ET41W']);
    expect(r).toMatchObject({ ok: true, matched: { eventLog: { crtmVersions: ['N40ET41W'] } } });
    // A profile written with the blank is trimmed too, so it matches the same log.
    expect(judge(encodeCrtmVersion('N40ET41W '), ['N40ET41W ']).ok).toBe(true);
    // Trimming is not prefix matching.
    expect(judge(encodeCrtmVersion('N40ET41W '), ['N40ET4'])).toMatchObject({ ok: false, check: 'crtm_version' });
  });

  it('lets a profile list the empty CRTM version ""', () => {
    for (const data of [Buffer.from([0, 0]), Buffer.alloc(0), encodeCrtmVersion('   ')]) {
      expect(judge(data, ['']), data.toString('hex')).toMatchObject({
        ok: true,
        matched: { eventLog: { crtmVersions: [''] } },
      });
    }
    // …and "" is a value like any other: a log with a real version does not match it.
    expect(judge(encodeCrtmVersion('1.0'), [''])).toMatchObject({ ok: false, check: 'crtm_version', got: '1.0' });
    expect(judge(Buffer.from([0, 0]), ['1.0'])).toMatchObject({ ok: false, check: 'crtm_version', got: '' });
  });

  it('decodes a GUID-form CRTM version as its GUID text, compared case-insensitively', () => {
    const data = guidBytes(CRTM_GUID);
    expect(crtmVersionText(data)).toBe(CRTM_GUID);
    // What it used to be: UTF-16 noise nobody could write into a profile.
    expect(data.toString('utf16le')).not.toMatch(/^[ -~]*$/);
    expect(judge(data, [CRTM_GUID])).toMatchObject({ ok: true, matched: { eventLog: { crtmVersions: [CRTM_GUID] } } });
    expect(judge(data, [CRTM_GUID.toUpperCase()]).ok).toBe(true);
    expect(judge(data, ['6a6d1e0c-cf4b-4d1a-a4cf-31e2f0f4b6d8'])).toMatchObject({
      ok: false,
      check: 'crtm_version',
      got: CRTM_GUID,
    });
  });

  it('keeps a 7-character version (16 bytes with its NUL) as text, not a GUID', () => {
    expect(crtmVersionText(encodeCrtmVersion('1.02.03'))).toBe('1.02.03');
    expect(encodeCrtmVersion('1.02.03').length).toBe(16);
    expect(normalizeCrtmVersion(' 1.02.03 ')).toBe('1.02.03');
  });

  it('renders the GUID the way tpm2_eventlog renders GUIDs (cross-checked with the installed tool)', async () => {
    // tpm2_eventlog prints EV_S_CRTM_VERSION as hex and decodes GUIDs where it knows one is
    // (a UEFI variable's VariableName): put the same 16 bytes in both places and compare.
    const bytes = guidBytes(CRTM_GUID);
    const log = writeEventLog(
      [
        { pcr: 0, type: 'EV_S_CRTM_VERSION', data: bytes },
        { pcr: 0, type: 'EV_S_CRTM_VERSION', data: encodeCrtmVersion('N40ET41W ') },
        {
          pcr: 7,
          type: 'EV_EFI_VARIABLE_DRIVER_CONFIG',
          data: encodeUefiVariable({ guid: CRTM_GUID, name: 'X', data: Buffer.alloc(0) }),
        },
      ],
      ['sha256'],
    );
    const file = join(work, 'crtm.bin');
    writeFileSync(file, log);
    const { stdout } = await promisify(execFile)('tpm2_eventlog', [file]);
    const events = stdout.split('\n- EventNum: ').slice(2); // [0] the header, [1] the Spec ID event
    const crtmHex = /Event: "([0-9a-f]+)"/.exec(events[0]!)![1]!;
    const variableName = /VariableName: ([0-9a-f-]+)/.exec(events[2]!)![1]!;
    expect(Buffer.from(crtmHex, 'hex').equals(bytes)).toBe(true);
    expect(crtmVersionText(Buffer.from(crtmHex, 'hex'))).toBe(variableName);
    // The padded string's bytes, as tpm2_eventlog shows them: trailing blank and NUL included.
    const padded = /Event: "([0-9a-f]+)"/.exec(events[1]!)![1]!;
    expect(padded).toBe('4e00340030004500540034003100570020000000');
    expect(crtmVersionText(Buffer.from(padded, 'hex'))).toBe('N40ET41W');
  });
});
