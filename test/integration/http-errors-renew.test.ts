/**
 * POST /v1/renew refusals against a real in-process issuer: each check of
 * src/server/ops/renew.ts answers with its own code, changes nothing (no certificate, no new
 * generation), is audited, and leaves the agent able to renew afterwards.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SoftwareSigner } from '../../src/keystore/software.js';
import { createIntermediateCa, createRootCa } from '../../src/pki/ca.js';
import { buildCsr } from '../../src/pki/csr.js';
import { CertificateIssuer } from '../../src/pki/issue.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { TYP_RESPONSE } from '../../src/protocol/messages.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { newRequestId } from '../../src/util/secret.js';
import { expectRefusal, expectRefused, keySigner, sign, startIssuer, type Harness, type Identity } from './harness.js';
import { namedSigner } from '../../src/agent/named-signer.js';

let h: Harness;
let id: Identity & { envelope: { payload: string } };
beforeAll(async () => {
  h = await startIssuer();
  id = await h.join();
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => {
  h.clock.offsetMs = 0;
});

const ders = (chainPem: string[]): Buffer[] => chainPem.map((c) => fromPem(c, 'CERTIFICATE'));

async function renewPayload(over: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  return {
    v: 1,
    op: 'renew',
    request_id: newRequestId(),
    timestamp: h.ctx.now(),
    ...namedSigner(id.chainPem),
    csr: toPem('CERTIFICATE REQUEST', await buildCsr(SoftwareSigner.generate())),
    key_storage: 'software',
    ...over,
  };
}

/** Refused, audited with the presenting instance, and the instance is exactly as before. */
async function refused(body: unknown, status: number, code: string) {
  const before = (await h.ctx.stores.instances.get(id.result.instance_id))!;
  const res = await expectRefused(h, 'renew', body, status, code);
  const after = (await h.ctx.stores.instances.get(id.result.instance_id))!;
  expect({ generation: after.generation, serial: after.currentSerial, locked: after.locked }).toEqual({
    generation: before.generation,
    serial: before.currentSerial,
    locked: before.locked,
  });
  return res;
}

