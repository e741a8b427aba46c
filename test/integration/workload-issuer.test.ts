/**
 * The `workload` operation over real HTTPS (issue #17), through the agent's own client
 * (agent/workload/issuer-client.ts over an IssuerLink): registration entries reach the nodes they
 * name and no other; an X.509-SVID carries the entry's SPIFFE ID and verifies with `openssl
 * verify` against the signed bundle; a JWT-SVID verifies with the bundle's JWKS. Every refusal
 * names its check, changes nothing and is audited once: a peer bot asking for another node's
 * workload, an audience the entry does not allow, an entry planted in the database with the
 * issuer's own SPIFFE ID, a registration colliding with node identities.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IssuerLink } from '../../src/agent/transports.js';
import { LinkWorkloadIssuer } from '../../src/agent/workload/issuer-client.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { runAdminCall } from '../../src/server/admin/audited.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { expectRefusal, startIssuer, type Harness, type Identity } from './harness.js';
import { agentStateFor, applyWorkloadPolicy, csrPem, newAnswerKey, workloadEnvelope } from './workload-issuer-rig.js';

let h: Harness;
let gw: Identity;
let db: Identity;
const cleanups: Array<() => void> = [];
const work = mkdtempSync(join(tmpdir(), 'sigil-wl-https-'));

function clientFor(id: Identity): LinkWorkloadIssuer {
  const agent = agentStateFor(h, id);
  const link = new IssuerLink([
    new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin: h.ctx.ca.pin, rootPem: h.rootPem }),
  ]);
  cleanups.push(() => void link.close(), agent.close);
  return new LinkWorkloadIssuer({ link, state: agent.state, now: () => h.ctx.now() });
}

beforeAll(async () => {
  h = await startIssuer();
  await applyWorkloadPolicy(h);
  gw = await h.join();
  db = await h.join({ token: await h.token({ bot: 'db' }) });
});
afterAll(async () => {
  for (const c of cleanups) c();
  await h.close();
  rmSync(work, { recursive: true, force: true });
});

/** A refusal that changes nothing: the status and code, no new certificate, one audit row with the code. */
async function expectDenied(
  who: { signer: Identity['signer']; chainPem: string[] },
  fields: Record<string, unknown>,
  status: number,
  code: string,
  message?: RegExp,
): Promise<void> {
  const before = await h.counts();
  const seq = await h.lastAuditSeq();
  const { envelope } = await workloadEnvelope(who, fields, h.ctx.now());
  const res = await h.post('workload', envelope);
  expectRefusal(res, status, code);
  if (message) expect(res.json.message).toMatch(message);
  expect((await h.counts()).certificates).toBe(before.certificates);
  expect((await h.auditAfter(seq)).map((r) => [r.action, r.outcome, r.code])).toEqual([['workload', 'refused', code]]);
}

describe('workload entries', () => {
  it('a node gets the entries that name it, and only those; the listing is audited', async () => {
    const seq = await h.lastAuditSeq();
    expect(await clientFor(gw).fetchEntries()).toEqual([
      {
        id: 'web',
        spiffeId: 'spiffe://example.org/web',
        selectors: ['unix:uid:1000', 'systemd:unit:web.service'],
        ttlS: 86400,
        dnsNames: ['web.internal'],
        jwtAudiences: ['vault', 'aws'],
      },
    ]);
    expect((await clientFor(db).fetchEntries()).map((e) => e.id)).toEqual(['cache']);
    const rows = await h.auditAfter(seq);
    expect(rows.map((r) => [r.action, r.outcome, r.instanceId, r.details.entries])).toEqual([
      ['workload', 'ok', gw.result.instance_id, ['web']],
      ['workload', 'ok', db.result.instance_id, ['cache']],
    ]);
  });
});

