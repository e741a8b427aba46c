/**
 * What `npm run mutate -- renew-token` found untested in the renewal and token paths (issue #20),
 * each through the real handlers of an in-process issuer with an explicit clock:
 *
 * - the generation decision at its exact limits: a renewal of the previous generation whose
 *   successor was issued at the very millisecond it arrived is overtaken (no lock); a renewal
 *   TWO generations behind is a stolen copy even then (lock);
 * - what a renewal records and answers: the audit row (every field), the transport certificate
 *   when `transport_csr` is sent, the proven key storage when a join method vouches for the key
 *   (`key_attestation`), the metrics, and a replay that changes none of them;
 * - the refusal audit row names the signer's bot and instance;
 * - idempotency rows (respond.ts): the request hash a legacy row is keyed by, a legacy answer
 *   that names no instance, and the exact refusal messages; refusals signed for MQTT carry the
 *   retry hint only when there is one;
 * - the token join's evidence is parsed as token evidence (token_invalid, naming it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { TokenJoinServer } from '../../../src/join/token/server.js';
import { SoftwareSigner, type Signer } from '../../../src/keystore/index.js';
import { buildCsr } from '../../../src/pki/csr.js';
import { fromPem, toPem } from '../../../src/pki/pem.js';
import { b64u, type Jws } from '../../../src/protocol/jws.js';
import { verifyResponse } from '../../../src/protocol/verify-response.js';
import type { IssuerContext } from '../../../src/server/issuer.js';
import { handleRenew } from '../../../src/server/ops/renew.js';
import { AnswerSeal } from '../../../src/server/ops/answer-seal.js';
import { replayIfSeen, signedRequest, signErrorResponse, type SignedRequest } from '../../../src/server/ops/respond.js';
import type { IdempotencyRecord, TxStores } from '../../../src/server/store/types.js';
import { newRequestId } from '../../../src/util/secret.js';
import { sign, startIssuer, type Harness, type Identity } from '../../integration/harness.js';
import { createHash } from 'node:crypto';

// Unsealed rows (createdAt 1) inside the legacy window: these tests are about the bindings, not the seal.
const legacyCtx = { answerSeal: new AnswerSeal(Buffer.alloc(32), 1e12), now: () => 2 } as unknown as IssuerContext;

let h: Harness;
beforeAll(async () => {
  h = await startIssuer();
});
afterAll(async () => {
  await h?.close();
});

/** The issuer's context with its clock stopped at `t`. */
const at = (t: number, ctx: IssuerContext = h.ctx): IssuerContext => ({ ...ctx, now: () => t });

const ders = (chainPem: readonly string[]): Buffer[] => chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
const csrPem = async (s: Signer = SoftwareSigner.generate()): Promise<string> =>
  toPem('CERTIFICATE REQUEST', await buildCsr(s));

/** A renew request of `id` at `t`, with `extra` fields; returns the envelope, its request id and new key. */
async function renewal(
  id: Identity,
  t: number,
  extra: Record<string, unknown> = {},
): Promise<{ envelope: Jws; requestId: string; newSigner: Signer }> {
  const newSigner = SoftwareSigner.generate();
  const requestId = newRequestId();
  const payload = {
    v: 1,
    op: 'renew',
    request_id: requestId,
    timestamp: t,
    instance_id: id.result.instance_id,
    serial: id.result.serial,
    csr: await csrPem(newSigner),
    key_storage: 'software',
    ...extra,
  };
  return { envelope: await sign(id.signer, payload, ders(id.chainPem)), requestId, newSigner };
}

async function renewAt(ctx: IssuerContext, id: Identity, t: number): Promise<Identity> {
  const r = await renewal(id, t);
  const res = await handleRenew(ctx, r.envelope, null);
  const payload = verifyResponse(res, 'renew', r.requestId, h.rootPem);
  return { signer: r.newSigner, chainPem: payload.result.chain, result: payload.result };
}

