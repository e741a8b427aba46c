/**
 * SPIFFE Workload API conformance (issue #17), against the agent's real server on a Unix socket
 * in a temp dir, with a client built only from the agent's .proto files (test/helpers/
 * workload-client.ts) and a fake issuer with a real CA (test/helpers/workload-issuer-fake.ts).
 * This process (uid 0) is the "matching" workload; processes under other uids are in
 * workload-api-uids.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { decodeJwt, SignJWT } from 'jose';
import { openAgentState, type AgentState } from '../../src/agent/state/index.js';
import { WorkloadApiServer } from '../../src/agent/workload/server.js';
import { silentLogger } from '../../src/util/log.js';
import {
  derToPem,
  firstMessage,
  header,
  messages,
  sdsClient,
  splitDer,
  unary,
  workloadClient,
} from '../helpers/workload-client.js';
import { entry, FakeWorkloadIssuer, TRUST_DOMAIN } from '../helpers/workload-issuer-fake.js';

const linux = process.platform === 'linux';
const UID = process.getuid?.() ?? 0;

interface X509SvidMsg {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}
interface X509Response {
  svids: X509SvidMsg[];
}

function codeOf(p: Promise<unknown>): Promise<number> {
  return p.then(
    () => -1,
    (e: ServiceError) => e.code,
  );
}

describe.runIf(linux)('SPIFFE Workload API (conformance)', () => {
  let dir: string;
  let socket: string;
  let state: AgentState;
  let server: WorkloadApiServer;
  const issuer = new FakeWorkloadIssuer();
  let client: ReturnType<typeof workloadClient>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sigil-wl-'));
    socket = join(dir, 'run', 'agent.sock');
    issuer.entries = [
      entry('web', [`unix:uid:${UID}`], { jwtAudiences: ['aud-a', 'aud-b'] }),
      entry('other', ['unix:uid:4242']),
    ];
    state = openAgentState(join(dir, 'data'));
    server = new WorkloadApiServer({ socket, port: issuer, store: state.workloads, log: silentLogger() });
    await server.identities.sync();
    await server.start();
    client = workloadClient(socket);
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
    state?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a call without the workload.spiffe.io header: InvalidArgument', async () => {
    const err = firstMessage(client['FetchX509SVID']!({}));
    await expect(err).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(
      await codeOf(
        unary(client, 'FetchJWTSVID', { audience: ['aud-a'] }, new (await import('@grpc/grpc-js')).Metadata()),
      ),
    ).toBe(status.INVALID_ARGUMENT);
  });

  it('a process whose uid matches gets its X.509-SVID, key and bundle', async () => {
    const r = await firstMessage<X509Response>(client['FetchX509SVID']!({}, header()));
    expect(r.svids.map((s) => s.spiffe_id)).toEqual([`spiffe://${TRUST_DOMAIN}/web`]);
    const s = r.svids[0]!;
    const chain = splitDer(s.x509_svid);
    expect(chain).toHaveLength(2);
    const leaf = new X509Certificate(chain[0]!);
    expect(leaf.subjectAltName).toBe(`URI:spiffe://${TRUST_DOMAIN}/web`);
    // The key is the certified key (PKCS#8 DER).
    const key = createPrivateKey({ key: s.x509_svid_key, format: 'der', type: 'pkcs8' });
    expect(leaf.checkPrivateKey(key)).toBe(true);
    // The bundle is the trust domain's root, and the chain verifies to it.
    const roots = splitDer(s.bundle).map((d) => new X509Certificate(d));
    expect(roots.map((c) => c.fingerprint256)).toEqual([new X509Certificate(issuer.root.certDer).fingerprint256]);
    expect(new X509Certificate(chain[1]!).verify(roots[0]!.publicKey)).toBe(true);
    expect(leaf.verify(new X509Certificate(chain[1]!).publicKey)).toBe(true);
  });

  it('FetchX509Bundles and FetchJWTBundles are keyed by the trust domain ID', async () => {
    const x = await firstMessage<{ bundles: Record<string, Buffer> }>(client['FetchX509Bundles']!({}, header()));
    expect(Object.keys(x.bundles)).toEqual([`spiffe://${TRUST_DOMAIN}`]);
    expect(derToPem(x.bundles[`spiffe://${TRUST_DOMAIN}`]!)).toBe(new X509Certificate(issuer.root.certDer).toString());
    const j = await firstMessage<{ bundles: Record<string, Buffer> }>(client['FetchJWTBundles']!({}, header()));
    const jwks = JSON.parse(j.bundles[`spiffe://${TRUST_DOMAIN}`]!.toString()) as { keys: Array<{ kid: string }> };
    expect(jwks.keys.map((k) => k.kid)).toEqual([issuer.jwtKid]);
  });

  it('FetchJWTSVID: a JWT-SVID for an allowed audience; audience missing → InvalidArgument; not allowed → PermissionDenied', async () => {
    const r = await unary<{ svids: Array<{ spiffe_id: string; svid: string }> }>(client, 'FetchJWTSVID', {
      audience: ['aud-a'],
    });
    expect(r.svids).toHaveLength(1);
    expect(r.svids[0]!.spiffe_id).toBe(`spiffe://${TRUST_DOMAIN}/web`);
    const claims = decodeJwt(r.svids[0]!.svid);
    expect(claims.sub).toBe(`spiffe://${TRUST_DOMAIN}/web`);
    expect(claims.aud).toEqual(['aud-a']);
    expect(await codeOf(unary(client, 'FetchJWTSVID', { audience: [] }))).toBe(status.INVALID_ARGUMENT);
    expect(await codeOf(unary(client, 'FetchJWTSVID', { audience: ['not-allowed'] }))).toBe(status.PERMISSION_DENIED);
    expect(
      await codeOf(unary(client, 'FetchJWTSVID', { audience: ['aud-a'], spiffe_id: `spiffe://${TRUST_DOMAIN}/other` })),
    ).toBe(status.PERMISSION_DENIED);
  });

  it('JWT-SVIDs for the entry’s audiences are prefetched: served without asking the issuer', async () => {
    const before = issuer.calls.signJwt;
    await unary(client, 'FetchJWTSVID', { audience: ['aud-b'] });
    expect(issuer.calls.signJwt).toBe(before);
  });

  it('ValidateJWTSVID accepts a good token and refuses a wrong audience, a foreign trust domain, a bad signature', async () => {
    const { svids } = await unary<{ svids: Array<{ svid: string }> }>(client, 'FetchJWTSVID', { audience: ['aud-a'] });
    const token = svids[0]!.svid;
    const ok = await unary<{ spiffe_id: string; claims: { fields: Record<string, { stringValue?: string }> } }>(
      client,
      'ValidateJWTSVID',
      { audience: 'aud-a', svid: token },
    );
    expect(ok.spiffe_id).toBe(`spiffe://${TRUST_DOMAIN}/web`);
    expect(ok.claims.fields['sub']!.stringValue).toBe(`spiffe://${TRUST_DOMAIN}/web`);
    expect(await codeOf(unary(client, 'ValidateJWTSVID', { audience: 'aud-b', svid: token }))).toBe(
      status.INVALID_ARGUMENT,
    );
    const foreign = await issuer.signRaw({
      sub: 'spiffe://elsewhere.test/x',
      aud: ['aud-a'],
      exp: Math.floor(Date.now() / 1000) + 60,
    });
    expect(await codeOf(unary(client, 'ValidateJWTSVID', { audience: 'aud-a', svid: foreign }))).toBe(
      status.INVALID_ARGUMENT,
    );
    const [h, p, sig] = token.split('.');
    const forged = `${h}.${p}.${sig!.slice(0, -4)}AAAA`;
    expect(await codeOf(unary(client, 'ValidateJWTSVID', { audience: 'aud-a', svid: forged }))).toBe(
      status.INVALID_ARGUMENT,
    );
    expect(await codeOf(unary(client, 'ValidateJWTSVID', { audience: '', svid: token }))).toBe(status.INVALID_ARGUMENT);
    // alg none and HMAC (a key confusion with the public JWKS) are never accepted.
    const claims = { sub: `spiffe://${TRUST_DOMAIN}/web`, aud: ['aud-a'], exp: Math.floor(Date.now() / 1000) + 60 };
    const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none', kid: issuer.jwtKid })}.${b64(claims)}.`;
    const hmac = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: issuer.jwtKid })
      .sign(new TextEncoder().encode('a shared secret of thirty-two bytes'));
    for (const svid of [none, hmac])
      expect(await codeOf(unary(client, 'ValidateJWTSVID', { audience: 'aud-a', svid }))).toBe(status.INVALID_ARGUMENT);
  });

  it('answers Unimplemented for the optional WIT-SVID profile', async () => {
    await expect(firstMessage(client['FetchWITSVID']!({}, header()))).rejects.toMatchObject({
      code: status.UNIMPLEMENTED,
    });
  });

  it('the stream pushes the new SVID after a rotation, and PermissionDenied when the entry is withdrawn', async () => {
    const stream = client['FetchX509SVID']!({}, header());
    const next = messages<X509Response>(stream);
    const first = await next.next();
    await server.identities.sync({ force: true });
    const second = await next.next();
    expect(second.svids[0]!.spiffe_id).toBe(first.svids[0]!.spiffe_id);
    expect(second.svids[0]!.x509_svid.equals(first.svids[0]!.x509_svid)).toBe(false);
    // A new key with every rotation.
    expect(second.svids[0]!.x509_svid_key.equals(first.svids[0]!.x509_svid_key)).toBe(false);
    const saved = issuer.entries;
    issuer.entries = saved.filter((e) => e.id !== 'web');
    try {
      await server.identities.sync({ force: true });
      await expect(next.next()).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    } finally {
      issuer.entries = saved;
      await server.identities.sync({ force: true });
    }
  });

  it('SDS returns the same certificate and bundle as the Workload API', async () => {
    const x = await firstMessage<X509Response>(client['FetchX509SVID']!({}, header()));
    const sds = sdsClient(socket);
    try {
      const r = await unary<{
        resources: Array<{
          type_url: string;
          value: {
            name: string;
            tls_certificate?: { certificate_chain: { inline_bytes: Buffer }; private_key: { inline_bytes: Buffer } };
            validation_context?: { trusted_ca: { inline_bytes: Buffer } };
          };
        }>;
        version_info: string;
      }>(sds, 'FetchSecrets', { resource_names: ['default', 'ROOTCA'] });
      expect(r.resources.map((s) => s.value.name)).toEqual(['default', 'ROOTCA']);
      expect(r.resources[0]!.type_url).toBe('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret');
      const chainPem = r.resources[0]!.value.tls_certificate!.certificate_chain.inline_bytes.toString();
      expect(chainPem).toBe(splitDer(x.svids[0]!.x509_svid).map(derToPem).join(''));
      const keyPem = r.resources[0]!.value.tls_certificate!.private_key.inline_bytes.toString();
      expect(createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' }).equals(x.svids[0]!.x509_svid_key)).toBe(
        true,
      );
      expect(r.resources[1]!.value.validation_context!.trusted_ca.inline_bytes.toString()).toBe(
        derToPem(x.svids[0]!.bundle),
      );
      // By SPIFFE ID and trust domain ID too; unknown names are left out.
      const byId = await unary<{ resources: Array<{ value: { name: string } }> }>(sds, 'FetchSecrets', {
        resource_names: [`spiffe://${TRUST_DOMAIN}/web`, `spiffe://${TRUST_DOMAIN}`, `spiffe://${TRUST_DOMAIN}/other`],
      });
      expect(byId.resources.map((s) => s.value.name)).toEqual([
        `spiffe://${TRUST_DOMAIN}/web`,
        `spiffe://${TRUST_DOMAIN}`,
      ]);
      await expect(
        new Promise((resolve, reject) => {
          const d = sds['DeltaSecrets']!();
          d.on('data', resolve);
          d.on('error', reject);
          d.write({});
        }),
      ).rejects.toMatchObject({ code: status.UNIMPLEMENTED });
    } finally {
      sds.close();
    }
  });

  it('SDS StreamSecrets: a response per subscription, none for an ACK, a new version after a rotation', async () => {
    const sds = sdsClient(socket);
    const stream = sds['StreamSecrets']!();
    try {
      const next = messages<{ version_info: string; nonce: string; resources: Array<{ value: { name: string } }> }>(
        stream,
      );
      stream.write({ resource_names: ['default'], type_url: '' });
      const first = await next.next();
      expect(first.resources.map((r) => r.value.name)).toEqual(['default']);
      // ACK: same names, the nonce echoed — no answer; the rotation's push is the next message.
      stream.write({ resource_names: ['default'], response_nonce: first.nonce, version_info: first.version_info });
      await server.identities.sync({ force: true });
      const second = await next.next();
      expect(second.version_info).not.toBe(first.version_info);
      expect(second.nonce).not.toBe(first.nonce);
    } finally {
      stream.cancel();
      sds.close();
    }
  });
});
