/**
 * Idempotent replays go only to the signer that made the request (server/ops/respond.ts
 * replayIfSeen, issue #11). The request hash already covers the signer's x5c header, so an
 * end-to-end test cannot tell the signer column's check from the hash check; this one can.
 */
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { AnswerSeal } from '../../../src/server/ops/answer-seal.js';
import type { IssuerContext } from '../../../src/server/issuer.js';
import { replayIfSeen, type SignedRequest } from '../../../src/server/ops/respond.js';
import type { IdempotencyRecord, TxStores } from '../../../src/server/store/types.js';

// Unsealed rows (createdAt 1) inside the legacy window: these tests are about the bindings, not the seal.
const legacyCtx = { answerSeal: new AnswerSeal(Buffer.alloc(32), 1e12), now: () => 2 } as unknown as IssuerContext;

const answer = (instance: string): string =>
  JSON.stringify({ v: 1, op: 'renew', request_id: 'r'.repeat(16), issued_at: 1, result: { instance_id: instance } });

function storesWith(rec: IdempotencyRecord | undefined): TxStores {
  return {
    idempotency: { get: async () => rec, put: async () => undefined, prune: async () => 0 },
  } as unknown as TxStores;
}

const req = (over: Partial<SignedRequest> = {}): SignedRequest => ({
  requestId: 'r'.repeat(16),
  hash: 'aa'.repeat(32),
  legacyHash: 'bb'.repeat(32),
  signer: { keyHash: 'sha256:k1', instanceId: 'i-1' },
  ...over,
});

const stored = (over: Partial<IdempotencyRecord> = {}): IdempotencyRecord => ({
  requestId: 'r'.repeat(16),
  requestHash: 'aa'.repeat(32),
  signer: 'i-1 sha256:k1',
  op: 'renew',
  response: answer('i-1'),
  createdAt: 1,
  ...over,
});

const codeOf = async (fn: () => Promise<unknown>): Promise<string | undefined> => {
  try {
    await fn();
    return undefined;
  } catch (e) {
    return (e as SigilError).code;
  }
};