async function refusalOf(p: Promise<unknown>): Promise<SigilError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('renew: the generation decision at its limits', () => {
  it('overtaken at the very millisecond: the successor issued at this request’s arrival is generation_mismatch, NOT locked', async () => {
    const id = await h.join();
    const t = h.ctx.now();
    const [a, b] = [await renewal(id, t), await renewal(id, t)];
    await handleRenew(at(t), a.envelope, null); // the successor, updatedAt = t
    const e = await refusalOf(handleRenew(at(t), b.envelope, null));
    expect(e.code).toBe('generation_mismatch');
    expect(e.message).toBe('a concurrent renewal already advanced this instance');
    expect((await h.ctx.stores.instances.get(id.result.instance_id))?.locked).toBe(false);
    // One millisecond later the same old generation is a stolen key: locked.
    const c = await renewal(id, t + 1);
    const late = await refusalOf(handleRenew(at(t + 1), c.envelope, null));
    expect(late.code).toBe('generation_mismatch');
    expect(late.message).toMatch(/is now locked/);
    expect((await h.ctx.stores.instances.get(id.result.instance_id))?.locked).toBe(true);
  });

  it('two generations behind is a stolen copy even at the successor’s own millisecond: locked', async () => {
    const first = await h.join();
    const t = h.ctx.now();
    const second = await renewAt(at(t), first, t);
    await renewAt(at(t), second, t);
    const old = await renewal(first, t);
    const e = await refusalOf(handleRenew(at(t), old.envelope, null));
    expect(e.code).toBe('generation_mismatch');
    expect(e.message).toMatch(/is now locked/);
    expect((await h.ctx.stores.instances.get(first.result.instance_id))?.locked).toBe(true);
  });
});

