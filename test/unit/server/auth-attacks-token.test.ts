/**
 * The token join's checks (join/token/server.ts) one at a time, with explicit instants and a
 * token store that says exactly what each case needs. Attacks: a token the issuer never made, a
 * proof made for another request or key (a captured join replayed with a fresh CSR), a used token,
 * a token at exactly its expiry, and the consume at commit losing a race (the early check passed).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import type { JoinAttestPort } from '../../../src/join/port.js';
import { TokenJoinAgent } from '../../../src/join/token/agent.js';
import { TokenJoinServer } from '../../../src/join/token/server.js';
import { tokenId, tokenKey } from '../../../src/join/token/wire.js';
import { SoftwareSigner } from '../../../src/keystore/index.js';
import type { JoinTokenRecord } from '../../../src/server/store/types.js';

const T = Date.UTC(2026, 5, 1);
const token = randomBytes(32).toString('base64url');
const id = tokenId(tokenKey(token).publicRaw);
const spki = SoftwareSigner.generate().publicKeySpki();
const record = (over: Partial<JoinTokenRecord> = {}): JoinTokenRecord => ({
  hash: id,
  bot: 'gw',
  createdAt: T - 60_000,
  expiresAt: T + 60_000,
  usedAt: null,
  usedBy: null,
  ...over,
});
const port = (rec: JoinTokenRecord | undefined, asked: string[] = []): JoinAttestPort =>
  ({
    token: async (i: string) => {
      asked.push(i);
      return rec;
    },
  }) as unknown as JoinAttestPort;

async function attest(
  rec: JoinTokenRecord | undefined,
  o: { now?: number; requestId?: string; spkiDer?: Buffer } = {},
) {
  const evidence = await new TokenJoinAgent(token).evidence({ requestId: 'req-1', spkiDer: spki });
  return new TokenJoinServer().attest(
    { evidence, requestId: o.requestId ?? 'req-1', spkiDer: o.spkiDer ?? spki, now: o.now ?? T, remote: null },
    port(rec),
  );
}
async function refusal(p: Promise<unknown>): Promise<SigilError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('token join: attest', () => {
  it('a known, unused, unexpired token with a proof for this request and key is attested for its bot', async () => {
    const asked: string[] = [];
    const evidence = await new TokenJoinAgent(token).evidence({ requestId: 'req-1', spkiDer: spki });
    const a = await new TokenJoinServer().attest(
      { evidence, requestId: 'req-1', spkiDer: spki, now: T, remote: null },
      port(record(), asked),
    );
    expect(asked).toEqual([id]);
    expect(a.bot).toBe('gw');
    expect(a.canReattest).toBe(false);
    expect(a.facts).toEqual({ token_id_prefix: id.slice(0, 12) });
  });

  it('a token the issuer does not know: token_invalid', async () => {
    const e = await refusal(attest(undefined));
    expect([e.code, e.message]).toEqual(['token_invalid', 'the join token is not known to this issuer']);
  });

  it('a proof made for another request id, or for another key: token_invalid', async () => {
    for (const o of [{ requestId: 'req-2' }, { spkiDer: SoftwareSigner.generate().publicKeySpki() }]) {
      const e = await refusal(attest(record(), o));
      expect([e.code, e.message]).toEqual([
        'token_invalid',
        'the proof of token possession does not verify for this request and key',
      ]);
    }
  });

  it('a used token: token_reused, naming when and how to make a new one', async () => {
    const e = await refusal(attest(record({ usedAt: T - 1000 })));
    expect(e.code).toBe('token_reused');
    expect(e.message).toBe(
      `the join token was already used at ${new Date(T - 1000).toISOString()}; create a new one with: sigil ctl --data-dir <issuer-data-dir> token create --bot gw`,
    );
  });

  it('expired at exactly expiresAt; valid one millisecond before', async () => {
    await expect(attest(record({ expiresAt: T + 1 }))).resolves.toBeDefined();
    const e = await refusal(attest(record({ expiresAt: T })));
    expect(e.code).toBe('token_expired');
    expect(e.message).toBe(
      `the join token expired at ${new Date(T).toISOString()}; create a new one with: sigil ctl --data-dir <issuer-data-dir> token create --bot gw`,
    );
  });
});

describe('token join: commit', () => {
  const tx = (r: { ok: true } | { ok: false; reason: 'token_invalid' | 'token_expired' | 'token_reused' }) => {
    const consumed: string[] = [];
    return {
      consumed,
      tx: {
        consumeToken: async (i: string) => {
          consumed.push(i);
          return r;
        },
      } as never,
    };
  };

  it('consumes this token inside the issuing transaction', async () => {
    const a = await attest(record());
    const t = tx({ ok: true });
    await a.commit!(t.tx);
    expect(t.consumed).toEqual([id]);
  });

  it('a concurrent join that consumed it first: token_reused saying so; other reasons keep their code', async () => {
    const a = await attest(record());
    const lost = await refusal(a.commit!(tx({ ok: false, reason: 'token_reused' }).tx));
    expect([lost.code, lost.message]).toEqual([
      'token_reused',
      'the join token was already used (a concurrent join won)',
    ]);
    const expired = await refusal(a.commit!(tx({ ok: false, reason: 'token_expired' }).tx));
    expect(expired.code).toBe('token_expired');
    expect(expired.message).not.toMatch(/concurrent join/);
  });
});
