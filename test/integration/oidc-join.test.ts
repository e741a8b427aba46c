/**
 * oidc join end to end, in process, over real HTTPS on loopback, for every provider preset:
 * GitHub Actions (the agent asks a fake Actions token service), GitLab CI and CircleCI (the
 * token in an environment variable), Kubernetes (a projected token file; keys by OIDC
 * discovery, or from a static JWKS file) and a generic issuer (discovery, any claims). Tokens
 * in each provider's real claim shapes, signed by test keys whose JWKS is served over HTTPS by
 * a server with its own CA. Every refusal has its own code and one audit row.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { OidcJoinAgent } from '../../src/join/oidc/agent.js';
import { oidcAgentConfigSchema, oidcJoinAgentFromConfig } from '../../src/join/oidc/config.js';
import type { JoinMethodAgent } from '../../src/join/types.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { tempDir } from '../helpers/cli.js';
import { hmacWithPublicKey, newKey, TestTokenIssuer, unsignedToken } from '../helpers/fake-oidc.js';
import { joinRunner, type JoinRunner } from '../helpers/join-run.js';
import { startHttpServer, type LoopbackServer } from '../helpers/loopback-servers.js';
import { startIssuer, type Harness } from './harness.js';

const tmp = tempDir('sigil-oidc-');
const AUD = 'sigil.example.test';
const ORG = '8d7f2d04-41a4-4b0a-8c3e-6a1f9b2c7e10';
const PROJ = 'a1b2c3d4-0000-4000-8000-000000000001';
const CTX = 'c0ffee00-0000-4000-8000-0000000000c7';
const K8S_STATIC = 'https://kubernetes.default.svc.cluster.local';
let idp: TestTokenIssuer; // one key set server standing in for every provider
let actions: LoopbackServer;
let h: Harness;
let run: JoinRunner;
let base = '';
let staticKey: ReturnType<typeof newKey>;

const iss = {
  github: (): string => `${base}/github`,
  gitlab: (): string => `${base}/gitlab`,
  circleci: (): string => `${base}/circleci/org/${ORG}`,
  k8s: (): string => `${base}/k8s`,
  tfc: (): string => `${base}/tfc`,
};
const now = (): number => Math.floor(h.ctx.now() / 1000);

function github(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: iss.github(),
    aud: AUD,
    jti: randomUUID(),
    sub: 'repo:acme/infra:environment:production',
    repository: 'acme/infra',
    repository_id: '700001',
    repository_owner: 'acme',
    repository_owner_id: '9001',
    ref: 'refs/heads/main',
    ref_type: 'branch',
    sha: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4',
    workflow: 'deploy',
    job_workflow_ref: 'acme/infra/.github/workflows/deploy.yml@refs/heads/main',
    environment: 'production',
    event_name: 'push',
    actor: 'octocat',
    run_id: '555001',
    run_attempt: '1',
    runner_environment: 'github-hosted',
    ...over,
  };
}
const gitlab = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  iss: iss.gitlab(),
  aud: AUD,
  jti: randomUUID(),
  sub: 'project_path:acme/web:ref_type:branch:ref:main',
  namespace_id: '72',
  namespace_path: 'acme',
  project_id: '20',
  project_path: 'acme/web',
  user_login: 'alice',
  pipeline_id: '1212',
  pipeline_source: 'push',
  job_id: '3131',
  ref: 'main',
  ref_type: 'branch',
  ref_protected: 'true',
  environment: 'prod',
  ...over,
});
const circleci = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  iss: iss.circleci(),
  aud: AUD,
  sub: `org/${ORG}/project/${PROJ}/user/u-1`,
  'oidc.circleci.com/project-id': PROJ,
  'oidc.circleci.com/context-ids': ['c0ffee00-0000-4000-8000-000000000001', CTX],
  'oidc.circleci.com/vcs-origin': 'github.com/acme/api',
  'oidc.circleci.com/vcs-ref': 'refs/heads/main',
  ...over,
});
const POD_UID = '5f0c2b8e-3c5d-4c1a-9b7e-0d6f1e2a3b4c';
const k8s = (over: Record<string, unknown> = {}, issuer = iss.k8s()): Record<string, unknown> => ({
  iss: issuer,
  aud: [AUD],
  jti: randomUUID(),
  sub: 'system:serviceaccount:edge:gateway',
  'kubernetes.io': {
    namespace: 'edge',
    node: { name: 'node-3', uid: randomUUID() },
    pod: { name: 'gw-5f7c9', uid: POD_UID },
    serviceaccount: { name: 'gateway', uid: randomUUID() },
  },
  ...over,
});

const tokenAgent = (token: string): JoinMethodAgent => ({
  name: 'oidc',
  canReattest: true,
  evidence: () => Promise.resolve({ token }),
});
const sign = (c: Record<string, unknown>, opts: Parameters<TestTokenIssuer['sign']>[1] = {}): Promise<string> =>
  idp.sign(c, { now: h.ctx.now(), ...opts });

beforeAll(async () => {
  idp = new TestTokenIssuer([newKey('rsa-1'), newKey('ec-1', 'ES256')]);
  await idp.start(
    joinPath(tmp.path, 'idp'),
    ['/github/.well-known/jwks', '/gitlab/oauth/discovery/keys', `/circleci/org/${ORG}/.well-known/jwks-pub.json`],
    true,
  );
  base = idp.server.url;
  // The Actions token service: bearer-authenticated, audience from the query.
  actions = await startHttpServer(async (req, url) => {
    if (req.headers.authorization !== 'bearer actions-runtime-secret') return { status: 401 };
    return { body: { count: 1, value: await sign(github({ aud: url.searchParams.get('audience') })) } };
  });
  staticKey = newKey('static-1');
  const staticIssuer = new TestTokenIssuer([staticKey]);
  writeFileSync(joinPath(tmp.path, 'cluster-jwks.json'), JSON.stringify(await staticIssuer.jwks()));
  h = await startIssuer();
  const ca = idp.server.caFile;
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `
kind: join_rule
name: circle
spec:
  method: oidc
  bot: gw
  oidc: { provider: circleci, organization_id: "${ORG}", issuer: "${iss.circleci()}", audience: ${AUD}, ca_file: ${ca},
          allow: [ { project_id: "${PROJ}", context_id: "${CTX}", vcs_ref: "refs/heads/*" } ] }
---
kind: join_rule
name: gha
spec:
  method: oidc
  bot: gw
  oidc:
    provider: github
    issuer: "${iss.github()}"
    audience: ${AUD}
    ca_file: ${ca}
    allow:
      - { repository: acme/infra, ref: refs/heads/main, environment: production }
      - { repository_owner: acme, workflow: "release-*", claims: { runner_environment: github-hosted } }
---
kind: join_rule
name: gitlab
spec:
  method: oidc
  bot: gw
  oidc: { provider: gitlab, issuer: "${iss.gitlab()}", audience: ${AUD}, ca_file: ${ca}, allow: [ { project_path: "acme/*", ref_protected: "true", pipeline_source: [push, schedule] } ] }
---
kind: join_rule
name: k8s
spec:
  method: oidc
  bot: gw
  oidc: { provider: kubernetes, issuer: "${iss.k8s()}", audience: ${AUD}, ca_file: ${ca}, allow: [ { namespace: edge, service_account: gateway } ] }
---
kind: join_rule
name: k8s-static
spec:
  method: oidc
  bot: gw
  oidc: { provider: kubernetes, issuer: "${K8S_STATIC}", jwks_file: ${joinPath(tmp.path, 'cluster-jwks.json')}, audience: ${AUD}, allow: [ { namespace: "edge-*" } ] }
---
kind: join_rule
name: tfc
spec:
  method: oidc
  bot: gw
  oidc: { provider: generic, issuer: "${iss.tfc()}", audience: ${AUD}, ca_file: ${ca}, allow: [ { claims: { terraform_organization_name: acme, terraform_workspace_name: "prod-*" } } ] }
`,
  });
  run = joinRunner(h);
}, 120_000);

afterAll(async () => {
  run?.close();
  await actions?.close();
  await idp?.server.close();
  await h?.close();
  tmp.cleanup();
});

describe('oidc join, per provider', () => {
  it('GitHub Actions: the agent asks the Actions token service for the audience; repository, ref, workflow are audited', async () => {
    const env = {
      ACTIONS_ID_TOKEN_REQUEST_URL: `${actions.url}/_apis/token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'actions-runtime-secret',
    };
    const agent = oidcJoinAgentFromConfig(oidcAgentConfigSchema().parse({ provider: 'github', audience: AUD }), env);
    expect(agent.rejoinOnRenew).toBe(true);
    const hits = actions.hits.length;
    const r = await run.exchange(agent);
    expect(actions.hits.slice(hits)).toEqual([`GET /_apis/token?api-version=2.0&audience=${AUD}`]);
    const inst = (await h.ctx.stores.instances.get(r.payload.result.instance_id))!;
    expect(inst.joinMethod).toBe('oidc');
    expect(inst.facts).toMatchObject({
      oidc_provider: 'github',
      oidc_issuer: iss.github(),
      oidc_rule: 'gha',
      github_repository: 'acme/infra',
      github_ref: 'refs/heads/main',
      github_workflow: 'deploy',
      github_environment: 'production',
      github_run_id: '555001',
    });
    const audit = (await h.ctx.stores.audit.list()).filter((a) => a.action === 'join' && a.outcome === 'ok').at(-1)!;
    expect(audit.details).toMatchObject({
      github_repository: 'acme/infra',
      oidc_sub: 'repo:acme/infra:environment:production',
    });
    // Each join is a fresh token (and, for a CI job, a fresh instance).
    const again = await run.exchange(agent);
    expect(again.payload.result.instance_id).not.toBe(r.payload.result.instance_id);
    // Outside Actions: a clear configuration error.
    const outside = oidcJoinAgentFromConfig(oidcAgentConfigSchema().parse({ provider: 'github', audience: AUD }), {});
    await expect(outside.evidence({ requestId: 'x'.repeat(22), spkiDer: Buffer.alloc(0) })).rejects.toMatchObject({
      code: 'config_invalid',
    });
  });

  it('GitHub: the second allow entry (owner + workflow glob + a raw claim) also matches', async () => {
    await run.exchange(
      tokenAgent(
        await sign(github({ repository: 'acme/tools', workflow: 'release-nightly', environment: undefined }), {
          key: idp.keys[1],
        }),
      ),
    );
  });

  it('GitLab CI: the token from the id_tokens variable', async () => {
    const env = { SIGIL_ID_TOKEN: await sign(gitlab()) };
    const r = await run.exchange(oidcJoinAgentFromConfig(oidcAgentConfigSchema().parse({ provider: 'gitlab' }), env));
    expect((await h.ctx.stores.instances.get(r.payload.result.instance_id))!.facts).toMatchObject({
      oidc_provider: 'gitlab',
      gitlab_project_path: 'acme/web',
      gitlab_ref: 'main',
      gitlab_pipeline_source: 'push',
      gitlab_job_id: '3131',
    });
  });

  it('CircleCI: the per-organization issuer, project and context ids', async () => {
    const env = { CIRCLE_OIDC_TOKEN_V2: await sign(circleci()) };
    const r = await run.exchange(oidcJoinAgentFromConfig(oidcAgentConfigSchema().parse({ provider: 'circleci' }), env));
    expect((await h.ctx.stores.instances.get(r.payload.result.instance_id))!.facts).toMatchObject({
      circleci_project_id: PROJ,
      circleci_context_id: expect.arrayContaining([CTX]),
      circleci_vcs_origin: 'github.com/acme/api',
    });
    const { error } = await run.refused(
      tokenAgent(await sign(circleci({ 'oidc.circleci.com/context-ids': ['c0ffee00-0000-4000-8000-000000000001'] }))),
      'oidc_claims_not_allowed',
    );
    expect(error.message).toMatch(
      /context_id \["c0ffee00-0000-4000-8000-000000000001"\] does not match "c0ffee00-0000-4000-8000-0000000000c7"/,
    );
  });

  it('Kubernetes: the projected token file, keys found by OIDC discovery; the pod uid keeps one instance across re-joins', async () => {
    const file = joinPath(tmp.path, 'sa-token');
    writeFileSync(file, `${await sign(k8s())}\n`);
    const agent = oidcJoinAgentFromConfig(oidcAgentConfigSchema().parse({ provider: 'kubernetes', token_file: file }));
    const r = await run.exchange(agent);
    expect(r.payload.result.instance_id).toBe(`k8s-${POD_UID}`);
    expect((await h.ctx.stores.instances.get(`k8s-${POD_UID}`))!.facts).toMatchObject({
      k8s_namespace: 'edge',
      k8s_service_account: 'gateway',
      k8s_pod: 'gw-5f7c9',
      k8s_pod_uid: POD_UID,
      oidc_rule: 'k8s',
    });
    expect(idp.server.hits).toContain('GET /k8s/.well-known/openid-configuration');
    // The kubelet rotated the token: the pod re-joins as the same instance.
    writeFileSync(file, await sign(k8s()));
    const again = await run.exchange(agent);
    expect(again.payload.result.instance_id).toBe(`k8s-${POD_UID}`);
    expect(again.payload.result.generation).toBe(2);
  });

  it('Kubernetes with a static key set file (jwks_file)', async () => {
    const token = await idp.sign(
      k8s(
        {
          'kubernetes.io': {
            namespace: 'edge-eu',
            pod: { name: 'p', uid: randomUUID() },
            serviceaccount: { name: 'x', uid: randomUUID() },
          },
        },
        K8S_STATIC,
      ),
      { key: staticKey, now: h.ctx.now() },
    );
    const r = await run.exchange(tokenAgent(token));
    expect((await h.ctx.stores.instances.get(r.payload.result.instance_id))!.facts).toMatchObject({
      oidc_rule: 'k8s-static',
      k8s_namespace: 'edge-eu',
    });
  });

  it('a generic issuer (Terraform Cloud style): discovery, and any claims by name', async () => {
    const claims = {
      iss: iss.tfc(),
      aud: AUD,
      sub: 'organization:acme:project:p:workspace:prod-net:run_phase:apply',
      terraform_organization_name: 'acme',
      terraform_workspace_name: 'prod-net',
      jti: randomUUID(),
    };
    const r = await run.exchange(tokenAgent(await sign(claims)));
    expect((await h.ctx.stores.instances.get(r.payload.result.instance_id))!.facts).toMatchObject({
      oidc_provider: 'generic',
      oidc_sub: claims.sub,
      oidc_rule: 'tfc',
    });
    const { error } = await run.refused(
      tokenAgent(await sign({ ...claims, jti: randomUUID(), terraform_workspace_name: 'dev-net' })),
      'oidc_claims_not_allowed',
    );
    expect(error.message).toMatch(/claim terraform_workspace_name "dev-net" does not match "prod-\*"/);
  });
});

describe('oidc refusals', () => {
  it('a token joins once: the same jti again is jwt_replayed', async () => {
    const token = await sign(github());
    await run.exchange(tokenAgent(token));
    const { error } = await run.refused(tokenAgent(token), 'jwt_replayed');
    expect(error.message).toContain('fresh token');
  });

  it('two joins racing with one token: exactly one wins, the other is jwt_replayed', async () => {
    const token = await sign(github());
    const results = await Promise.allSettled([run.exchange(tokenAgent(token)), run.exchange(tokenAgent(token))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as SigilError).code).toBe(
      'jwt_replayed',
    );
  });

  it('claims outside the allow list: oidc_claims_not_allowed, naming the claim and the rule', async () => {
    const { error, audit } = await run.refused(
      tokenAgent(await sign(github({ repository: 'evil/infra', repository_owner: 'evil' }))),
      'oidc_claims_not_allowed',
    );
    expect(error.message).toMatch(
      /join_rule gha: entry 1: repository "evil\/infra" does not match "acme\/infra"; entry 2: repository_owner "evil" does not match "acme"/,
    );
    expect(String(audit.details.message)).toContain('evil/infra');
    await run.refused(tokenAgent(await sign(github({ ref: 'refs/heads/feature' }))), 'oidc_claims_not_allowed');
    await run.refused(tokenAgent(await sign(gitlab({ ref_protected: 'false' }))), 'oidc_claims_not_allowed');
  });

  it('expired: jwt_expired; not yet valid: jwt_not_yet_valid', async () => {
    await run.refused(
      tokenAgent(await sign(github({ iat: now() - 900, nbf: now() - 900, exp: now() - 600 }))),
      'jwt_expired',
    );
    await run.refused(tokenAgent(await sign(github({ nbf: now() + 600, exp: now() + 900 }))), 'jwt_not_yet_valid');
  });

  it('another audience: jwt_audience_mismatch', async () => {
    await run.refused(tokenAgent(await sign(github({ aud: 'sts.amazonaws.com' }))), 'jwt_audience_mismatch');
  });

  it('an issuer no rule trusts: jwt_issuer_mismatch', async () => {
    const { error } = await run.refused(
      tokenAgent(await sign(github({ iss: 'https://token.actions.githubusercontent.com' }))),
      'jwt_issuer_mismatch',
    );
    expect(error.message).toContain(iss.github());
  });

  it('alg none, and HS256 keyed with the RSA public key: jwt_alg_refused', async () => {
    const c = github({ iat: now(), exp: now() + 300 });
    await run.refused(tokenAgent(unsignedToken(c)), 'jwt_alg_refused');
    await run.refused(tokenAgent(hmacWithPublicKey(c, idp.keys[0]!)), 'jwt_alg_refused');
  });

  it('an unknown kid: jwt_kid_unknown (retryable: the key set is fetched again at most every 30 s)', async () => {
    const { error } = await run.refused(
      tokenAgent(await sign(github(), { key: newKey('rotated-in-later') })),
      'jwt_kid_unknown',
    );
    expect(error.retryable).toBe(true);
  });

  it('a signature by another key under a published kid: jwt_signature_invalid; garbage: jwt_invalid', async () => {
    await run.refused(tokenAgent(await sign(github(), { key: newKey('rsa-1') })), 'jwt_signature_invalid');
    await run.refused(tokenAgent('not.a.jwt-at-all!'), 'jwt_invalid');
  });

  it('join rules that would trust a whole platform are refused at apply time', async () => {
    const bad = async (block: string): Promise<string | undefined> => {
      try {
        await runAdminOp(h.ctx.stores, 'apply', {
          yaml: `kind: join_rule\nname: bad\nspec:\n  method: oidc\n  bot: gw\n  oidc: ${block}\n`,
        });
        return undefined;
      } catch (e) {
        return `${(e as SigilError).code}: ${(e as SigilError).message}`;
      }
    };
    expect(await bad(`{ provider: github, audience: ${AUD}, allow: [ { ref: refs/heads/main } ] }`)).toMatch(
      /^policy_invalid: .*must name one of repository/,
    );
    expect(await bad(`{ provider: kubernetes, audience: ${AUD}, allow: [ { namespace: edge } ] }`)).toMatch(
      /^policy_invalid: .*needs issuer/,
    );
    expect(await bad(`{ provider: circleci, audience: ${AUD}, allow: [ { project_id: x } ] }`)).toMatch(
      /^policy_invalid: .*organization_id/,
    );
    expect(await bad(`{ provider: github, audience: ${AUD}, allow: [ { repository: a/b, colour: blue } ] }`)).toMatch(
      /^policy_invalid/,
    );
    expect(
      await bad(`{ provider: github, audience: ${AUD}, algorithms: [HS256], allow: [ { repository: a/b } ] }`),
    ).toMatch(/^policy_invalid/);
    expect(await bad(`{ provider: github, allow: [ { repository: a/b } ] }`)).toMatch(/^policy_invalid: .*audience/);
    // A scope field that pins no owner is no scope (review of issue #16): every repository on the platform.
    for (const loose of [
      `{ repository: "*", environment: production }`,
      `{ repository: "*/app" }`,
      `{ repository_owner: "*" }`,
      `{ repository_owner: "acme*" }`,
      `{ repository_id: "12*" }`,
      `{ sub: "repo:*" }`,
      `{ repository: [acme/app, "*"] }`,
    ])
      expect(await bad(`{ provider: github, audience: ${AUD}, allow: [ ${loose} ] }`), loose).toMatch(
        /^policy_invalid: .*must pin an owner/,
      );
    expect(await bad(`{ provider: gitlab, audience: ${AUD}, allow: [ { project_path: "*" } ] }`)).toMatch(
      /must pin an owner/,
    );
    // Pinned owners, with wildcards after them, are fine.
    for (const ok of [
      `{ repository: "acme/*" }`,
      `{ repository: [acme/app, "acme/tools-*"] }`,
      `{ repository_owner: acme, environment: "*" }`,
      `{ sub: "repo:acme/*:environment:production" }`,
      `{ repository: "*", repository_owner: acme }`,
    ])
      expect(await bad(`{ provider: github, audience: ${AUD}, allow: [ ${ok} ] }`), ok).toBeUndefined();
  });

  it('the agent reads a missing token file as cloud_metadata_unavailable', async () => {
    const a = new OidcJoinAgent({ kind: 'file', path: joinPath(tmp.path, 'nope') });
    await expect(a.token()).rejects.toMatchObject({ code: 'cloud_metadata_unavailable' });
  });
});