describe('renew: what a renewal records and answers', () => {
  it('one audit row with every field; the transport certificate asked for; the metrics; a replay changes nothing', async () => {
    const id = await h.join();
    const t = h.ctx.now();
    const transportSigner = SoftwareSigner.generate();
    const r = await renewal(id, t, { transport_csr: await csrPem(transportSigner) });
    const renewalsBefore = h.ctx.metrics.renewals.get({});
    const seq = await h.lastAuditSeq();
    const res = await handleRenew(at(t), r.envelope, '192.0.2.7');
    const result = verifyResponse(res, 'renew', r.requestId, h.rootPem).result;
    expect(result.generation).toBe(2);
    expect(result.transport_chain).toHaveLength(2);
    const rows = await h.auditAfter(seq);
    expect(rows).toHaveLength(1);
    const transport = (await h.ctx.stores.certificates.listByInstance(id.result.instance_id)).filter(
      (c) => c.kind === 'mqtt-transport',
    );
    expect(transport).toHaveLength(1);
    expect(transport[0]!.spkiHash).toBe(
      'sha256:' + createHash('sha256').update(transportSigner.publicKeySpki()).digest('hex'),
    );
    expect(rows[0]).toMatchObject({
      action: 'renew',
      outcome: 'ok',
      actor: 'agent',
      bot: 'gw',
      instanceId: id.result.instance_id,
      method: 'token',
      remote: '192.0.2.7',
      details: {
        serial: result.serial,
        previous_serial: id.result.serial,
        generation: 2,
        ttl_s: result.ttl_s,
        ttl_clamped: result.ttl_clamped,
        key_storage: 'software',
        exportable: true,
        transport_serial: transport[0]!.serial,
      },
    });
    expect(h.ctx.metrics.renewals.get({})).toBe(renewalsBefore + 1);
    // The issuance histogram is in seconds: this renewal took well under a minute.
    const sum = Number(/sigil_issuance_seconds_sum ([\d.e+-]+)/.exec(h.ctx.metrics.registry.render())?.[1]);
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(600);

    // The same request again: the same answer, no second row, no second count.
    const again = await handleRenew(at(t), r.envelope, '192.0.2.7');
    expect(again.payload).toBe(res.payload);
    expect(await h.auditAfter(seq)).toHaveLength(1);
    expect(h.ctx.metrics.renewals.get({})).toBe(renewalsBefore + 1);
  });

  it('a transport_csr carrying the new identity key is refused (the identity key stays where its storage says)', async () => {
    const id = await h.join();
    const t = h.ctx.now();
    const newSigner = SoftwareSigner.generate();
    const payload = {
      v: 1,
      op: 'renew',
      request_id: newRequestId(),
      timestamp: t,
      instance_id: id.result.instance_id,
      serial: id.result.serial,
      csr: await csrPem(newSigner),
      key_storage: 'software',
      transport_csr: await csrPem(newSigner),
    };
    const e = await refusalOf(handleRenew(at(t), await sign(id.signer, payload, ders(id.chainPem)), null));
    expect(e.code).toBe('bad_csr');
    expect(e.message).toBe('transport_csr: carries an identity key; the transport certificate needs a key of its own');
  });

  it('key_attestation vouched for by the join method: recorded with its storage, NOT exportable', async () => {
    const id = await h.join();
    const t = h.ctx.now();
    const calls: unknown[][] = [];
    const ctx = withTokenServer(at(t), {
      verifyRenewalKeyProof: (...args: unknown[]) => {
        calls.push(args);
        return { keyStorage: 'tpm' };
      },
    });
    const r = await renewal(id, t, { key_attestation: { format: 'test' } });
    const res = await handleRenew(ctx, r.envelope, null);
    const result = verifyResponse(res, 'renew', r.requestId, h.rootPem).result;
    expect(result).toMatchObject({ key_storage: 'tpm', exportable: false });
    expect(await h.ctx.stores.certificates.get(result.serial)).toMatchObject({ keyStorage: 'tpm', exportable: false });
    expect(calls).toHaveLength(1);
    expect(calls[0]![0]).toEqual({ format: 'test' });
    expect(calls[0]![3]).toBe(r.requestId);
  });

  it('key_attestation for an instance whose join method this issuer does not have: bad_request, not a crash', async () => {
    const id = await h.join();
    const t = h.ctx.now();
    const ctx = withTokenServer(at(t), undefined);
    const r = await renewal(id, t, { key_attestation: { format: 'test' } });
    const e = await refusalOf(handleRenew(ctx, r.envelope, null));
    expect(e.code).toBe('bad_request');
    expect(e.message).toMatch(/instances joined with the token method have no renewal key proof/);
  });

  it('a refusal’s audit row names the signer’s bot and instance, and a malformed payload is named as a renew request', async () => {
    const id = await h.join();
    const t = h.ctx.now();
    const seq = await h.lastAuditSeq();
    // The CSR of the current key: key_reused, after the signer is known.
    const payload = {
      v: 1,
      op: 'renew',
      request_id: newRequestId(),
      timestamp: t,
      instance_id: id.result.instance_id,
      serial: id.result.serial,
      csr: await csrPem(id.signer),
      key_storage: 'software',
    };
    const e = await refusalOf(handleRenew(at(t), await sign(id.signer, payload, ders(id.chainPem)), null));
    expect(e.code).toBe('key_reused');
    expect(await h.auditAfter(seq)).toMatchObject([
      { action: 'renew', outcome: 'refused', code: 'key_reused', bot: 'gw', instanceId: id.result.instance_id },
    ]);
    const { csr: _csr, ...noCsr } = payload;
    const bad = await refusalOf(handleRenew(at(t), await sign(id.signer, noCsr, ders(id.chainPem)), null));
    expect(bad.code).toBe('bad_request');
    expect(bad.message).toMatch(/^renew request: /);
  });

  it('a request without any x5c is refused naming the renewal', async () => {
    const signer = SoftwareSigner.generate();
    const e = await refusalOf(handleRenew(h.ctx, await sign(signer, { v: 1, op: 'renew' }), null));
    expect(e.code).toBe('chain_invalid');
    expect(e.message).toBe('renewal must carry the current certificate chain in the JWS x5c header');
  });
});