describe('replayIfSeen', () => {
  it('answers the same signer with the same request', async () => {
    expect(await replayIfSeen(legacyCtx, storesWith(stored()), req())).toBe(answer('i-1'));
    expect(await replayIfSeen(legacyCtx, storesWith(undefined), req())).toBeUndefined();
  });

  it('refuses the same hash from another signer (instance or key) with request_id_conflict', async () => {
    expect(
      await codeOf(() =>
        replayIfSeen(legacyCtx, storesWith(stored()), req({ signer: { keyHash: 'sha256:k1', instanceId: 'i-2' } })),
      ),
    ).toBe('request_id_conflict');
    expect(
      await codeOf(() =>
        replayIfSeen(legacyCtx, storesWith(stored()), req({ signer: { keyHash: 'sha256:k2', instanceId: 'i-1' } })),
      ),
    ).toBe('request_id_conflict');
    expect(
      await codeOf(() =>
        replayIfSeen(legacyCtx, storesWith(stored({ signer: 'sha256:k1' })), req({ signer: { keyHash: 'sha256:k1' } })),
      ),
    ).toBeUndefined();
  });

  it('refuses a row whose seal fails before any binding is looked at (stored_answer_invalid)', async () => {
    const other = new AnswerSeal(Buffer.alloc(32, 1), 0);
    const forged = stored({ createdAt: 5 });
    forged.response = other.seal(forged, answer('i-1'));
    expect(await codeOf(() => replayIfSeen(legacyCtx, storesWith(forged), req()))).toBe('stored_answer_invalid');
    // The same row sealed with the issuer's key is answered.
    const ctx = { answerSeal: new AnswerSeal(Buffer.alloc(32), 0), now: () => 6 } as unknown as IssuerContext;
    const genuine = stored({ createdAt: 5 });
    genuine.response = (ctx.answerSeal as AnswerSeal).seal(genuine, answer('i-1'));
    expect(await replayIfSeen(ctx, storesWith(genuine), req())).toBe(answer('i-1'));
  });

  it('refuses an answer made at or before a withdrawal of its signing key (answeredAfter), and only that', async () => {
    const at = (createdAt: number, answeredAfter?: number) =>
      codeOf(() =>
        replayIfSeen(
          legacyCtx,
          storesWith(stored({ createdAt })),
          req(),
          answeredAfter !== undefined ? { answeredAfter } : {},
        ),
      );
    expect(await at(1, 1)).toBe('signing_key_withdrawn');
    expect(await at(1, 5)).toBe('signing_key_withdrawn');
    expect(await at(1, 0)).toBeUndefined(); // made after: replayed
    expect(await at(1)).toBeUndefined();
    // Checked before anything else: even another signer's resend learns nothing more.
    expect(
      await codeOf(() =>
        replayIfSeen(legacyCtx, storesWith(stored()), req({ signer: { keyHash: 'sha256:k2' } }), { answeredAfter: 1 }),
      ),
    ).toBe('signing_key_withdrawn');
  });

  it("hands the answer to answerCheck only once it is known to be this signer's, and its refusal stands", async () => {
    const looked: string[] = [];
    const answerCheck = async (response: string): Promise<void> => {
      looked.push(response);
      if (response.includes('i-9')) throw new SigilError('signing_key_withdrawn', 'carries a withdrawn key');
    };
    expect(await replayIfSeen(legacyCtx, storesWith(stored()), req(), { answerCheck })).toBe(answer('i-1'));
    expect(looked).toEqual([answer('i-1')]);
    expect(
      await codeOf(() =>
        replayIfSeen(legacyCtx, storesWith(stored({ response: answer('i-9') })), req(), { answerCheck }),
      ),
    ).toBe('signing_key_withdrawn');
    // Another signer's resend is a conflict; the answer is not even looked at.
    looked.length = 0;
    expect(
      await codeOf(() =>
        replayIfSeen(legacyCtx, storesWith(stored()), req({ signer: { keyHash: 'sha256:k2' } }), { answerCheck }),
      ),
    ).toBe('request_id_conflict');
    expect(looked).toEqual([]);
    // A legacy row's answer is looked at too.
    const legacy = stored({ signer: '', requestHash: 'bb'.repeat(32) });
    const refuseAll = async (): Promise<void> => {
      throw new SigilError('signing_key_withdrawn', 'carries a withdrawn key');
    };
    expect(await codeOf(() => replayIfSeen(legacyCtx, storesWith(legacy), req(), { answerCheck: refuseAll }))).toBe(
      'signing_key_withdrawn',
    );
  });

  it('a row read outside a transaction is answered only once the store says it is on disk (whenDurable)', async () => {
    let flushed!: () => void;
    let asked = 0;
    const stores = Object.assign(storesWith(stored()), {
      whenDurable: () => {
        asked++;
        return new Promise<void>((resolve) => (flushed = resolve));
      },
    });
    let answered: string | undefined;
    const replay = replayIfSeen(legacyCtx, stores, req()).then((a) => (answered = a));
    await expect.poll(() => asked).toBe(1);
    expect(answered).toBeUndefined();
    flushed();
    await replay;
    expect(answered).toBe(answer('i-1'));
  });

  it('refuses other content from the same signer', async () => {
    expect(await codeOf(() => replayIfSeen(legacyCtx, storesWith(stored()), req({ hash: 'cc'.repeat(32) })))).toBe(
      'request_id_conflict',
    );
  });

  it('answers a row stored before migration 4 by payload hash, only to the instance it was for', async () => {
    const legacy = stored({ signer: '', requestHash: 'bb'.repeat(32) });
    expect(await replayIfSeen(legacyCtx, storesWith(legacy), req())).toBe(answer('i-1'));
    expect(
      await codeOf(() =>
        replayIfSeen(legacyCtx, storesWith(legacy), req({ signer: { keyHash: 'sha256:k9', instanceId: 'i-2' } })),
      ),
    ).toBe('request_id_conflict');
    expect(await codeOf(() => replayIfSeen(legacyCtx, storesWith(legacy), req({ legacyHash: 'dd'.repeat(32) })))).toBe(
      'request_id_conflict',
    );
    // A legacy join answer: its payload hash binds the key (the CSR that verified the envelope).
    expect(await replayIfSeen(legacyCtx, storesWith(legacy), req({ signer: { keyHash: 'sha256:k1' } }))).toBe(
      answer('i-1'),
    );
  });
});
