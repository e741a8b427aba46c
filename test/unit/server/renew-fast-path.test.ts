/**
 * The cheaper renewal of issue #14 keeps every check: a cached public key still verifies each
 * signature, a remembered leaf is matched byte for byte (a tampered copy is verified, and
 * refused), an answer stored without the CA certificates is replayed byte for byte (rows stored
 * whole before the change too), and the one renewal transaction still tells a renewal overtaken
 * by a concurrent one (refused, not locked) from a stale credential (locked).
 */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { namedSigner } from '../../../src/agent/named-signer.js';
import { createSigner } from '../../../src/keystore/index.js';
import { buildCsr } from '../../../src/pki/csr.js';
import { fromPem, toPem } from '../../../src/pki/pem.js';
import { b64u, signJws, type Jws } from '../../../src/protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../../../src/protocol/messages.js';
import type { RenewRequest } from '../../../src/protocol/requests.js';
import { paths } from '../../../src/server/data-dir.js';
import { AnswerSeal } from '../../../src/server/ops/answer-seal.js';
import { handleRenew } from '../../../src/server/ops/renew.js';
import { newRequestId } from '../../../src/util/secret.js';
import { startIssuer, type Harness, type Identity } from '../../integration/harness.js';

let h: Harness;
beforeEach(async () => {
  h = await startIssuer();
});
afterEach(async () => {
  await h?.close();
});

const payloadText = (jws: Jws): string => b64u.decode(jws.payload).toString('utf8');

/** Renew `id` in process; the next Identity. */
async function renew(id: Identity): Promise<Identity> {
  const { envelope, newSigner } = await h.renewEnvelope(id);
  const answer = await handleRenew(h.ctx, envelope, null);
  const result = (JSON.parse(payloadText(answer)) as { result: Identity['result'] }).result;
  return { signer: newSigner, chainPem: result.chain, result };
}

/** A renew payload for `id` with the given CSR (PEM). */
function renewPayload(id: Identity, csr: string): RenewRequest {
  return {
    v: PROTOCOL_VERSION,
    op: 'renew',
    request_id: newRequestId(),
    timestamp: h.ctx.now(),
    ...namedSigner(id.chainPem),
    csr,
    key_storage: 'software',
  };
}

const x5c = (id: Identity): Buffer[] => id.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));

describe('cached public keys', () => {
  it('a request signed by another key is refused although its leaf key is cached', async () => {
    const second = await renew(await h.join());
    // The renewal's CSR key is the new leaf's key: imported once, kept.
    const before = h.ctx.publicKeys.size;
    const leafSpki = second.signer.publicKeySpki();
    expect(h.ctx.publicKeys.publicKey(leafSpki)).toBe(h.ctx.publicKeys.publicKey(leafSpki));
    expect(h.ctx.publicKeys.size).toBe(before);

    const { signer: next } = createSigner('software');
    const payload = renewPayload(second, toPem('CERTIFICATE REQUEST', await buildCsr(next)));
    const { signer: impostor } = createSigner('software');
    const forged = await signJws(impostor, TYP_REQUEST, payload, x5c(second));
    await expect(handleRenew(h.ctx, forged, null)).rejects.toMatchObject({ code: 'signature_invalid' });
    // The genuine signature over the same payload still goes through, with the cached key.
    const genuine = await signJws(second.signer, TYP_REQUEST, payload, x5c(second));
    await expect(handleRenew(h.ctx, genuine, null)).resolves.toBeDefined();
  });

  it('a CSR whose key is cached but whose self-signature is broken is refused', async () => {
    const id = await h.join();
    const { signer: next } = createSigner('software');
    h.ctx.publicKeys.publicKey(next.publicKeySpki()); // cached before the CSR arrives
    const csr = await buildCsr(next);
    csr[csr.length - 5] ^= 0x01; // inside the signature value
    const envelope = await signJws(
      id.signer,
      TYP_REQUEST,
      renewPayload(id, toPem('CERTIFICATE REQUEST', csr)),
      x5c(id),
    );
    await expect(handleRenew(h.ctx, envelope, null)).rejects.toMatchObject({ code: 'csr_signature_invalid' });
  });
});

