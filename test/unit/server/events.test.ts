/**
 * Pushed events (docs/events.md), the parts without a network: which audit rows are events, the
 * shared audit tail, and the delivery queue's bounds (retries with backoff, permanent refusals,
 * a full queue) — each a dead letter, counted.
 */
import { describe, expect, it } from 'vitest';
import { AuditWatcher, type AuditBatch } from '../../../src/server/events/audit-watcher.js';
import { DeliveryError, DeliveryQueue, type DeliveryCounters } from '../../../src/server/events/delivery.js';
import { eventsOfRow } from '../../../src/server/events/derive.js';
import { eventId, type SigilEvent } from '../../../src/server/events/event.js';
import type { AuditRecord } from '../../../src/server/store/types.js';
import { createLogger } from '../../../src/util/log.js';

const T0 = Date.parse('2026-12-01T00:00:00Z');
const log = createLogger({ name: 'test', level: 'silent' });

function row(seq: number, over: Partial<AuditRecord>): AuditRecord {
  return {
    seq,
    at: T0 + seq,
    action: 'lock',
    outcome: 'ok',
    code: null,
    bot: 'gw',
    instanceId: 'i-1',
    method: null,
    actor: 'admin',
    remote: null,
    details: {},
    prevHash: 'p',
    hash: `h${seq}`,
    ...over,
  };
}

describe('eventsOfRow', () => {
  const unlocked = async () => false;
  const locked = async () => true;

  it('lock and unlock of an instance; not a bot lock, not a refused lock', async () => {
    const [ev] = await eventsOfRow(row(1, { details: { kind: 'instance', reason: 'r' } }), unlocked);
    expect(ev).toMatchObject({ type: 'instance_locked', instance_id: 'i-1', audit_seq: 1, data: { reason: 'r' } });
    expect((await eventsOfRow(row(2, { action: 'unlock' }), unlocked))[0]!.type).toBe('instance_unlocked');
    expect(await eventsOfRow(row(3, { instanceId: null, details: { kind: 'bot' } }), unlocked)).toEqual([]);
    expect(await eventsOfRow(row(4, { outcome: 'refused', code: 'not_found' }), unlocked)).toEqual([]);
  });

  it('generation_mismatch is instance_locked only when it locked the instance (not an overtaken renewal)', async () => {
    const r = row(5, { action: 'renew', outcome: 'refused', code: 'generation_mismatch', actor: 'agent' });
    expect(await eventsOfRow(r, unlocked)).toEqual([]);
    expect((await eventsOfRow(r, locked))[0]).toMatchObject({
      type: 'instance_locked',
      data: { cause: 'generation_mismatch' },
    });
  });

  it('attestation_failed for attestation checks of a known instance only', async () => {
    const r = (code: string, over: Partial<AuditRecord> = {}) =>
      row(6, { action: 'renew', outcome: 'refused', code, details: { message: 'why' }, ...over });
    expect((await eventsOfRow(r('x509_revoked'), unlocked))[0]).toMatchObject({
      type: 'attestation_failed',
      data: { check: 'x509_revoked', op: 'renew', message: 'why' },
    });
    expect((await eventsOfRow(r('pcr_mismatch'), unlocked))[0]!.type).toBe('attestation_failed');
    expect(await eventsOfRow(r('signature_invalid'), unlocked)).toEqual([]);
    expect(await eventsOfRow(r('pcr_mismatch', { instanceId: null }), unlocked)).toEqual([]);
  });

  it('the id is derived from the row: the same row gives the same id, another row another', async () => {
    const a = (await eventsOfRow(row(7, {}), unlocked))[0]!;
    expect(eventId(a.type, a.idSource)).toBe(eventId('instance_locked', 'h7'));
    expect(eventId('instance_locked', 'h7')).not.toBe(eventId('instance_locked', 'h8'));
    expect(eventId('instance_locked', 'h7')).toMatch(/^evt_[0-9a-f]{32}$/);
  });
});

describe('AuditWatcher', () => {
  it('starts at the head, delivers later rows once in order, and says reset when the head goes back', async () => {
    let rows: AuditRecord[] = [row(1, {}), row(2, {})];
    const audit = {
      head: async () => (rows.length ? { seq: rows.at(-1)!.seq, hash: 'x' } : undefined),
      list: async () => [...rows].reverse(),
    };
    const w = new AuditWatcher({ audit, now: () => T0 + 1000 });
    const got: AuditBatch[] = [];
    w.subscribe((b) => void got.push(b));
    await w.poll();
    expect(got).toEqual([]); // history is not replayed
    rows = [...rows, row(3, {}), row(4, {})];
    await w.poll();
    await w.poll();
    expect(got.map((b) => b.rows.map((r) => r.seq))).toEqual([[3, 4]]);
    rows = [row(1, {})];
    await w.poll();
    expect(got.at(-1)).toEqual({ rows: [], reset: true });
  });
});