describe('workload X.509-SVID', () => {
  it('carries the entry SPIFFE ID and DNS names, an empty subject, 24 h at most; verifies with openssl against the bundle; recorded for the instance', async () => {
    const client = clientFor(gw);
    const key = SoftwareSigner.generate();
    const t0 = Date.now();
    const svid = await client.signX509('web', await csrPem(key));
    expect(svid).toMatchObject({ entryId: 'web', spiffeId: 'spiffe://example.org/web' });
    const [leafPem, interPem] = svid.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/);
    const leaf = new X509Certificate(leafPem!);
    expect(leaf.subjectAltName).toBe('URI:spiffe://example.org/web, DNS:web.internal');
    expect(leaf.subject ?? '').toBe(''); // empty: a broker must not take it for its node (CN)
    expect(leaf.publicKey.export({ type: 'spki', format: 'der' })).toEqual(key.publicKeySpki());
    // ttl 48h in the entry: clamped to 24 h.
    expect(svid.notAfter - t0).toBeLessThanOrEqual(86400_000 + 5_000);
    expect(svid.notAfter - t0).toBeGreaterThan(86400_000 - 60_000);

    const bundles = await client.fetchBundles();
    expect(bundles.trustDomain).toBe('example.org');
    writeFileSync(join(work, 'roots.pem'), bundles.x509RootsPem);
    writeFileSync(join(work, 'inter.pem'), interPem!);
    writeFileSync(join(work, 'leaf.pem'), leafPem!);
    const out = execFileSync(
      'openssl',
      ['verify', '-CAfile', join(work, 'roots.pem'), '-untrusted', join(work, 'inter.pem'), join(work, 'leaf.pem')],
      { encoding: 'utf8' },
    );
    expect(out.trim()).toBe(`${join(work, 'leaf.pem')}: OK`);

    const shown = (await runAdminOp(h.ctx.stores, 'instances.show', { instance: gw.result.instance_id })) as {
      certificates: Array<{ serial: string; kind: string; spiffe_id?: string | null }>;
    };
    // `ctl instances show` names the SPIFFE ID of each workload SVID (from its issuance's audit row).
    expect(shown.certificates).toContainEqual(
      expect.objectContaining({
        serial: svid.serial,
        kind: 'workload-x509-svid',
        spiffe_id: 'spiffe://example.org/web',
        entry: 'web',
      }),
    );
    // Node certificates have their SPIFFE ID on the instance, not per row.
    expect(shown.certificates.filter((c) => !c.kind.startsWith('workload-')).every((c) => !('spiffe_id' in c))).toBe(
      true,
    );
    const row = (await h.ctx.stores.audit.list()).findLast((r) => r.action === 'workload');
    expect(row?.details).toMatchObject({
      action: 'x509',
      entry: 'web',
      serial: svid.serial,
      ttl_s: 86400,
      ttl_clamped: true,
    });
  });

  it('is idempotent by request id, for the same signer only', async () => {
    const fields = { action: 'x509', entry: 'web', csr: await csrPem() };
    const { envelope, requestId } = await workloadEnvelope(gw, fields, h.ctx.now());
    const first = await h.post('workload', envelope);
    const before = await h.counts();
    const again = await h.post('workload', envelope);
    expect(again.status).toBe(200);
    const a = verifyResponse(first.json, 'workload', requestId, h.rootPem).result;
    const b = verifyResponse(again.json, 'workload', requestId, h.rootPem).result;
    expect(b).toEqual(a);
    expect((await h.counts()).certificates).toBe(before.certificates);
    // The same id from another signer: refused, not answered with gw's SVID.
    const { envelope: stolen } = await workloadEnvelope(db, fields, h.ctx.now(), requestId);
    expectRefusal(await h.post('workload', stolen), 409, 'request_id_conflict');
  });
});

describe('workload JWT-SVID', () => {
  it('is minted for allowed audiences, sealed to the answer key, and verifies with the bundle JWKS', async () => {
    const client = clientFor(gw);
    const jwt = await client.signJwt('web', ['vault']);
    const { jwtJwks } = await client.fetchBundles();
    const { payload, protectedHeader } = await jwtVerify(jwt.token, createLocalJWKSet(JSON.parse(jwtJwks)), {
      audience: 'vault',
      issuer: h.ctx.publicUrl!,
    });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload.sub).toBe('spiffe://example.org/web');
    expect(jwt.expiresAt).toBe((payload.exp as number) * 1000);
    // jwt_ttl defaults to 5 minutes.
    expect((payload.exp as number) - (payload.iat as number)).toBe(300);
    const rec = await h.ctx.stores.certificates.get(payload.jti as string);
    expect(rec).toMatchObject({ kind: 'workload-jwt-svid', instanceId: gw.result.instance_id });
  });

  it('over HTTPS a request without answer key gets the token in clear (TLS to the pinned CA)', async () => {
    const { envelope, requestId } = await workloadEnvelope(
      gw,
      { action: 'jwt', entry: 'web', audience: ['aws'] },
      h.ctx.now(),
    );
    const res = await h.post('workload', envelope);
    const r = verifyResponse(res.json, 'workload', requestId, h.rootPem).result;
    expect(r).toMatchObject({ action: 'jwt', audience: ['aws'], token: expect.any(String) });
    expect(r).not.toHaveProperty('token_jwe');
  });
});

