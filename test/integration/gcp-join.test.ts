/**
 * gcp join end to end, in process, over real HTTPS on loopback: a fake GCE metadata server
 * minting identity tokens in Google's shape (RS256, iss accounts.google.com, the requested
 * audience, google.compute_engine claims with format=full), signed by a test key whose JWKS is
 * served over HTTPS by a server with its own CA (the rule's jwks_url and ca_file), the agent's
 * metadata client, and every refusal with its own code and one audit row.
 */
import { join as joinPath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gcpAgentConfigSchema, gcpJoinAgentFromConfig } from '../../src/join/gcp/config.js';
import { GcpJoinAgent } from '../../src/join/gcp/agent.js';
import type { JoinMethodAgent } from '../../src/join/types.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { tempDir } from '../helpers/cli.js';
import { hmacWithPublicKey, newKey, TestTokenIssuer, unsignedToken } from '../helpers/fake-oidc.js';
import { joinRunner, type JoinRunner } from '../helpers/join-run.js';
import { startHttpServer, type LoopbackServer } from '../helpers/loopback-servers.js';
import { startIssuer, type Harness } from './harness.js';

const tmp = tempDir('sigil-gcp-');
const AUDIENCE = 'https://sigil.example.test';
let google: TestTokenIssuer;
let metadata: LoopbackServer;
let h: Harness;
let run: JoinRunner;

/** What the VM's metadata server puts in its tokens. */
const vm = {
  project_id: 'acme-prod',
  project_number: 123456789012,
  zone: 'europe-west1-b',
  instance_id: '4410012345678901234',
  instance_name: 'gw-7',
  email: 'sigil-gw@acme-prod.iam.gserviceaccount.com',
};

function claims(over: Record<string, unknown> = {}, ce: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: 'https://accounts.google.com',
    aud: AUDIENCE,
    azp: '112233445566778899000',
    sub: '112233445566778899000',
    email: vm.email,
    email_verified: true,
    google: {
      compute_engine: {
        project_id: vm.project_id,
        project_number: vm.project_number,
        zone: vm.zone,
        instance_id: vm.instance_id,
        instance_name: vm.instance_name,
        instance_creation_timestamp: 1700000000,
        ...ce,
      },
    },
    ...over,
  };
}

/** An agent that sends a token we made ourselves. */
const tokenAgent = (token: string | (() => Promise<string>)): JoinMethodAgent => ({
  name: 'gcp',
  canReattest: true,
  evidence: async () => ({ token: typeof token === 'string' ? token : await token() }),
});

beforeAll(async () => {
  google = new TestTokenIssuer([newKey('g1')]);
  await google.start(joinPath(tmp.path, 'google'), ['/oauth2/v3/certs']);
  metadata = await startHttpServer(async (req, url) => {
    if (req.headers['metadata-flavor'] !== 'Google') return { status: 403 };
    if (url.pathname !== '/computeMetadata/v1/instance/service-accounts/default/identity') return { status: 404 };
    const aud = url.searchParams.get('audience');
    if (!aud) return { status: 400 };
    const c = claims({ aud });
    if (url.searchParams.get('format') !== 'full') delete c.google;
    return { body: await google.sign(c, { now: h.ctx.now() }) };
  });
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `
kind: join_rule
name: gce
spec:
  method: gcp
  bot: gw
  gcp:
    audience: "${AUDIENCE}"
    jwks_url: "${google.server.url}/oauth2/v3/certs"
    ca_file: ${google.server.caFile}
    allow:
      - { project_id: acme-prod, zone: "europe-west1-*", instance_name: "gw-*", service_account: "${vm.email}" }
`,
  });
  run = joinRunner(h);
}, 120_000);

afterAll(async () => {
  run?.close();
  await metadata?.close();
  await google?.server.close();
  await h?.close();
  tmp.cleanup();
});

