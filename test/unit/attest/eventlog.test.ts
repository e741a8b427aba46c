/**
 * attest/eventlog.ts: a boot log reaches firmware-profile rules only as a VerifiedEventLog, and
 * only replaying it against the quoted PCRs makes one (the type-level half of this guarantee is
 * test/types/verified-eventlog.ts, compiled by ./verified-eventlog-types.test.ts).
 */
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readEventLog, VerifiedEventLog, verifyEventLog } from '../../../src/attest/eventlog.js';
import { evaluateProfile, loadFirmwareProfiles } from '../../../src/attest/firmware/index.js';
import { parseEventLog, type ParsedLog } from '../../../src/tpm/eventlog/index.js';
import { simulatedBootLog } from '../../helpers/firmware-boot.js';
import { resolve } from 'node:path';

const measured = loadFirmwareProfiles(resolve(import.meta.dirname, '..', '..', '..', 'firmware-profiles')).get(
  'lab-gateway-measured-boot',
)!;

function boot(spec = {}) {
  const { eventLog, pcrsByBank } = simulatedBootLog(spec, ['sha256']);
  return { log: parseEventLog(eventLog), raw: eventLog, pcrs: pcrsByBank.get('sha256')! };
}

describe('VerifiedEventLog', () => {
  it('is made by replaying a log to the quoted PCRs, and refused when one differs', () => {
    const good = boot();
    const verified = verifyEventLog(good.log, new Map([['sha256', good.pcrs]]));
    expect(VerifiedEventLog.is(verified)).toBe(true);
    expect(verified.replayedPcrs('sha256')).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

    const other = boot({ secureBoot: false }).pcrs; // the quote of a boot without secure boot
    expect(() => verifyEventLog(good.log, new Map([['sha256', other]]))).toThrow(
      expect.objectContaining({
        code: 'eventlog_replay_mismatch',
        message: expect.stringMatching(/replays sha256 PCR 7 to [0-9a-f]{64}, but the quote says/),
      }),
    );
    const r = VerifiedEventLog.replay(good.log, new Map([['sha256', other]]));
    expect(r).toMatchObject({
      ok: false,
      mismatch: { bank: 'sha256', pcr: 7, expected: other.get(7)!.toString('hex') },
    });
  });

  it('refuses a log without digests for a quoted bank', () => {
    const good = boot();
    expect(() => verifyEventLog(good.log, new Map([['sha384', new Map([[0, Buffer.alloc(48)]])]]))).toThrow(
      expect.objectContaining({
        code: 'eventlog_replay_mismatch',
        message: expect.stringMatching(/no sha384 digests/),
      }),
    );
  });

  it('yields as verified only the events of PCRs the quote covers', () => {
    const good = boot();
    const quoted = new Map(good.pcrs);
    quoted.delete(8);
    const verified = verifyEventLog(good.log, new Map([['sha256', quoted]]));
    const pcrs = new Set([...verified.verifiedEvents('sha256')].map((e) => e.pcr));
    expect(good.log.events.some((e) => e.pcr === 8)).toBe(true);
    expect(pcrs.has(8)).toBe(false);
    expect(pcrs.has(7)).toBe(true);
    expect(verified.covers('sha256', 8)).toBe(false);
    expect(verified.replayedPcrs('sha256')).not.toContain(8);
  });

  it('cannot be made without the replay: not with new, not as a look-alike object', () => {
    const good = boot();
    // The constructor is private (a type error) and checks a module-private token at run time.
    expect(() => Reflect.construct(VerifiedEventLog, [Symbol('forged'), good.log, new Map(), new Map()])).toThrow(
      expect.objectContaining({ code: 'internal' }),
    );
    const lookAlike = {
      log: good.log,
      covers: () => true,
      replayedPcrs: () => [],
      hasBank: () => true,
      verifiedEvents: function* () {},
    } as unknown as VerifiedEventLog;
    expect(VerifiedEventLog.is(lookAlike)).toBe(false);
    expect(() => evaluateProfile(measured, { pcrs: good.pcrs, eventLog: lookAlike })).toThrow(TypeError);
    const parsed: ParsedLog = good.log;
    expect(() =>
      evaluateProfile(measured, { pcrs: good.pcrs, eventLog: parsed as unknown as VerifiedEventLog }),
    ).toThrow(/only a VerifiedEventLog/);
  });

  it('a profile judged on a verified log trusts its events; the same rules on an unverified log never run', () => {
    const good = boot();
    const verified = verifyEventLog(good.log, new Map([['sha256', good.pcrs]]));
    expect(evaluateProfile(measured, { pcrs: good.pcrs, eventLog: verified })).toMatchObject({
      ok: true,
      matched: { eventLog: { secureBoot: 'enabled' } },
    });
  });
});

describe('readEventLog', () => {
  it('gunzips within the limit and parses; anything else is eventlog_invalid', () => {
    const good = boot();
    expect(readEventLog(gzipSync(good.raw).toString('base64'), 1 << 20).events.length).toBe(good.log.events.length);
    expect(() => readEventLog(gzipSync(good.raw).toString('base64'), 64)).toThrow(
      expect.objectContaining({ code: 'eventlog_invalid' }),
    );
    expect(() => readEventLog(Buffer.from('not gzip').toString('base64'), 1 << 20)).toThrow(
      expect.objectContaining({ code: 'eventlog_invalid' }),
    );
  });
});
