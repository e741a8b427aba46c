/**
 * join/tpm/reattest-wire.ts readReattest: well-formed evidence is taken without zod, everything
 * else goes through tpmReattestSchema. The fast path must accept nothing the schema refuses: each
 * malformation the schema names is refused here with the schema's own message, and a few thousand
 * random mutations of good evidence never pass the fast path unless the schema passes them too.
 */
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { parseWith } from '../../../src/protocol/messages.js';
import { readReattest, tpmReattestSchema } from '../../../src/join/tpm/reattest-wire.js';

const HEX64 = 'ab'.repeat(32);
const good = (): Record<string, any> => ({
  quote: { attest: Buffer.alloc(120, 7).toString('base64'), signature: Buffer.alloc(70, 9).toString('base64') },
  pcr_values: [
    { bank: 'sha256', pcr: 0, digest: HEX64 },
    { bank: 'sha256', pcr: 7, digest: '00'.repeat(32) },
    { bank: 'sha1', pcr: 23, digest: '11'.repeat(20) },
  ],
});

/** What the schema alone says: the parsed value, or the refusal's code and message. */
function bySchema(ev: unknown): { ok: true } | { ok: false; code: string; message: string } {
  try {
    parseWith(tpmReattestSchema, ev, 'tpm_evidence_malformed', 'attestation');
    return { ok: true };
  } catch (e) {
    const s = e as SigilError;
    return { ok: false, code: s.code, message: s.message };
  }
}

function byReader(ev: unknown): { ok: true; same: boolean } | { ok: false; code: string; message: string } {
  try {
    return { ok: true, same: readReattest(ev) === ev };
  } catch (e) {
    const s = e as SigilError;
    return { ok: false, code: s.code, message: s.message };
  }
}

const mutations: Array<[string, (e: Record<string, any>) => unknown]> = [
  ['not an object', () => 'quote'],
  ['null', () => null],
  ['an array', (e) => [e]],
  ['an unknown top-level key', (e) => ({ ...e, extra: 1 })],
  ['no quote', ({ quote: _q, ...rest }) => rest],
  ['no pcr_values', ({ pcr_values: _p, ...rest }) => rest],
  ['quote not an object', (e) => ({ ...e, quote: 'x' })],
  ['quote as an array', (e) => ({ ...e, quote: [e.quote.attest, e.quote.signature] })],
  ['an unknown key in quote', (e) => ({ ...e, quote: { ...e.quote, x: 'AAAA' } })],
  ['no signature', (e) => ({ ...e, quote: { attest: e.quote.attest } })],
  ['attest not base64', (e) => ({ ...e, quote: { ...e.quote, attest: 'not base64!' } })],
  ['attest base64url', (e) => ({ ...e, quote: { ...e.quote, attest: '-_-_' } })],
  ['attest badly padded', (e) => ({ ...e, quote: { ...e.quote, attest: 'AAA' } })],
  ['attest too long', (e) => ({ ...e, quote: { ...e.quote, attest: 'AAAA'.repeat(343) } })],
  ['signature a number', (e) => ({ ...e, quote: { ...e.quote, signature: 5 } })],
  ['pcr_values empty', (e) => ({ ...e, pcr_values: [] })],
  ['97 pcr_values', (e) => ({ ...e, pcr_values: Array.from({ length: 97 }, () => e.pcr_values[0]) })],
  ['pcr_values an object', (e) => ({ ...e, pcr_values: { 0: e.pcr_values[0] } })],
  ['a value that is not an object', (e) => ({ ...e, pcr_values: [...e.pcr_values, 'x'] })],
  ['a value with an unknown key', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], note: 'x' }] })],
  ['a value without digest', (e) => ({ ...e, pcr_values: [{ bank: 'sha256', pcr: 1 }] })],
  ['an unknown bank', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], bank: 'md5' }] })],
  ['bank upper case', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], bank: 'SHA256' }] })],
  ['PCR 24', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], pcr: 24 }] })],
  ['PCR -1', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], pcr: -1 }] })],
  ['PCR 1.5', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], pcr: 1.5 }] })],
  ['PCR as text', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], pcr: '1' }] })],
  ['PCR NaN', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], pcr: NaN }] })],
  ['digest upper case', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], digest: HEX64.toUpperCase() }] })],
  ['digest of 31 bytes', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], digest: 'ab'.repeat(31) }] })],
  ['digest not hex', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], digest: 'zz'.repeat(32) }] })],
  ['digest a number', (e) => ({ ...e, pcr_values: [{ ...e.pcr_values[0], digest: 0 }] })],
  ['event_log not base64', (e) => ({ ...e, event_log: '%%%%' })],
  ['event_log too long', (e) => ({ ...e, event_log: 'AAAA'.repeat(12_289) })],
  ['event_log null', (e) => ({ ...e, event_log: null })],
];