/** The issuer's context where the token join method's server is `server` (undefined: no such method). */
function withTokenServer(ctx: IssuerContext, server: Record<string, unknown> | undefined): IssuerContext {
  const real = ctx.methods;
  const methods = new Proxy(real, {
    get(target, prop) {
      if (prop === 'get')
        return (name: string) => {
          const built = target.get(name);
          if (name !== 'token' || !built) return built;
          return server === undefined ? undefined : { ...built, server: { ...built.server, ...server } };
        };
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { ...ctx, methods };
}

describe('idempotency rows (respond.ts)', () => {
  const storesWith = (rec: IdempotencyRecord | undefined): TxStores =>
    ({
      idempotency: { get: async () => rec, put: async () => undefined, prune: async () => 0 },
    }) as unknown as TxStores;
  const rid = 'r'.repeat(16);
  const req = (over: Partial<SignedRequest> = {}): SignedRequest => ({
    requestId: rid,
    hash: 'aa'.repeat(32),
    legacyHash: 'bb'.repeat(32),
    signer: { keyHash: 'sha256:k1', instanceId: 'i-1' },
    ...over,
  });
  const row = (over: Partial<IdempotencyRecord> = {}): IdempotencyRecord => ({
    requestId: rid,
    requestHash: 'aa'.repeat(32),
    signer: 'i-1 sha256:k1',
    op: 'renew',
    response: '{}',
    createdAt: 1,
    ...over,
  });

  it('a legacy row is keyed by the hex SHA-256 of the payload bytes alone', () => {
    const payload = Buffer.from('{"v":1,"op":"renew"}');
    const s = signedRequest({ protected: 'e30', payload: b64u.encode(payload) }, payload, rid, { keyHash: 'k' });
    expect(s.legacyHash).toBe(createHash('sha256').update(payload).digest('hex'));
    expect(s.requestId).toBe(rid);
  });

  it('a legacy answer that names no instance is still answered (a lost answer must not lock the owner out)', async () => {
    const legacy = row({ signer: '', requestHash: 'bb'.repeat(32), response: '{"v":1,"op":"renew","result":{}}' });
    expect(await replayIfSeen(legacyCtx, storesWith(legacy), req())).toBe(legacy.response);
    const unparsable = row({ signer: '', requestHash: 'bb'.repeat(32), response: 'not json' });
    expect(await replayIfSeen(legacyCtx, storesWith(unparsable), req())).toBe('not json');
  });

  it('the refusals say which binding failed', async () => {
    const other = `request id ${rid} was already used for a different request`;
    const signer = `request id ${rid} was already answered to another signer; this request is refused and recorded`;
    await expect(replayIfSeen(legacyCtx, storesWith(row()), req({ hash: 'cc'.repeat(32) }))).rejects.toThrow(
      new SigilError('request_id_conflict', other),
    );
    await expect(
      replayIfSeen(legacyCtx, storesWith(row({ signer: '', requestHash: 'dd'.repeat(32) })), req()),
    ).rejects.toThrow(new SigilError('request_id_conflict', other));
    await expect(replayIfSeen(legacyCtx, storesWith(row({ signer: 'i-2 sha256:k1' })), req())).rejects.toThrow(
      new SigilError('request_id_conflict', signer),
    );
    const theirs = row({ signer: '', requestHash: 'bb'.repeat(32), response: '{"result":{"instance_id":"i-2"}}' });
    await expect(replayIfSeen(legacyCtx, storesWith(theirs), req())).rejects.toThrow(
      new SigilError('request_id_conflict', signer),
    );
  });

  it('a refusal signed for MQTT carries retry_after_ms only when the error has one', () => {
    const payloadOf = (j: Jws): Record<string, unknown> =>
      JSON.parse(Buffer.from(j.payload, 'base64url').toString()) as Record<string, unknown>;
    const busy = signErrorResponse(
      h.ctx,
      'renew',
      rid,
      'ab'.repeat(32),
      new SigilError('rate_limited', 'slow down', { retryAfterMs: 1500 }),
    );
    const p = payloadOf(busy);
    expect(p).toMatchObject({ v: 1, op: 'renew', request_id: rid, request_hash: 'ab'.repeat(32) });
    expect(p.error).toEqual({ code: 'rate_limited', message: 'slow down', retryable: true, retry_after_ms: 1500 });
    expect(typeof p.issued_at).toBe('number');
    const plain = payloadOf(signErrorResponse(h.ctx, 'join', null, null, new SigilError('token_invalid', 'no')));
    expect(plain.error).toEqual({ code: 'token_invalid', message: 'no', retryable: false });
    expect(JSON.parse(Buffer.from(busy.protected, 'base64url').toString())).toMatchObject({ alg: 'ES256' });
  });
});

describe('token join evidence', () => {
  it('is the token method’s, and malformed evidence is token_invalid naming the token evidence', async () => {
    const server = new TokenJoinServer();
    expect(server.name).toBe('token');
    const e = await refusalOf(
      server.attest(
        { evidence: { token_key: 5 }, requestId: 'req-1', spkiDer: Buffer.alloc(0), now: 0, remote: null },
        {
          token: async () => undefined,
        } as never,
      ),
    );
    expect(e.code).toBe('token_invalid');
    expect(e.message).toMatch(/^token evidence: /);
  });
});
