/**
 * Transport failover (agent/transports.ts IssuerLink): a retryable failure on one transport
 * tries the next with the very same request; a verified refusal stops; every answer is
 * verified against the pinned root whichever transport brought it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJoinRequest } from '../../../src/agent/requests.js';
import { IssuerLink } from '../../../src/agent/transports.js';
import { SigilError } from '../../../src/errors.js';
import type { Jws } from '../../../src/protocol/jws.js';
import { initDataDir, loadCaMaterial } from '../../../src/server/data-dir.js';
import { createServerIdentity, type IssuerContext } from '../../../src/server/issuer.js';
import { responsePayload, signErrorResponse, signResponse } from '../../../src/server/ops/respond.js';
import { StoredAnswerCodec } from '../../../src/server/ops/stored-answer.js';
import { CertificateIssuer } from '../../../src/pki/issue.js';
import { requestHash } from '../../../src/protocol/verify-response.js';
import type { OutboxEntry } from '../../../src/agent/state/index.js';
import type { IssuerTransport } from '../../../src/transport/types.js';

let dir: string;
let ctx: IssuerContext;
let root: string;
let entry: OutboxEntry;
let envelope: Jws;

const result = (requestId: string) =>
  responsePayload(ctx, 'join', requestId, {
    instance_id: 'i-1',
    spiffe_id: 'spiffe://example.org/bot/gw/i-1',
    bot: 'gw',
    generation: 1,
    serial: '01',
    chain: ['x'],
    bundle: ['y'],
    not_before: 1,
    not_after: 2,
    ttl_s: 1,
    requested_ttl_s: 1,
    ttl_clamped: false,
    renew_after: 2,
    key_storage: 'software',
    exportable: true,
  });

function fake(kind: 'https' | 'mqtt', answer: () => unknown): IssuerTransport & { seen: Jws[] } {
  const seen: Jws[] = [];
  return {
    kind,
    url: `${kind}://fake-${Math.random().toString(36).slice(2, 6)}`,
    seen,
    ensureRoot: async () => root,
    post: async (_op, env) => {
      seen.push(env);
      return answer();
    },
    bundle: async () => ({}),
    close: () => undefined,
  };
}

const down = (): never => {
  throw new SigilError('issuer_unreachable', 'connection refused');
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-link-'));
  initDataDir(join(dir, 'issuer'), 'example.org');
  const ca = loadCaMaterial(join(dir, 'issuer'));
  const engine = new CertificateIssuer({ caCertDer: ca.intermediateDer, caKey: ca.intermediateKey });
  ctx = {
    ca,
    server: createServerIdentity(ca, engine),
    now: Date.now,
    storedAnswers: new StoredAnswerCodec([]),
  } as unknown as IssuerContext;
  root = ca.rootPem;
  const built = await buildJoinRequest({ method: 'token', evidence: async () => ({}), now: Date.now() });
  entry = built.entry;
  envelope = built.envelope;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('IssuerLink failover', () => {
  it('a retryable failure moves on to the next transport with the same request', async () => {
    const a = fake('mqtt', down);
    const b = fake('https', () => signResponse(ctx, result(entry.requestId)));
    const link = new IssuerLink([a, b]);
    expect((await link.send(entry, root, Date.now)).instance_id).toBe('i-1');
    expect(a.seen).toEqual([envelope]);
    expect(b.seen).toEqual([envelope]);
    expect(link.lastUsed).toBe(b);
    expect(link.stats.map((s) => [s.kind, s.failures, s.successes])).toEqual([
      ['mqtt', 1, 0],
      ['https', 0, 1],
    ]);
  });

  it('a verified refusal stops: the next transport would carry the same answer', async () => {
    const a = fake('mqtt', () =>
      signErrorResponse(ctx, 'join', entry.requestId, requestHash(envelope), new SigilError('token_reused')),
    );
    const b = fake('https', () => signResponse(ctx, result(entry.requestId)));
    const link = new IssuerLink([a, b]);
    await expect(link.send(entry, root, Date.now)).rejects.toMatchObject({ code: 'token_reused' });
    expect(b.seen).toEqual([]);
  });

  it('an answer that does not verify (forged, or a refusal bound to another request) is retryable: next transport', async () => {
    for (const bad of [
      () => ({ protected: 'x', payload: 'y', signature: 'z' }),
      () => signErrorResponse(ctx, 'join', entry.requestId, 'f'.repeat(64), new SigilError('token_reused')),
      () => signErrorResponse(ctx, 'join', null, null, new SigilError('malformed_json')),
      () => signResponse(ctx, result('some-other-request-id')),
    ]) {
      const b = fake('https', () => signResponse(ctx, result(entry.requestId)));
      const link = new IssuerLink([fake('mqtt', bad), b]);
      expect((await link.send(entry, root, Date.now)).generation).toBe(1);
      expect(b.seen).toHaveLength(1);
    }
  });

  it('all transports failing: the last code, a message naming each', async () => {
    const a = fake('mqtt', down);
    const b = fake('https', () => {
      throw new SigilError('rate_limited', 'slow down', { retryAfterMs: 5000 });
    });
    const e = (await new IssuerLink([a, b]).send(entry, root, Date.now).catch((x: unknown) => x)) as SigilError;
    expect(e.code).toBe('rate_limited');
    expect(e.retryAfterMs).toBe(5000);
    expect(e.message).toContain(a.url);
    expect(e.message).toContain(b.url);
  });
});
