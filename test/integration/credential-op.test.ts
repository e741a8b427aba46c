/**
 * The `credential` operation over real HTTPS: the role decides every credential (refusals name
 * the role and the rule, change nothing and are audited), each issued credential is recorded and
 * audited, requests are idempotent by request id, and only the current identity authenticates.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCredentialResult } from '../../src/agent/credential-client.js';
import { buildCredentialRequest, type CredentialAskFields } from '../../src/agent/credential-request.js';
import { buildCsr } from '../../src/pki/csr.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { namedSigner } from '../../src/agent/named-signer.js';
import { signJws } from '../../src/protocol/jws.js';
import { TYP_REQUEST } from '../../src/protocol/messages.js';
import { newRequestId } from '../../src/util/secret.js';
import type { Signer } from '../../src/keystore/signer.js';
import type { CredentialResult } from '../../src/protocol/credential-messages.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { parseCertificateLine } from '../../src/ssh/certificate.js';
import { formatAuthorizedKey, sshPublicKeyFromKeyObject } from '../../src/ssh/public-key.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import { expectRefusal, startIssuer, type Harness, type HttpResult, type Identity } from './harness.js';

const POLICY = `
kind: role
name: creds
spec:
  max_ttl: 2h
  allowed_outputs: [identity, ssh_user, ssh_host, database, kubernetes, jwt]
  ssh_logins: ["{{internal.logins}}", deploy]
  ssh_host_principals: [gw1.example.org, 127.0.0.1]
  ssh_extensions: [permit-pty, permit-port-forwarding]
  db_users: [app]
  kubernetes_users: [robot]
  kubernetes_groups: [ci, viewers]
  jwt_audiences: [vault, "{{internal.audiences}}"]
---
kind: bot
name: cred
spec:
  roles: [creds]
  traits: { logins: [ops, "bad login"], audiences: [aws] }
`;

let h: Harness;
let id: Identity;

beforeAll(async () => {
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', { yaml: POLICY });
  id = await h.join({ token: await h.token({ bot: 'cred' }) });
});
afterAll(() => h.close());

const sshKeyLine = (): string =>
  formatAuthorizedKey(sshPublicKeyFromKeyObject(generateKeyPairSync('ed25519').publicKey).blob);
/** Database and Kubernetes requests carry a CSR: proof of possession of the key (issue #11). */
const csrPem = async (signer: Signer = SoftwareSigner.generate()): Promise<string> =>
  toPem('CERTIFICATE REQUEST', await buildCsr(signer));

async function ask(fields: CredentialAskFields, who: Identity = id, opts: { requestId?: string; now?: number } = {}) {
  const built = await buildCredentialRequest({
    current: who.signer,
    chainPem: who.chainPem,
    now: opts.now ?? h.ctx.now(),
    fields,
    ...(opts.requestId ? { requestId: opts.requestId } : {}),
  });
  const res = await h.post('credential', built.envelope);
  return { res, built };
}

function okResult(res: HttpResult, requestId: string): CredentialResult {
  if (res.status !== 200) throw new Error(`credential refused: HTTP ${res.status} ${res.text}`);
  return verifyResponse(res.json, 'credential', requestId, h.rootPem).result as CredentialResult;
}

/** A refusal that changes nothing: no new certificate row, one refused audit row with the code. */
async function expectDenied(
  fields: CredentialAskFields,
  status: number,
  code: string,
  message?: RegExp,
  who: Identity = id,
): Promise<void> {
  const before = await h.counts();
  const seq = await h.lastAuditSeq();
  const { res } = await ask(fields, who);
  expectRefusal(res, status, code);
  if (message) expect(res.json.message).toMatch(message);
  expect((await h.counts()).certificates).toBe(before.certificates);
  expect((await h.auditAfter(seq)).map((r) => [r.action, r.outcome, r.code])).toEqual([
    ['credential', 'refused', code],
  ]);
}