describe('remembered leaves', () => {
  it('a presented leaf with one byte of its signature changed is verified, and refused', async () => {
    const id = await renew(await h.join());
    const leaf = fromPem(id.chainPem[0]!, 'CERTIFICATE');
    expect(h.ctx.issuedLeaves.signerOf(leaf)).toBeDefined(); // the genuine bytes are remembered
    const tampered = Buffer.from(leaf);
    tampered[tampered.length - 3] ^= 0x01;
    const { signer: next } = createSigner('software');
    const envelope = await signJws(
      id.signer,
      TYP_REQUEST,
      renewPayload(id, toPem('CERTIFICATE REQUEST', await buildCsr(next))),
      [tampered, ...x5c(id).slice(1)],
    );
    await expect(handleRenew(h.ctx, envelope, null)).rejects.toMatchObject({ code: 'chain_invalid' });
  });

  it('a leaf remembered as signed by another CA is still verified', async () => {
    const id = await renew(await h.join());
    const leaf = fromPem(id.chainPem[0]!, 'CERTIFICATE');
    const tampered = Buffer.from(leaf);
    tampered[tampered.length - 3] ^= 0x01;
    h.ctx.issuedLeaves.remember(tampered, h.ctx.ca.rootDer);
    const { signer: next } = createSigner('software');
    const envelope = await signJws(
      id.signer,
      TYP_REQUEST,
      renewPayload(id, toPem('CERTIFICATE REQUEST', await buildCsr(next))),
      [tampered, ...x5c(id).slice(1)],
    );
    await expect(handleRenew(h.ctx, envelope, null)).rejects.toMatchObject({ code: 'chain_invalid' });
  });
});

describe('stored answers', () => {
  it('are kept without the CA certificates and replayed byte for byte', async () => {
    const id = await h.join();
    const { envelope } = await h.renewEnvelope(id);
    const first = await handleRenew(h.ctx, envelope, null);
    const requestId = (JSON.parse(payloadText(first)) as { request_id: string }).request_id;
    const row = await h.ctx.stores.idempotency.get(requestId);
    // Sealed (U+0002 and a 64-hex-digit MAC: ops/answer-seal.ts), then compacted (U+0001).
    expect(row!.response.startsWith('\u0002')).toBe(true);
    expect(row!.response.charAt(65)).toBe('\u0001');
    // Neither CA certificate is stored (as JSON writes them: newlines escaped).
    for (const pem of [h.ctx.ca.intermediatePem, h.ctx.ca.rootPem])
      expect(row!.response).not.toContain(JSON.stringify(pem.trim()).slice(1, -1));
    expect(row!.response.length).toBeLessThan(payloadText(first).length - 1000);
    const replay = await handleRenew(h.ctx, envelope, null);
    expect(payloadText(replay)).toBe(payloadText(first));
  });

  it('stored whole (before issue #14), are replayed byte for byte', async () => {
    const id = await h.join();
    const { envelope } = await h.renewEnvelope(id);
    const first = await handleRenew(h.ctx, envelope, null);
    const requestId = (JSON.parse(payloadText(first)) as { request_id: string }).request_id;
    // A row from before answers were sealed: this issuer started sealing after it was stored.
    h.ctx.answerSeal = new AnswerSeal(randomBytes(32), h.ctx.now() + 1);
    const db = new Database(paths(h.dir).db);
    try {
      db.prepare('UPDATE idempotency SET response = ? WHERE request_id = ?').run(payloadText(first), requestId);
    } finally {
      db.close();
    }
    expect((await h.ctx.stores.idempotency.get(requestId))!.response).toBe(payloadText(first));
    const replay = await handleRenew(h.ctx, envelope, null);
    expect(payloadText(replay)).toBe(payloadText(first));
  });
});