describe('gcp join against a fake metadata server', () => {
  it('joins with the metadata server identity token (audience, format=full); the instance id names the machine', async () => {
    const hits = metadata.hits.length;
    const r = await run.exchange(
      gcpJoinAgentFromConfig(gcpAgentConfigSchema().parse({ audience: AUDIENCE, metadata_endpoint: metadata.url })),
    );
    expect(metadata.hits.slice(hits)).toEqual([
      `GET /computeMetadata/v1/instance/service-accounts/default/identity?audience=${encodeURIComponent(AUDIENCE)}&format=full`,
    ]);
    expect(r.payload.result.instance_id).toBe(`gcp-${vm.instance_id}`);
    const inst = (await h.ctx.stores.instances.get(`gcp-${vm.instance_id}`))!;
    expect(inst.joinMethod).toBe('gcp');
    expect(inst.facts).toMatchObject({
      gcp_project_id: 'acme-prod',
      gcp_project_number: '123456789012',
      gcp_zone: vm.zone,
      gcp_instance_id: vm.instance_id,
      gcp_instance_name: 'gw-7',
      gcp_service_account: vm.email,
      gcp_rule: 'gce',
    });
    const again = await run.exchange(new GcpJoinAgent({ audience: AUDIENCE, endpoint: metadata.url }));
    expect(again.payload.result.instance_id).toBe(`gcp-${vm.instance_id}`);
    expect(again.payload.result.generation).toBe(2);
  });

  it('a token without google.compute_engine claims (no format=full) is gcp_claims_missing', async () => {
    const c = claims();
    delete c.google;
    await run.refused(tokenAgent(await google.sign(c, { now: h.ctx.now() })), 'gcp_claims_missing');
  });

  it('refuses an expired token: jwt_expired', async () => {
    const hourAgo = h.ctx.now() - 3600_000;
    await run.refused(
      tokenAgent(
        await google.sign(
          claims({
            iat: Math.floor(hourAgo / 1000),
            nbf: Math.floor(hourAgo / 1000),
            exp: Math.floor(hourAgo / 1000) + 600,
          }),
        ),
      ),
      'jwt_expired',
    );
  });

  it('refuses a token older than an hour even if its exp says otherwise: jwt_expired', async () => {
    const twoHoursAgo = Math.floor((h.ctx.now() - 2 * 3600_000) / 1000);
    await run.refused(
      tokenAgent(await google.sign(claims({ iat: twoHoursAgo, nbf: twoHoursAgo, exp: twoHoursAgo + 4 * 3600 }))),
      'jwt_expired',
    );
  });

  it('refuses a token issued in the future: jwt_not_yet_valid', async () => {
    const later = Math.floor((h.ctx.now() + 600_000) / 1000);
    await run.refused(
      tokenAgent(await google.sign(claims({ iat: later, nbf: later - 700, exp: later + 3600 }))),
      'jwt_not_yet_valid',
    );
  });

  it('refuses a token for another audience: jwt_audience_mismatch', async () => {
    const { error } = await run.refused(
      tokenAgent(await google.sign(claims({ aud: 'https://some-other-service.test' }), { now: h.ctx.now() })),
      'jwt_audience_mismatch',
    );
    expect(error.message).toContain(AUDIENCE);
  });

  it('refuses a token from another issuer: jwt_issuer_mismatch', async () => {
    await run.refused(
      tokenAgent(await google.sign(claims({ iss: 'https://accounts.example.test' }), { now: h.ctx.now() })),
      'jwt_issuer_mismatch',
    );
  });

  it('refuses alg none and HS256 keyed with the RSA public key: jwt_alg_refused', async () => {
    const now = Math.floor(h.ctx.now() / 1000);
    const c = { ...claims(), iat: now, exp: now + 300 };
    await run.refused(tokenAgent(unsignedToken(c)), 'jwt_alg_refused');
    const { error } = await run.refused(tokenAgent(hmacWithPublicKey(c, google.keys[0]!)), 'jwt_alg_refused');
    expect(error.message).toContain('HS256');
  });

  it('refuses a kid Google never published: jwt_kid_unknown; a known kid with the wrong key: jwt_signature_invalid', async () => {
    await run.refused(
      tokenAgent(await google.sign(claims(), { key: newKey('never-published'), now: h.ctx.now() })),
      'jwt_kid_unknown',
    );
    await run.refused(
      tokenAgent(await google.sign(claims(), { key: newKey('g1'), now: h.ctx.now() })),
      'jwt_signature_invalid',
    );
  });

  it('refuses a VM outside the allow list: gcp_not_allowed, naming the claim', async () => {
    const { error, audit } = await run.refused(
      tokenAgent(await google.sign(claims({}, { project_id: 'acme-dev' }), { now: h.ctx.now() })),
      'gcp_not_allowed',
    );
    expect(error.message).toMatch(/project_id "acme-dev" does not match "acme-prod"/);
    expect(String(audit.details.message)).toContain('acme-dev');
    const e2 = await run.refused(
      tokenAgent(await google.sign(claims({}, { zone: 'us-central1-a' }), { now: h.ctx.now() })),
      'gcp_not_allowed',
    );
    expect(e2.error.message).toMatch(/zone "us-central1-a"/);
    // An unverified service account address does not count as the service account.
    const e3 = await run.refused(
      tokenAgent(await google.sign(claims({ email_verified: false }), { now: h.ctx.now() })),
      'gcp_not_allowed',
    );
    expect(e3.error.message).toMatch(/service_account \(absent\)/);
  });

  it('a metadata server that refuses the request is cloud_metadata_unavailable on the agent', async () => {
    const e = await new GcpJoinAgent({ audience: AUDIENCE, endpoint: metadata.url, serviceAccount: 'nobody' })
      .fetchToken()
      .catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'cloud_metadata_unavailable' });
  });
});