describe('credential: the role grants', () => {
  it('an SSH user certificate: logins literal and from traits, extensions from the role, key id = SPIFFE ID, TTL clamped and reported', async () => {
    const seq = await h.lastAuditSeq();
    const { res, built } = await ask({ kind: 'ssh_user', public_key: sshKeyLine(), ttl_s: 48 * 3600 });
    const r = okResult(res, built.requestId);
    expect(r).toMatchObject({
      kind: 'ssh_user',
      role: 'creds',
      ttl_s: 7200,
      requested_ttl_s: 172800,
      ttl_clamped: true,
      principals: ['ops', 'deploy'],
    });
    const cert = parseCertificateLine(r.certificate!);
    expect(cert.type).toBe('user');
    expect(cert.principals).toEqual(['ops', 'deploy']); // "bad login" (a space) is dropped from the trait expansion
    expect(cert.keyId).toBe(id.result.spiffe_id);
    expect(Object.keys(cert.extensions)).toEqual(['permit-port-forwarding', 'permit-pty']);
    expect(cert.validBefore.getTime() - cert.validAfter.getTime()).toBe(7200_000 + 60_000);
    expect(r.serial).toBe(cert.serial.toString(16));
    expect(r.user_ca_public_key).toBe(h.ctx.credentials.sshUser.authorizedKeyLine());
    expect(cert.signatureKey.blob.equals(h.ctx.credentials.sshUser.publicKey.blob)).toBe(true);
    // Recorded and audited.
    const rec = (await h.ctx.stores.certificates.get(r.serial))!;
    expect(rec).toMatchObject({
      kind: 'ssh-user',
      instanceId: id.result.instance_id,
      bot: 'cred',
      generation: 1,
      requestId: built.requestId,
    });
    const audit = await h.auditAfter(seq);
    expect(audit.map((a) => [a.action, a.outcome])).toEqual([['credential', 'ok']]);
    expect(audit[0]!.details).toMatchObject({
      kind: 'ssh_user',
      serial: r.serial,
      role: 'creds',
      principals: ['ops', 'deploy'],
      ttl_clamped: true,
    });
  });

  it('an SSH host certificate for the asked principals, signed by the host CA (not the user CA)', async () => {
    const { res, built } = await ask({ kind: 'ssh_host', public_key: sshKeyLine(), principals: ['gw1.example.org'] });
    const cert = parseCertificateLine(okResult(res, built.requestId).certificate!);
    expect(cert).toMatchObject({ type: 'host', principals: ['gw1.example.org'], extensions: {}, criticalOptions: {} });
    expect(cert.signatureKey.blob.equals(h.ctx.credentials.sshHost.publicKey.blob)).toBe(true);
  });

  it('a database client certificate: CN = the db user, clientAuth only, no SPIFFE ID, chains to the root', async () => {
    const { res, built } = await ask({ kind: 'database', csr: await csrPem() });
    const r = okResult(res, built.requestId);
    const leaf = new X509Certificate(r.chain![0]!);
    expect(leaf.subject).toBe('CN=app');
    expect(leaf.subjectAltName).toBeUndefined();
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(leaf.verify(new X509Certificate(r.chain![1]!).publicKey)).toBe(true);
    expect((await h.ctx.stores.certificates.get(r.serial))!.kind).toBe('x509-database');
  });

  it('a Kubernetes client certificate: O = each group, CN = the user', async () => {
    const { res, built } = await ask({ kind: 'kubernetes', csr: await csrPem(), kubernetes_groups: ['viewers', 'ci'] });
    const leaf = new X509Certificate(okResult(res, built.requestId).chain![0]!);
    expect(leaf.subject).toBe('O=viewers\nO=ci\nCN=robot');
  });

  it('a JWT-SVID for the audiences, verifiable with the published JWKS', async () => {
    const { jwtVerify, createLocalJWKSet } = await import('jose');
    const { res, built } = await ask({ kind: 'jwt', audiences: ['vault', 'aws'], ttl_s: 120 });
    const sealed = okResult(res, built.requestId);
    // The agent names an answer key over HTTPS too: the token comes back sealed to it.
    expect(sealed.token).toBeUndefined();
    const r = await openCredentialResult(sealed, built);
    const jwks = (await h.request('GET', '/v1/jwks')).json;
    const { payload, protectedHeader } = await jwtVerify(r.token!, createLocalJWKSet(jwks), {
      issuer: h.ctx.publicUrl!,
      audience: 'aws',
    });
    expect(payload.sub).toBe(id.result.spiffe_id);
    expect(payload.aud).toEqual(['vault', 'aws']);
    expect(payload).toMatchObject({ sigil_bot: 'cred', sigil_instance: id.result.instance_id, jti: r.serial });
    expect(payload.exp! - payload.iat!).toBe(120);
    expect(protectedHeader).toMatchObject({ alg: 'ES256', kid: h.ctx.credentials.jwt.kid, typ: 'JWT' });
    expect((await h.ctx.stores.certificates.get(r.serial))!.kind).toBe('jwt-svid');
  });
});

