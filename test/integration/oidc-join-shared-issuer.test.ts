/**
 * Two Kubernetes clusters with ONE service-account issuer string (kubeadm's and k3s's default
 * --service-account-issuer is https://kubernetes.default.svc.cluster.local), told apart only by
 * their rules' key sets (jwks_file), both mapped to one bot: cluster B naming a pod uid of
 * cluster A must not re-join — take over, bump, and so lock — A's instance. The authority that
 * vouches for a claimed machine id is the issuer AND the rule's pinned key set
 * (join/oidc/server.ts machineIdAuthority; review of session 14).
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { tempDir } from '../helpers/cli.js';
import { newKey, TestTokenIssuer, type IssuerKey } from '../helpers/fake-oidc.js';
import { joinRunner, oidcTokenAgent, type JoinRunner } from '../helpers/join-run.js';
import { startIssuer, type Harness } from './harness.js';

const tmp = tempDir('sigil-oidc-shared-iss-');
const AUD = 'sigil.shared-iss.test';
const ISS = 'https://kubernetes.default.svc.cluster.local'; // kubeadm / k3s default
let clusterA: TestTokenIssuer;
let clusterB: TestTokenIssuer;
let keyA: IssuerKey;
let keyB: IssuerKey;
let h: Harness;
let run: JoinRunner;

const podToken = (idp: TestTokenIssuer, podUid: string): Promise<string> =>
  idp.sign(
    {
      iss: ISS,
      aud: [AUD],
      jti: randomUUID(),
      sub: 'system:serviceaccount:prod:app',
      'kubernetes.io': {
        namespace: 'prod',
        pod: { name: 'p', uid: podUid },
        serviceaccount: { name: 'app', uid: randomUUID() },
      },
    },
    { now: h.ctx.now() },
  );
const joinOutcome = (token: string) => run.outcome(oidcTokenAgent(token));

beforeAll(async () => {
  keyA = newKey('cluster-a');
  keyB = newKey('cluster-b');
  clusterA = new TestTokenIssuer([keyA]);
  clusterB = new TestTokenIssuer([keyB]);
  const jwksA = joinPath(tmp.path, 'cluster-a-jwks.json');
  const jwksB = joinPath(tmp.path, 'cluster-b-jwks.json');
  writeFileSync(jwksA, JSON.stringify(await clusterA.jwks()));
  writeFileSync(jwksB, JSON.stringify(await clusterB.jwks()));
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `
kind: bot
name: prod
spec: { roles: [edge] }
---
kind: join_rule
name: k8s-a
spec:
  method: oidc
  bot: prod
  oidc: { provider: kubernetes, issuer: "${ISS}", audience: ${AUD}, jwks_file: ${jwksA}, allow: [ { namespace: prod } ] }
---
kind: join_rule
name: k8s-b
spec:
  method: oidc
  bot: prod
  oidc: { provider: kubernetes, issuer: "${ISS}", audience: ${AUD}, jwks_file: ${jwksB}, allow: [ { namespace: prod } ] }
`,
  });
  run = joinRunner(h);
}, 120_000);

afterAll(async () => {
  run?.close();
  await h?.close();
  tmp.cleanup();
});

describe('two clusters with one service-account issuer, one bot', () => {
  it("cluster B's token naming cluster A's pod uid does not re-join A's instance", async () => {
    const podUid = randomUUID();
    const victim = await joinOutcome(await podToken(clusterA, podUid));
    expect(victim).toMatchObject({ ok: true, result: { instance_id: `k8s-${podUid}`, generation: 1 } });
    const before = (await h.ctx.stores.instances.get(`k8s-${podUid}`))!;
    expect(before.facts.oidc_rule).toBe('k8s-a');
    expect(before.facts.machine_id_authority).toMatch(
      /^https:\/\/kubernetes\.default\.svc\.cluster\.local jwks_file:.*cluster-a-jwks\.json$/,
    );

    // Cluster B — its own signing key, verified only by rule k8s-b — names the victim's pod uid.
    const out = await joinOutcome(await podToken(clusterB, podUid));
    const after = (await h.ctx.stores.instances.get(`k8s-${podUid}`))!;
    // Without the key set in the authority: ok, generation 2, oidc_rule k8s-b — cluster B would
    // hold the pod's identity and A's pod be a generation behind (next renewal: locked).
    expect({ out, generation: after.generation, rule: after.facts.oidc_rule }).toEqual({
      out: { ok: false, code: 'instance_conflict' },
      generation: 1,
      rule: 'k8s-a',
    });
    // Cluster A itself re-joins its pod.
    expect(await joinOutcome(await podToken(clusterA, podUid))).toMatchObject({ ok: true, result: { generation: 2 } });
  });
});