describe('the renewal transaction', () => {
  it('two renewals of one generation at once: one succeeds, the other is refused and the instance stays unlocked', async () => {
    const id = await h.join();
    const [x, y] = await Promise.all([h.renewEnvelope(id), h.renewEnvelope(id)]);
    const outcomes = await Promise.allSettled([
      handleRenew(h.ctx, x.envelope, null),
      handleRenew(h.ctx, y.envelope, null),
    ]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    expect(outcomes.find((o) => o.status === 'rejected')).toMatchObject({ reason: { code: 'generation_mismatch' } });
    expect(await h.ctx.stores.instances.get(id.result.instance_id)).toMatchObject({ generation: 2, locked: false });
  });

  it('a credential presented after its successor was issued locks the instance', async () => {
    const id = await h.join();
    await renew(id);
    h.clock.offsetMs = 5;
    const { envelope } = await h.renewEnvelope(id);
    await expect(handleRenew(h.ctx, envelope, null)).rejects.toMatchObject({ code: 'generation_mismatch' });
    expect(await h.ctx.stores.instances.get(id.result.instance_id)).toMatchObject({ generation: 2, locked: true });
  });

  it('every refusal check still runs inside: a replay of an answered request is answered after expiry', async () => {
    const id = await h.join();
    const { envelope } = await h.renewEnvelope(id);
    const first = await handleRenew(h.ctx, envelope, null);
    h.clock.offsetMs = 400 * 24 * 3600_000; // far past the leaf's notAfter and the timestamp skew
    const replay = await handleRenew(h.ctx, envelope, null);
    expect(payloadText(replay)).toBe(payloadText(first));
  });
});

describe('caches after a rotation', () => {
  it('hold one key and one leaf per live identity; the rotated-away ones are verified again when presented', async () => {
    const first = await h.join();
    const { envelope: firstRenewal, newSigner } = await h.renewEnvelope(first);
    const firstAnswer = await handleRenew(h.ctx, firstRenewal, null);
    const result = (JSON.parse(payloadText(firstAnswer)) as { result: Identity['result'] }).result;
    let id: Identity = { signer: newSigner, chainPem: result.chain, result };
    const keys = h.ctx.publicKeys.size;
    const leaves = h.ctx.issuedLeaves.size;
    for (let i = 0; i < 4; i++) id = await renew(id);
    // Four more renewals of one identity: the caches did not grow with them.
    expect(h.ctx.publicKeys.size).toBe(keys);
    expect(h.ctx.issuedLeaves.size).toBe(leaves);
    expect(h.ctx.issuedLeaves.signerOf(fromPem(first.chainPem[0]!, 'CERTIFICATE'))).toBeUndefined();
    expect(h.ctx.issuedLeaves.signerOf(fromPem(id.chainPem[0]!, 'CERTIFICATE'))).toBeDefined();
    // The first request again (its answer lost on the way): the old leaf and key are verified
    // afresh, and the stored answer comes back byte for byte.
    const replay = await handleRenew(h.ctx, firstRenewal, null);
    expect(payloadText(replay)).toBe(payloadText(firstAnswer));
  });
});

describe('time-ordered serials (issue #14)', () => {
  it('a renewal and a join issue certificates whose serial starts with the issuing millisecond, in order', async () => {
    const before = h.ctx.now();
    const joined = await h.join();
    const renewed = await renew(joined);
    const after = h.ctx.now();
    const serials = [joined.result.serial, renewed.result.serial];
    for (const s of serials) {
      expect(s).toMatch(/^[0-9a-f]{32}$/);
      const at = parseInt(s.slice(0, 12), 16);
      expect(at).toBeGreaterThanOrEqual(before);
      expect(at).toBeLessThanOrEqual(after);
    }
    expect([...serials].sort()).toEqual(serials);
    // The record the store keeps is keyed by that serial, and the next renewal finds it.
    expect((await h.ctx.stores.certificates.get(renewed.result.serial))?.generation).toBe(2);
    expect((await renew(renewed)).result.generation).toBe(3);
  });
});
