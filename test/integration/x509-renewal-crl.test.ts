/**
 * x509/IDevID devices re-checked at renewal (issue #16, join/x509/renewal.ts): a device whose
 * certificate is revoked after it enrolled stops renewing at its next renewal, not at its next
 * join — and its instance is locked, so that its identity goes on the issuer's CRL and gets no
 * credentials meanwhile. The PKI and its CRLs are made by plain `openssl` (`openssl ca -revoke`, `-gencrl`), and the
 * CRL file the join rule names is replaced in place, as an operator's cron job would.
 */
import { join as joinPath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runJoinExchange } from '../../src/join/exchange.js';
import { X509JoinAgent } from '../../src/join/x509/agent.js';
import { PemKeySigner, SoftwareSigner } from '../../src/keystore/index.js';
import { spkiPin } from '../../src/pki/chain.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { revokedCertificates } from '../../src/server/crl/revoked.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { tempDir } from '../helpers/cli.js';
import { OpensslPki, type Issued, type OpensslCaDir } from '../helpers/openssl-pki.js';
import { expectRefusal, startIssuer, type Harness, type Identity } from './harness.js';

const tmp = tempDir('sigil-x509-renew-');
const pki = new OpensslPki(joinPath(tmp.path, 'pki'));
let h: Harness;
let client: HttpsIssuerClient;
let inter: Issued;
let ca: OpensslCaDir;
let crlFile: string;
const leaves: Record<string, Issued> = {};

async function join(leaf: Issued): Promise<Identity & { instanceId: string }> {
  const identity = SoftwareSigner.generate();
  const method = X509JoinAgent.fromPem(leaf.pem + inter.pem, PemKeySigner.fromFile(leaf.key));
  const r = await runJoinExchange({
    method,
    identity,
    send: (env) => client.post('join', env),
    rootPem: () => client.ensureRoot(),
    now: () => h.ctx.now(),
  });
  return {
    signer: identity,
    chainPem: r.payload.result.chain,
    result: r.payload.result,
    instanceId: r.payload.result.instance_id,
  };
}

async function renew(id: Identity) {
  const { envelope, newSigner } = await h.renewEnvelope(id);
  const requestId = (JSON.parse(Buffer.from(envelope.payload, 'base64url').toString('utf8')) as { request_id: string })
    .request_id;
  const res = await h.post('renew', envelope);
  return { res, next: (): Identity => h.identityFrom(res, 'renew', requestId, newSigner) };
}

beforeAll(async () => {
  const root = pki.root('root', '/O=Acme/CN=Acme Root CA', 'ec');
  inter = pki.intermediate('inter', root, '/O=Acme/CN=Acme Device CA', 'ec');
  ca = pki.caDir(inter);
  leaves.a = pki.leaf('gw-a', inter, '/O=Acme/CN=gw-a', { kind: 'ec' });
  leaves.b = pki.leaf('gw-b', inter, '/O=Acme/CN=gw-b', { kind: 'ec' });
  crlFile = ca.gencrl(pki.path('inter.crl')); // nothing revoked yet
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `
kind: join_rule
name: factory
spec:
  method: x509
  bot: gw
  x509:
    ca_files: [${root.cert}]
    crl_files: [${crlFile}]
`,
  });
  client = new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin: spkiPin(Buffer.from(h.rootPem)) });
}, 60_000);

afterAll(async () => {
  client?.close();
  await h?.close();
  tmp.cleanup();
});

describe('x509 renewals re-check the device certificate against the rule’s current CRLs', () => {
  it('a device revoked after enrolment is refused x509_revoked at its next renewal (audited); another renews', async () => {
    const a = await join(leaves.a!);
    const b = await join(leaves.b!);
    // The join recorded the validated path the renewal re-checks.
    expect((await h.ctx.stores.instances.get(a.instanceId))!.facts['x509_path']).toHaveLength(3);

    // Before the revocation both renew.
    const first = await renew(a);
    expect(first.res.status, first.res.text).toBe(200);
    const a2 = first.next();

    // The device CA revokes gw-a and publishes a new CRL over the same file.
    ca.revoke(leaves.a!);
    ca.gencrl(crlFile);

    const seq = await h.lastAuditSeq();
    const refused = await renew(a2);
    expectRefusal(refused.res, 401, 'x509_revoked');
    expect(refused.res.json.message).toMatch(/re-checked at renewal/);
    expect(refused.res.json.message).toContain(crlFile);
    expect(refused.res.json.message).toMatch(/is now locked and its certificates are on the issuer's CRL/);
    const rows = await h.auditAfter(seq);
    expect(rows.map((r) => [r.action, r.outcome, r.code, r.actor, r.instanceId])).toEqual([
      ['lock', 'ok', null, 'system', a.instanceId],
      ['renew', 'refused', 'x509_revoked', 'agent', a.instanceId],
    ]);
    // Nothing was issued: the instance is still at the generation of its last good renewal.
    const inst = (await h.ctx.stores.instances.get(a.instanceId))!;
    expect(inst.generation).toBe(a2.result.generation);
    // Locked (review of issue #16): its still-valid identity is on the CRL and gets nothing more.
    expect(inst.locked).toBe(true);
    expect(inst.lockReason).toBe('x509_revoked: the device certificate was revoked after enrolment');
    const crl = await revokedCertificates(h.ctx.stores, h.ctx.now());
    expect(crl.map((e) => e.serial)).toContain(a2.result.serial);
    const again = await renew(a2);
    expectRefusal(again.res, 403, 'instance_locked');

    const other = await renew(b);
    expect(other.res.status, other.res.text).toBe(200);
  });

  it('a stale CRL fails closed at renewal (x509_crl_unavailable, retryable), as at join', async () => {
    const c = await join((leaves.c = pki.leaf('gw-c', inter, '/O=Acme/CN=gw-c', { kind: 'ec' })));
    ca.gencrl(crlFile, { lastUpdate: '20200101000000Z', nextUpdate: '20200201000000Z' });
    try {
      const r = await renew(c);
      expectRefusal(r.res, 503, 'x509_crl_unavailable');
      expect(r.res.json.retryable).toBe(true);
      // Not a revocation: nothing is locked.
      expect((await h.ctx.stores.instances.get(c.instanceId))!.locked).toBe(false);
    } finally {
      ca.gencrl(crlFile);
    }
    const again = await renew(c);
    expect(again.res.status, again.res.text).toBe(200);
  });
});