describe('DeliveryQueue', () => {
  const ev = (id: string): SigilEvent => ({
    v: 1,
    id,
    type: 'instance_locked',
    time: new Date(T0).toISOString(),
    iat: T0 / 1000,
    trust_domain: 'example.org',
    instance_id: 'i-1',
    bot: 'gw',
    data: {},
  });
  function counting(): DeliveryCounters & { n: Record<string, number> } {
    const n: Record<string, number> = {};
    const add = (k: string) => (n[k] = (n[k] ?? 0) + 1);
    return {
      n,
      delivered: () => add('delivered'),
      failed: () => add('failed'),
      deadLetter: (_s, why) => add(`dead:${why}`),
    };
  }

  it('retries with waits bounded by base·2^n (full jitter) until the attempts run out: a dead letter', async () => {
    const counters = counting();
    const waits: number[] = [];
    let last = Date.now();
    const q = new DeliveryQueue(
      {
        name: 'x',
        send: async () => {
          const now = Date.now();
          waits.push(now - last);
          last = now;
          throw new DeliveryError('down');
        },
      },
      { counters, log, retry: { baseMs: 40, maxMs: 80, attempts: 4 }, random: () => 0.999 },
    );
    q.push('j', ev('a'));
    await q.idle();
    expect(counters.n).toEqual({ failed: 4, 'dead:retries_exhausted': 1 });
    // waits before tries 2, 3, 4: ~40, ~80, ~80 (capped)
    expect(waits.slice(1).map((w) => w >= 35)).toEqual([true, true, true]);
    expect(waits[3]).toBeLessThan(80 * 3);
  });

  it('a permanent refusal (a 4xx) is not retried', async () => {
    const counters = counting();
    let sends = 0;
    const q = new DeliveryQueue(
      {
        name: 'x',
        send: async () => {
          sends++;
          throw new DeliveryError('HTTP 400', true);
        },
      },
      { counters, log, retry: { baseMs: 1, maxMs: 1, attempts: 5 } },
    );
    q.push('j', ev('a'));
    await q.idle();
    expect(sends).toBe(1);
    expect(counters.n).toEqual({ failed: 1, 'dead:refused': 1 });
  });

  it('a full queue drops queued attestation failures for a lock, an unlock or a revocation, never those for a failure', async () => {
    // One enrolled machine can make attestation failures as fast as it likes (review of issue #16).
    const counters = counting();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const sent: string[] = [];
    const q = new DeliveryQueue(
      {
        name: 'slow',
        send: async (_j, e) => {
          await gate;
          sent.push(e.id);
        },
      },
      { counters, log, limit: 3 },
    );
    const failed = (id: string): SigilEvent => ({ ...ev(id), type: 'attestation_failed' });
    for (const id of ['f1', 'f2', 'f3', 'f4']) q.push('j', failed(id)); // f4: full, dropped
    q.push('j', ev('lock')); // drops f3 (the newest failure not in flight)
    q.push('j', { ...ev('rev'), type: 'certificate_revoked' }); // drops f2
    q.push('j', { ...ev('unlock'), type: 'instance_unlocked' }); // only f1 (in flight) and priority: dropped
    expect(q.length).toBe(3);
    expect(counters.n['dead:queue_full']).toBe(4);
    release();
    await q.idle();
    expect(sent).toEqual(['f1', 'lock', 'rev']);
  });

  it('a slow receiver: the queue holds at most `limit` events; the next ones are dead letters', async () => {
    const counters = counting();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const q = new DeliveryQueue({ name: 'slow', send: () => gate }, { counters, log, limit: 3 });
    for (const id of ['a', 'b', 'c', 'd', 'e']) q.push('j', ev(id));
    expect(q.length).toBe(3);
    expect(counters.n['dead:queue_full']).toBe(2);
    release();
    await q.idle();
    expect(counters.n['delivered']).toBe(3);
  });
});

describe('--event-webhook', () => {
  it('takes https URLs only, without credentials; the sink is named without the query string', async () => {
    const { parseWebhookUrl, WebhookSink } = await import('../../../src/server/events/webhook.js');
    expect(parseWebhookUrl('https://siem.example.org/hook').host).toBe('siem.example.org');
    for (const bad of ['http://siem.example.org/hook', 'https://u:p@siem.example.org/hook', 'not a url'])
      expect(() => parseWebhookUrl(bad)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    expect(new WebhookSink({ url: 'https://siem.example.org/hook?token=secret' }).name).toBe(
      'https://siem.example.org/hook',
    );
  });
});
