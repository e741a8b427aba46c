/**
 * Requests are idempotent by request id (ARCHITECTURE principle 4): a repeated envelope gets
 * the stored response and changes nothing, so a lost response never causes a lockout — while an
 * older generation presented with a NEW request is the stolen-credential signal and locks.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Jws } from '../../src/protocol/jws.js';
import { startIssuer, type Harness, type Identity } from './harness.js';

let h: Harness;
beforeEach(async () => {
  h = await startIssuer();
});
afterEach(async () => {
  await h?.close();
});

const requestIdOf = (env: Jws): string =>
  JSON.parse(Buffer.from(env.payload, 'base64url').toString()).request_id as string;
const certRows = (id: Identity) => h.ctx.stores.certificates.listByInstance(id.result.instance_id);
const instance = async (id: Identity) => (await h.ctx.stores.instances.get(id.result.instance_id))!;

/** Build and send one renewal; returns the envelope, the raw answer and (if 200) the next identity. */
async function renew(id: Identity) {
  const { envelope, newSigner } = await h.renewEnvelope(id);
  const res = await h.post('renew', envelope);
  return {
    envelope,
    newSigner,
    res,
    next: res.status === 200 ? h.identityFrom(res, 'renew', requestIdOf(envelope), newSigner) : undefined,
  };
}

describe('idempotent replays', () => {
  it('the same renew envelope twice → the same certificate; the generation advances once', async () => {
    const id = await h.join();
    const first = await renew(id);
    expect(first.next!.result.generation).toBe(2);
    const again = await h.post('renew', first.envelope);
    const replayed = h.identityFrom(again, 'renew', requestIdOf(first.envelope), first.newSigner);
    expect(replayed.result.serial).toBe(first.next!.result.serial);
    expect(replayed.chainPem).toEqual(first.next!.chainPem);
    expect(again.json.payload).toBe(first.res.json.payload); // byte-identical stored payload
    expect((await certRows(id)).map((c) => c.generation)).toEqual([1, 2]);
    expect(await instance(id)).toMatchObject({
      generation: 2,
      locked: false,
      currentSerial: first.next!.result.serial,
    });
  });

  it('replays are answered without a new audit "renew ok" row or metric increment', async () => {
    const id = await h.join();
    const first = await renew(id);
    const renewalsBefore = h.ctx.metrics.renewals.get();
    const seq = await h.lastAuditSeq();
    for (let i = 0; i < 3; i++) expect((await h.post('renew', first.envelope)).status).toBe(200);
    expect(await h.auditAfter(seq)).toEqual([]);
    expect(h.ctx.metrics.renewals.get()).toBe(renewalsBefore);
  });

  it('after a renewal, replaying the original join envelope returns the original join response', async () => {
    const id = await h.join();
    await renew(id);
    const before = await h.counts();
    const again = await h.post('join', id.envelope);
    const replayed = h.identityFrom(again, 'join', requestIdOf(id.envelope), id.signer);
    expect(replayed.result).toEqual(id.result);
    expect(again.json.payload).toBe(id.response.json.payload);
    expect(await h.counts()).toEqual(before); // no new instance, certificate, token use or audit row
    expect((await instance(id)).generation).toBe(2);
  });

  it('a join replay is answered even though its token is now used (the lost join response)', async () => {
    const token = await h.token();
    const id = await h.join({ token });
    const again = await h.post('join', id.envelope);
    expect(again.status).toBe(200);
    expect(h.identityFrom(again, 'join', requestIdOf(id.envelope), id.signer).result.serial).toBe(id.result.serial);
  });
});