describe('credential: refusals name the role rule and change nothing', () => {
  it('a login beyond the role', () =>
    expectDenied(
      { kind: 'ssh_user', public_key: sshKeyLine(), logins: ['ops', 'root'] },
      403,
      'role_denied',
      /^role creds does not allow login root \(ssh_logins\)$/,
    ));
  it('a host principal beyond the role', () =>
    expectDenied(
      { kind: 'ssh_host', public_key: sshKeyLine(), principals: ['db1.example.org'] },
      403,
      'role_denied',
      /host principal db1\.example\.org \(ssh_host_principals\)/,
    ));
  it('another database user', async () =>
    expectDenied(
      { kind: 'database', csr: await csrPem(), db_user: 'postgres' },
      403,
      'role_denied',
      /database user postgres \(db_users\)/,
    ));
  it('another kubernetes group', async () =>
    expectDenied(
      { kind: 'kubernetes', csr: await csrPem(), kubernetes_groups: ['system:masters'] },
      403,
      'role_denied',
      /kubernetes group system:masters \(kubernetes_groups\)/,
    ));
  it('another JWT audience', () =>
    expectDenied({ kind: 'jwt', audiences: ['gcp'] }, 403, 'role_denied', /audience gcp \(jwt_audiences\)/));
  it('an output kind no role allows', async () => {
    const gw = await h.join();
    await expectDenied(
      { kind: 'ssh_user', public_key: sshKeyLine() },
      403,
      'role_denied',
      /^role edge does not allow output ssh_user \(allowed_outputs\)$/,
      gw,
    );
  });
  it('fields that do not apply to the kind, and a key of the wrong format', async () => {
    await expectDenied(
      { kind: 'jwt', audiences: ['vault'], logins: ['ops'] },
      400,
      'bad_request',
      /logins does not apply to kind jwt/,
    );
    await expectDenied({ kind: 'database', csr: 'garbage' }, 400, 'bad_csr');
    await expectDenied({ kind: 'ssh_user', public_key: toPem('PUBLIC KEY', Buffer.from('x')) }, 400, 'unsupported_key');
    await expectDenied({ kind: 'ssh_user' }, 400, 'bad_request', /must carry public_key/);
  });
  it('over HTTPS (confidential to the pinned CA) a JWT request without answer_key is answered in clear, as before', async () => {
    const requestId = newRequestId();
    const payload = {
      v: 1,
      op: 'credential',
      request_id: requestId,
      timestamp: h.ctx.now(),
      ...namedSigner(id.chainPem),
      kind: 'jwt',
      audiences: ['vault'],
    };
    const r = okResult(
      await h.post(
        'credential',
        await signJws(
          id.signer,
          TYP_REQUEST,
          payload,
          id.chainPem.map((c) => fromPem(c, 'CERTIFICATE')),
        ),
      ),
      requestId,
    );
    expect(r.token?.split('.')).toHaveLength(3);
    expect(r.token_jwe).toBeUndefined();
  });

  it('a client certificate is not an identity: it cannot sign a credential request', async () => {
    const signer = SoftwareSigner.generate();
    const { res, built } = await ask({ kind: 'database', csr: await csrPem(signer) });
    const db = okResult(res, built.requestId);
    // Signed with the client certificate's key, naming the identity it belongs to.
    const payload = {
      v: 1,
      op: 'credential',
      request_id: newRequestId(),
      timestamp: h.ctx.now(),
      ...namedSigner(id.chainPem),
      kind: 'jwt',
      audiences: ['vault'],
    };
    const seq = await h.lastAuditSeq();
    expectRefusal(
      await h.post(
        'credential',
        await signJws(
          signer,
          TYP_REQUEST,
          payload,
          db.chain!.map((c) => fromPem(c, 'CERTIFICATE')),
        ),
      ),
      401,
      'chain_invalid',
    );
    expect((await h.auditAfter(seq)).map((r) => [r.action, r.outcome, r.code])).toEqual([
      ['credential', 'refused', 'chain_invalid'],
    ]);
  });
  it('an expired identity and a locked instance', async () => {
    h.clock.offsetMs = 3 * 3600_000;
    try {
      await expectDenied({ kind: 'jwt', audiences: ['vault'] }, 401, 'cert_expired');
    } finally {
      h.clock.offsetMs = 0;
    }
    const other = await h.join({ token: await h.token({ bot: 'cred' }) });
    await runAdminOp(h.ctx.stores, 'lock', { target: other.result.instance_id }, h.ctx.now());
    await expectDenied({ kind: 'jwt', audiences: ['vault'] }, 403, 'instance_locked', undefined, other);
  });
});