describe('workload refusals: each names its check, changes nothing, is audited once', () => {
  it('a peer bot asking for another node’s workload identity: workload_not_for_node', async () => {
    await expectDenied(
      db,
      { action: 'x509', entry: 'web', csr: await csrPem() },
      403,
      'workload_not_for_node',
      /bot db is not one of \[gw\]/,
    );
    await expectDenied(
      db,
      { action: 'jwt', entry: 'web', audience: ['vault'], answer_key: newAnswerKey().publicJwk },
      403,
      'workload_not_for_node',
    );
  });

  it('an audience the entry does not allow: workload_audience_denied', async () => {
    await expectDenied(
      gw,
      { action: 'jwt', entry: 'web', audience: ['vault', 'gcp'], answer_key: newAnswerKey().publicJwk },
      403,
      'workload_audience_denied',
      /"gcp".*allowed: vault, aws/,
    );
  });

  it('a payload naming another node than its signer (re-signed by a peer): signer_mismatch', async () => {
    const { envelope } = await workloadEnvelope(db, { action: 'entries' }, h.ctx.now());
    const named = JSON.parse(Buffer.from(envelope.payload, 'base64url').toString('utf8')) as Record<string, unknown>;
    const { signJws } = await import('../../src/protocol/jws.js');
    const { fromPem } = await import('../../src/pki/pem.js');
    const before = await h.counts();
    const seq = await h.lastAuditSeq();
    const forged = await signJws(
      gw.signer,
      'sigil-request+jws',
      { ...named, instance_id: db.result.instance_id, request_id: 'forged-request-0001' },
      gw.chainPem.map((c) => fromPem(c, 'CERTIFICATE')),
    );
    expectRefusal(await h.post('workload', forged), 403, 'signer_mismatch');
    expect((await h.counts()).certificates).toBe(before.certificates);
    expect((await h.auditAfter(seq)).map((r) => [r.action, r.code])).toEqual([['workload', 'signer_mismatch']]);
  });

  it('an entry that does not exist: workload_unknown', async () => {
    await expectDenied(gw, { action: 'x509', entry: 'nope', csr: await csrPem() }, 404, 'workload_unknown');
  });

  it('an entry planted in the database with the issuer’s SPIFFE ID: refused when used, never listed', async () => {
    await h.ctx.stores.resources.put(
      'workload',
      'planted',
      { spiffe_id: 'spiffe://example.org/sigil/issuer', selectors: ['unix:uid:0'], nodes: { bots: ['gw'] } },
      h.ctx.now(),
    );
    try {
      await expectDenied(gw, { action: 'x509', entry: 'planted', csr: await csrPem() }, 400, 'workload_id_reserved');
      expect((await clientFor(gw).fetchEntries()).map((e) => e.id)).toEqual(['web']);
    } finally {
      await h.ctx.stores.resources.delete('workload', 'planted');
    }
  });

  it('a workload SVID cannot speak for its node: chain_invalid', async () => {
    const key = SoftwareSigner.generate();
    const svid = await clientFor(gw).signX509('web', await csrPem(key));
    const chainPem = svid.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/).filter(Boolean);
    const { envelope } = await workloadEnvelope({ signer: key, chainPem }, { action: 'entries' }, h.ctx.now());
    expectRefusal(await h.post('workload', envelope), 401, 'chain_invalid');
  });

  it.each([
    ['a node identity', 'spiffe://example.org/bot/gw/x', 'workload_id_reserved'],
    ['another trust domain', 'spiffe://other.org/web', 'workload_id_outside_trust_domain'],
  ])('ctl apply of a registration colliding with %s: %s, nothing stored, one audit row', async (_w, id, code) => {
    const seq = await h.lastAuditSeq();
    const yaml = `kind: workload\nname: bad\nspec:\n  spiffe_id: ${id}\n  selectors: [unix:uid:1]\n  nodes: { bots: [gw] }\n`;
    await expect(
      runAdminCall(h.ctx.stores, 'apply', { yaml, trust_domain: 'example.org' }, h.ctx.now(), {
        remote: 'local',
        auditReads: false,
      }),
    ).rejects.toMatchObject({ code });
    expect(await h.ctx.stores.resources.get('workload', 'bad')).toBeUndefined();
    expect((await h.auditAfter(seq)).map((r) => [r.action, r.outcome, r.code])).toEqual([['admin', 'refused', code]]);
  });
});