describe('POST /v1/renew refusals', () => {
  it('key_attestation from an instance whose join method has no renewal key proof (token) → 400 bad_request, nothing recorded as hardware', async () => {
    const proof = { certify_info: 'AAAA', signature: 'AAAA', key_public: 'AAAA' };
    const res = await refused(
      await sign(id.signer, await renewPayload({ key_attestation: proof }), ders(id.chainPem)),
      400,
      'bad_request',
    );
    expect(res.json.message).toMatch(/token method have no renewal key proof/);
  });

  it('no x5c → 401 chain_invalid', async () => {
    const res = await refused(await sign(id.signer, await renewPayload()), 401, 'chain_invalid');
    expect(res.json.message).toMatch(/x5c/);
  });

  it('a certificate from another CA (same SPIFFE ID, same key) → 401 chain_invalid', async () => {
    const root = createRootCa({ trustDomain: 'example.org' });
    const inter = createIntermediateCa(root, { trustDomain: 'example.org' });
    const forged = new CertificateIssuer({ caCertDer: inter.certDer, caKey: inter.key }).issueSvid({
      serial: Buffer.from(id.result.serial, 'hex'),
      spkiDer: id.signer.publicKeySpki(),
      spiffeId: id.result.spiffe_id,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
    });
    await refused(await sign(id.signer, await renewPayload(), [forged, inter.certDer]), 401, 'chain_invalid');
    await refused(
      await sign(id.signer, await renewPayload(), [forged, inter.certDer, root.certDer]),
      401,
      'chain_invalid',
    );
  });

  it("the issuer's own serving certificate (not a bot identity) → 401 chain_invalid", async () => {
    const res = await refused(
      await sign(keySigner(h.ctx.server.key), await renewPayload(), h.ctx.server.chainDer),
      401,
      'chain_invalid',
    );
    expect(res.json.message).toMatch(/not a Sigil bot identity/);
  });

  it('garbage x5c → 400 bad_certificate', async () => {
    await refused(await sign(id.signer, await renewPayload(), [randomBytes(200)]), 400, 'bad_certificate');
    await refused(
      await sign(id.signer, await renewPayload(), [ders(id.chainPem)[0]!, Buffer.from('garbage')]),
      400,
      'bad_certificate',
    );
  });

  it('a garbage intermediate is refused without leaking OpenSSL error text', async () => {
    const res = await h.post(
      'renew',
      await sign(id.signer, await renewPayload(), [ders(id.chainPem)[0]!, Buffer.from('garbage')]),
    );
    expectRefusal(res, 400, 'bad_certificate');
    expect(res.json.message).not.toMatch(/error:[0-9A-F]{8}|routines/i);
  });

  it('valid chain, envelope signed by another key → 401 signature_invalid', async () => {
    await refused(
      await sign(SoftwareSigner.generate(), await renewPayload(), ders(id.chainPem)),
      401,
      'signature_invalid',
    );
  });

  it('wrong typ → 400 bad_request; v:2 → 400 unsupported_version; schema violations → 400 bad_request', async () => {
    const x5c = ders(id.chainPem);
    await refused(await sign(id.signer, await renewPayload(), x5c, TYP_RESPONSE), 400, 'bad_request');
    await refused(await sign(id.signer, await renewPayload({ v: 2 }), x5c), 400, 'unsupported_version');
    await refused(await sign(id.signer, await renewPayload({ op: 'join' }), x5c), 400, 'bad_request');
    await refused(await sign(id.signer, await renewPayload({ request_id: 'short' }), x5c), 400, 'bad_request');
    const res = await refused(await sign(id.signer, await renewPayload({ bot: 'admin' }), x5c), 400, 'bad_request');
    expect(res.json.message).toMatch(/bot/);
  });

  it('garbage CSR → 400 bad_csr; tampered CSR → 400 csr_signature_invalid', async () => {
    const x5c = ders(id.chainPem);
    await refused(await sign(id.signer, await renewPayload({ csr: 'garbage' }), x5c), 400, 'bad_csr');
    const der = await buildCsr(SoftwareSigner.generate());
    der[der.length - 1] ^= 0x01;
    await refused(
      await sign(id.signer, await renewPayload({ csr: toPem('CERTIFICATE REQUEST', der) }), x5c),
      400,
      'csr_signature_invalid',
    );
  });

  it('timestamp 10 minutes off (either way) → 401 stale_request', async () => {
    for (const off of [-10 * 60_000, 10 * 60_000]) {
      const { envelope } = await h.renewEnvelope(id, { now: Date.now() + off });
      const res = await refused(envelope, 401, 'stale_request');
      expect(res.json.message).toMatch(/NTP/);
    }
  });

  it('CSR with the current key → 400 key_reused', async () => {
    const csr = toPem('CERTIFICATE REQUEST', await buildCsr(id.signer));
    await refused(await sign(id.signer, await renewPayload({ csr }), ders(id.chainPem)), 400, 'key_reused');
  });

  it('a request id already used for a different request → 409 request_id_conflict', async () => {
    const joinRequestId = JSON.parse(Buffer.from(id.envelope.payload, 'base64url').toString()).request_id as string;
    await refused(
      await sign(id.signer, await renewPayload({ request_id: joinRequestId }), ders(id.chainPem)),
      409,
      'request_id_conflict',
    );
  });

  it('expired certificate → 401 cert_expired (issuer clock two hours ahead)', async () => {
    h.clock.offsetMs = 2 * 3600_000;
    const { envelope } = await h.renewEnvelope(id, { now: h.ctx.now() });
    const res = await refused(envelope, 401, 'cert_expired');
    expect(res.json.message).toMatch(/join again/);
  });

  it('locked instance → 403 instance_locked; locked bot → 403 bot_locked', async () => {
    const stores = h.ctx.stores;
    await runAdminOp(stores, 'lock', { target: id.result.instance_id, reason: 'suspected clone' });
    try {
      const res = await refused((await h.renewEnvelope(id)).envelope, 403, 'instance_locked');
      expect(res.json.message).toMatch(/suspected clone/);
    } finally {
      await runAdminOp(stores, 'unlock', { target: id.result.instance_id });
    }
    await runAdminOp(stores, 'lock', { target: 'gw' });
    try {
      await refused((await h.renewEnvelope(id)).envelope, 403, 'bot_locked');
    } finally {
      await runAdminOp(stores, 'unlock', { target: 'gw' });
    }
  });

  it('the refusal audit rows name the presenting bot and instance', async () => {
    const rows = (await h.ctx.stores.audit.list()).filter((r) => r.action === 'renew' && r.code === 'stale_request');
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows)
      expect({ bot: r.bot, instanceId: r.instanceId, outcome: r.outcome }).toEqual({
        bot: 'gw',
        instanceId: id.result.instance_id,
        outcome: 'refused',
      });
  });

  it('after every refusal above, the agent still renews to generation 2', async () => {
    const { envelope, newSigner } = await h.renewEnvelope(id);
    const requestId = JSON.parse(Buffer.from(envelope.payload, 'base64url').toString()).request_id as string;
    const next = h.identityFrom(await h.post('renew', envelope), 'renew', requestId, newSigner);
    expect(next.result.generation).toBe(2);
    expect(next.result.instance_id).toBe(id.result.instance_id);
    expect(await h.ctx.stores.instances.get(id.result.instance_id)).toMatchObject({
      generation: 2,
      locked: false,
      currentSerial: next.result.serial,
    });
  });
});