describe('credential: proof of possession of an X.509 credential key (issue #11)', () => {
  it('a bare public key is refused for database and kubernetes, with the way to do it', async () => {
    const spki = toPem('PUBLIC KEY', SoftwareSigner.generate().publicKeySpki());
    await expectDenied(
      { kind: 'database', public_key: spki } as CredentialAskFields,
      400,
      'bad_request',
      /public_key does not apply to kind database \(send csr/,
    );
    await expectDenied(
      { kind: 'kubernetes', public_key: spki } as CredentialAskFields,
      400,
      'bad_request',
      /public_key does not apply to kind kubernetes/,
    );
    await expectDenied({ kind: 'database' }, 400, 'bad_request', /must carry csr/);
  });
  it("a CSR naming the intermediate CA's own key, signed by another key, is refused (csr_signature_invalid)", async () => {
    const other = SoftwareSigner.generate();
    const intermediateSpki = new X509Certificate(h.ctx.ca.intermediatePem).publicKey.export({
      type: 'spki',
      format: 'der',
    });
    // A signer that claims the intermediate's public key but signs with a key of its own.
    const claimant: Signer = {
      storage: 'software',
      exportable: true,
      algorithm: 'ES256',
      publicKeySpki: () => intermediateSpki,
      sign: (d) => other.sign(d),
    };
    await expectDenied({ kind: 'database', csr: await csrPem(claimant) }, 400, 'csr_signature_invalid');
    await expectDenied({ kind: 'kubernetes', csr: await csrPem(claimant) }, 400, 'csr_signature_invalid');
  });
});

describe('credential: idempotent by request id', () => {
  it('the same request gets the same answer and one record; the same id with other content is refused', async () => {
    const fields: CredentialAskFields = { kind: 'ssh_user', public_key: sshKeyLine(), logins: ['ops'] };
    const built = await buildCredentialRequest({ current: id.signer, chainPem: id.chainPem, now: h.ctx.now(), fields });
    const first = await h.post('credential', built.envelope);
    const certs = (await h.counts()).certificates;
    const again = await h.post('credential', built.envelope);
    expect(again.status).toBe(200);
    expect(okResult(again, built.requestId)).toEqual(okResult(first, built.requestId));
    expect((await h.counts()).certificates).toBe(certs);
    const { res } = await ask({ ...fields, logins: ['deploy'] }, id, { requestId: built.requestId });
    expectRefusal(res, 409, 'request_id_conflict');
  });
});

describe('discovery and bundles', () => {
  it('openid-configuration names the public URL and the JWKS; the SPIFFE bundle carries both key kinds', async () => {
    const conf = (await h.request('GET', '/.well-known/openid-configuration')).json;
    expect(conf).toMatchObject({
      issuer: h.ctx.publicUrl,
      jwks_uri: `${h.ctx.publicUrl}/v1/jwks`,
      id_token_signing_alg_values_supported: ['ES256'],
    });
    const jwks = await h.request('GET', '/v1/jwks');
    expect(jwks.headers['cache-control']).toMatch(/max-age=\d+/);
    expect(jwks.json.keys).toEqual([
      expect.objectContaining({ kty: 'EC', crv: 'P-256', kid: h.ctx.credentials.jwt.kid, alg: 'ES256', use: 'sig' }),
    ]);
    const bundle = (await h.request('GET', '/v1/bundle/spiffe')).json;
    expect(bundle.keys.map((k: { use: string }) => k.use)).toEqual(['x509-svid', 'jwt-svid']);
    expect(new X509Certificate(Buffer.from(bundle.keys[0].x5c[0], 'base64')).raw.equals(h.ctx.ca.rootDer)).toBe(true);
    expect(bundle.keys[1].kid).toBe(h.ctx.credentials.jwt.kid);
    expect(typeof bundle.spiffe_refresh_hint).toBe('number');
    expect((await h.request('POST', '/v1/jwks')).status).toBe(405);
  });
});