describe('generations', () => {
  it('two different concurrent renewals of one generation → exactly one new certificate', async () => {
    const id = await h.join();
    const [a, b] = await Promise.all([h.renewEnvelope(id), h.renewEnvelope(id)]);
    const results = await Promise.all([h.post('renew', a.envelope), h.post('renew', b.envelope)]);
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status !== 200);
    expect(ok).toHaveLength(1);
    expect(refused.map((r) => [r.status, r.json.code])).toEqual([[403, 'generation_mismatch']]);
    expect((await certRows(id)).map((c) => c.generation)).toEqual([1, 2]);
    expect((await instance(id)).generation).toBe(2);
  });

  it('the same renewal sent concurrently twice → one certificate, both answered identically', async () => {
    const id = await h.join();
    const { envelope } = await h.renewEnvelope(id);
    const [r1, r2] = await Promise.all([h.post('renew', envelope), h.post('renew', envelope)]);
    expect([r1.status, r2.status]).toEqual([200, 200]);
    expect(r1.json.payload).toBe(r2.json.payload);
    expect(await certRows(id)).toHaveLength(2);
  });

  it('a stale generation with a new request id → 403 generation_mismatch, instance locked, audited', async () => {
    const gen1 = await h.join();
    const gen2 = (await renew(gen1)).next!;
    expect(gen2.result.generation).toBe(2);
    const seq = await h.lastAuditSeq();
    const stale = await renew(gen1);
    expect(stale.res.status).toBe(403);
    expect(stale.res.json).toMatchObject({ code: 'generation_mismatch', retryable: false });
    expect(await instance(gen1)).toMatchObject({ locked: true, generation: 2 });
    expect((await instance(gen1)).lockReason).toMatch(/generation_mismatch/);
    expect(
      (await h.auditAfter(seq)).map((r) => ({
        action: r.action,
        outcome: r.outcome,
        code: r.code,
        instanceId: r.instanceId,
      })),
    ).toEqual([
      { action: 'renew', outcome: 'refused', code: 'generation_mismatch', instanceId: gen1.result.instance_id },
    ]);
    expect(await certRows(gen1)).toHaveLength(2);
    // The legitimate holder of generation 2 is now locked out too, until an admin unlocks.
    const locked = await renew(gen2);
    expect([locked.res.status, locked.res.json.code]).toEqual([403, 'instance_locked']);
  });

  it('a replay of the ALREADY ANSWERED gen-1 → gen-2 renewal is answered, not locked (lost response)', async () => {
    const gen1 = await h.join();
    const first = await renew(gen1);
    // The agent never saw `first.res`; it retries the very same envelope from its outbox.
    const retry = await h.post('renew', first.envelope);
    expect(retry.status).toBe(200);
    expect(retry.json.payload).toBe(first.res.json.payload);
    expect(await instance(gen1)).toMatchObject({ locked: false, generation: 2 });
    // ...and it can carry on from the replayed answer.
    const gen2 = h.identityFrom(retry, 'renew', requestIdOf(first.envelope), first.newSigner);
    const gen3 = (await renew(gen2)).next!;
    expect(gen3.result.generation).toBe(3);
  });

  it('the gen-1 → gen-2 replay is still answered after gen 3 exists and after the gen-1 cert expired', async () => {
    const gen1 = await h.join();
    const first = await renew(gen1);
    await renew(first.next!);
    expect((await instance(gen1)).generation).toBe(3);
    h.clock.offsetMs = 3 * 3600_000; // past gen 1's notAfter and the skew window
    const retry = await h.post('renew', first.envelope);
    expect(retry.status).toBe(200);
    expect(retry.json.payload).toBe(first.res.json.payload);
    expect(await instance(gen1)).toMatchObject({ locked: false, generation: 3 });
  });

  it('a refused request is not stored: the same request id may be retried once the cause is fixed', async () => {
    const id = await h.join();
    const { envelope, newSigner } = await h.renewEnvelope(id);
    h.clock.offsetMs = 10 * 60_000; // the issuer's clock is off → stale_request
    expect((await h.post('renew', envelope)).json.code).toBe('stale_request');
    h.clock.offsetMs = 0;
    const ok = await h.post('renew', envelope);
    expect(h.identityFrom(ok, 'renew', requestIdOf(envelope), newSigner).result.generation).toBe(2);
  });
});
