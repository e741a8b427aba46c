/** Issue #11 items 4 and 5: bounds on client-chosen text, on sampled refusals and on metric series. */
import { describe, expect, it } from 'vitest';
import { RefusalSampler, refusalSource } from '../../../src/server/audit/refusal-sampler.js';
import { capMessage, capText, MAX_FRAGMENT_CHARS, MAX_MESSAGE_CHARS } from '../../../src/util/untrusted-text.js';
import { Counter } from '../../../src/server/metrics/registry.js';

describe('untrusted text caps', () => {
  it('caps each quoted fragment, each unbroken run and the whole message', () => {
    const key = 'k'.repeat(5000);
    const msg = capMessage(`join request: (top level): Unrecognized key(s) in object: '${key}', "${key}", ${key}`);
    expect(msg.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS + 32);
    expect(msg).toContain(`'${'k'.repeat(MAX_FRAGMENT_CHARS)}…[+4800 chars]'`);
    expect(msg).toContain(`"${'k'.repeat(MAX_FRAGMENT_CHARS)}…[+4800 chars]"`);
    expect(msg).not.toMatch(/k{201}/);
    const many = capMessage(
      `Unrecognized key(s) in object: ${Array.from({ length: 5000 }, (_, i) => `'k${i}'`).join(', ')}`,
    );
    expect(many.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS + 32);
    expect(many).toMatch(/…\[\+\d+ chars\]$/);
  });

  it('replaces control characters (no forged log lines)', () => {
    expect(capText('a\nb\u001b[31mc')).toBe('a?b?[31mc');
  });

  it('leaves ordinary messages alone', () => {
    const m = 'join method "x" is not enabled on this issuer (enabled: token, tpm)';
    expect(capMessage(m)).toBe(m);
  });
});

describe('refusal sampler', () => {
  const key = { source: '203.0.113.1', op: 'join', code: 'bad_request' };

  it('records the first few per key, counts the rest, summarises at the interval end', () => {
    const s = new RefusalSampler({ intervalMs: 60_000, perKeyRows: 3 });
    const recorded = Array.from({ length: 10 }, (_, i) => s.admit(key, `m${i}`, 1000 + i).record);
    expect(recorded).toEqual([true, true, true, false, false, false, false, false, false, false]);
    // The next interval starts with the previous one's summary due.
    const next = s.admit(key, 'later', 61_000);
    expect(next.record).toBe(true);
    expect(next.due).toEqual([
      { ...key, count: 7, recorded: 3, firstAt: 1000, lastAt: 1009, sample: 'm3', intervalMs: 60_000 },
    ]);
  });

  it('bounds the keys held: later sources fold into "other"', () => {
    const s = new RefusalSampler({ maxKeys: 10, perKeyRows: 1, maxRows: 5 });
    let records = 0;
    for (let i = 0; i < 1000; i++)
      if (s.admit({ ...key, source: `10.0.${i >> 8}.${i & 255}` }, 'x', 1000).record) records++;
    expect(s.size).toBe(11);
    expect(records).toBe(5);
    const sums = s.flush();
    expect(sums.find((x) => x.source === 'other')).toMatchObject({ count: 990 });
    expect(s.size).toBe(0);
  });

  it('counts MQTT refusals under one source and IPv6 by /64', () => {
    expect(refusalSource('mqtt:sigil/resp/attacker-chosen-topic-1')).toBe('mqtt');
    expect(refusalSource('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(refusalSource('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(refusalSource('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(refusalSource('192.0.2.1')).toBe('192.0.2.1');
  });
});

describe('counter series bound', () => {
  it('folds label sets past the cap into one overflow series', () => {
    const c = new Counter('x_total', 'x', 100);
    for (let i = 0; i < 20_000; i++) c.inc({ method: `m${i}` });
    expect(c.series).toBe(101);
    expect(c.get({ method: 'overflow' })).toBe(19_900);
  });
});
