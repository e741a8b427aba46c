/**
 * Idempotent replays go only to the signer that made the request (server/ops/respond.ts
 * replayIfSeen, issue #11). The request hash already covers the signer's x5c header, so an
 * end-to-end test cannot tell the signer column's check from the hash check; this one can.
 */
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { replayIfSeen, type SignedRequest } from '../../../src/server/ops/respond.js';
import type { IssuerContext } from '../../../src/server/issuer.js';
import type { IdempotencyRecord } from '../../../src/server/store/types.js';

const answer = (instance: string): string => JSON.stringify({ v: 1, op: 'renew', request_id: 'r'.repeat(16), issued_at: 1, result: { instance_id: instance } });

function ctxWith(rec: IdempotencyRecord | undefined): IssuerContext {
  return { stores: { idempotency: { get: () => rec, put: () => undefined, prune: () => 0 } } } as unknown as IssuerContext;
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

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (e) {
    return (e as SigilError).code;
  }
};

describe('replayIfSeen', () => {
  it('answers the same signer with the same request', () => {
    expect(replayIfSeen(ctxWith(stored()), req())).toBe(answer('i-1'));
    expect(replayIfSeen(ctxWith(undefined), req())).toBeUndefined();
  });

  it('refuses the same hash from another signer (instance or key) with request_id_conflict', () => {
    expect(codeOf(() => replayIfSeen(ctxWith(stored()), req({ signer: { keyHash: 'sha256:k1', instanceId: 'i-2' } })))).toBe('request_id_conflict');
    expect(codeOf(() => replayIfSeen(ctxWith(stored()), req({ signer: { keyHash: 'sha256:k2', instanceId: 'i-1' } })))).toBe('request_id_conflict');
    expect(codeOf(() => replayIfSeen(ctxWith(stored({ signer: 'sha256:k1' })), req({ signer: { keyHash: 'sha256:k1' } })))).toBeUndefined();
  });

  it('refuses other content from the same signer', () => {
    expect(codeOf(() => replayIfSeen(ctxWith(stored()), req({ hash: 'cc'.repeat(32) })))).toBe('request_id_conflict');
  });

  it('answers a row stored before migration 4 by payload hash, only to the instance it was for', () => {
    const legacy = stored({ signer: '', requestHash: 'bb'.repeat(32) });
    expect(replayIfSeen(ctxWith(legacy), req())).toBe(answer('i-1'));
    expect(codeOf(() => replayIfSeen(ctxWith(legacy), req({ signer: { keyHash: 'sha256:k9', instanceId: 'i-2' } })))).toBe('request_id_conflict');
    expect(codeOf(() => replayIfSeen(ctxWith(legacy), req({ legacyHash: 'dd'.repeat(32) })))).toBe('request_id_conflict');
    // A legacy join answer: its payload hash binds the key (the CSR that verified the envelope).
    expect(replayIfSeen(ctxWith(legacy), req({ signer: { keyHash: 'sha256:k1' } }))).toBe(answer('i-1'));
  });
});