describe('readReattest', () => {
  it('takes well-formed evidence as it is (no copy), with or without an event log', () => {
    for (const ev of [good(), { ...good(), event_log: Buffer.from('log').toString('base64') }]) {
      expect(bySchema(ev)).toEqual({ ok: true });
      expect(byReader(ev)).toEqual({ ok: true, same: true });
    }
    // The largest sizes the schema allows pass too.
    const big = good();
    big.quote.attest = 'AAAA'.repeat(342);
    big.pcr_values = Array.from({ length: 96 }, (_, i) => ({ bank: 'sha512', pcr: i % 24, digest: 'cd'.repeat(64) }));
    // (The schema must accept them too: were it made stricter, this fails and readReattest must follow.)
    expect(bySchema(big)).toEqual({ ok: true });
    expect(byReader(big)).toEqual({ ok: true, same: true });
  });

  it.each(mutations)('refuses evidence with %s, with the schema’s code and message', (_name, mutate) => {
    const ev = mutate(good());
    const schema = bySchema(ev);
    expect(schema.ok).toBe(false);
    expect(byReader(ev)).toEqual(schema);
    expect((schema as { code: string }).code).toBe('tpm_evidence_malformed');
  });

  it('accepts unusual but valid forms as the schema does (a null prototype; an explicit undefined event_log via the schema)', () => {
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, good());
    expect(bySchema(bare)).toEqual({ ok: true });
    expect(byReader(bare).ok).toBe(true);
    // A class instance is not JSON's kind of object: the schema judges it.
    class Evidence {
      quote = good().quote;
      pcr_values = good().pcr_values;
    }
    expect(byReader(new Evidence())).toEqual({ ok: true, same: false });
    const undef = { ...good(), event_log: undefined };
    expect(bySchema(undef)).toEqual({ ok: true });
    expect(byReader(undef)).toEqual({ ok: true, same: false });
  });

  it('never takes, by the fast path, what the schema refuses (random mutations of good evidence)', () => {
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const odd: unknown[] = [
      '',
      'A',
      'AAAA',
      'AA==',
      'AB=C',
      '00',
      HEX64,
      HEX64.slice(1),
      -0,
      0,
      23,
      24,
      0.5,
      1e21,
      Infinity,
      null,
      undefined,
      true,
      [],
      {},
      'sha384',
      'sha3',
    ];
    let fast = 0;
    for (let i = 0; i < 3000; i++) {
      const ev = good();
      const targets: Array<[Record<string, any> | any[], string | number]> = [
        [ev, 'quote'],
        [ev, 'pcr_values'],
        [ev, 'event_log'],
        [ev, 'x'],
        [ev.quote, 'attest'],
        [ev.quote, 'signature'],
        [ev.quote, 'y'],
        [ev.pcr_values, rnd(4)],
        [ev.pcr_values[0], 'bank'],
        [ev.pcr_values[1], 'pcr'],
        [ev.pcr_values[2], 'digest'],
        [ev.pcr_values[2], 'z'],
      ];
      for (let k = 0; k <= rnd(2); k++) {
        const [obj, key] = targets[rnd(targets.length)]!;
        if (rnd(5) === 0) delete (obj as Record<string | number, unknown>)[key];
        else (obj as Record<string | number, unknown>)[key] = odd[rnd(odd.length)];
      }
      const r = byReader(ev);
      if (r.ok && r.same) {
        fast++;
        expect(bySchema(ev)).toEqual({ ok: true });
      } else expect(r).toEqual(bySchema(ev).ok ? { ok: true, same: false } : bySchema(ev));
    }
    // Some mutations keep the evidence well-formed (a PCR 0 → 23, a digest swapped for another): exercised too.
    expect(fast).toBeGreaterThan(50);
  });
});
