/**
 * OIDC joins across rules (review of issue #16):
 *   - a token spent under a rule with a short clock skew is remembered until its exp plus the
 *     LARGEST skew any rule may allow, so a laxer rule trusting the same issuer cannot take it again;
 *   - a token from a second Kubernetes cluster (another rule, of another bot or of the same bot)
 *     naming a pod uid of the first cannot re-join — and so take over, bump and lock — the first
 *     cluster's instance.
 * A fake IdP (test/helpers/fake-oidc.ts) signs for both clusters with one key: the routing is
 * what is tested, not a key compromise.
 */
import { randomUUID } from 'node:crypto';
import { join as joinPath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { tempDir } from '../helpers/cli.js';
import { newKey, TestTokenIssuer } from '../helpers/fake-oidc.js';
import { joinRunner, oidcTokenAgent, type JoinRunner } from '../helpers/join-run.js';
import { startIssuer, type Harness, type Identity } from './harness.js';

const tmp = tempDir('sigil-oidc-crossrule-');
const AUD = 'sigil.crossrule.test';
let idp: TestTokenIssuer;
let h: Harness;
let run: JoinRunner;
let base = '';

const k8s = (issuer: string, podUid: string, ns: string): Record<string, unknown> => ({
  iss: issuer,
  aud: [AUD],
  jti: randomUUID(),
  sub: `system:serviceaccount:${ns}:app`,
  'kubernetes.io': {
    namespace: ns,
    pod: { name: 'p', uid: podUid },
    serviceaccount: { name: 'app', uid: randomUUID() },
  },
});

const joinOutcome = (token: string) => run.outcome(oidcTokenAgent(token));

beforeAll(async () => {
  idp = new TestTokenIssuer([newKey('rsa-1')]);
  await idp.start(joinPath(tmp.path, 'idp'), [], true); // discovery for any prefix
  base = idp.server.url;
  h = await startIssuer();
  const ca = idp.server.caFile;
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `
kind: bot
name: prod
spec: { roles: [edge] }
---
kind: bot
name: dev
spec: { roles: [edge] }
---
kind: join_rule
name: a-short
spec:
  method: oidc
  bot: gw
  oidc: { provider: generic, issuer: "${base}/tfc", audience: ${AUD}, ca_file: ${ca}, skew: 60s, allow: [ { claims: { org: acme } } ] }
---
kind: join_rule
name: b-long
spec:
  method: oidc
  bot: gw
  oidc: { provider: generic, issuer: "${base}/tfc", audience: ${AUD}, ca_file: ${ca}, skew: 5m, allow: [ { claims: { org: acme, ws: "prod-*" } } ] }
---
kind: join_rule
name: k8s-prod
spec:
  method: oidc
  bot: prod
  oidc: { provider: kubernetes, issuer: "${base}/prod-cluster", audience: ${AUD}, ca_file: ${ca}, allow: [ { namespace: prod } ] }
---
kind: join_rule
name: k8s-prod-eu
spec:
  method: oidc
  bot: prod
  oidc: { provider: kubernetes, issuer: "${base}/prod-eu-cluster", audience: ${AUD}, ca_file: ${ca}, allow: [ { namespace: prod } ] }
---
kind: join_rule
name: k8s-dev
spec:
  method: oidc
  bot: dev
  oidc: { provider: kubernetes, issuer: "${base}/dev-cluster", audience: ${AUD}, ca_file: ${ca}, allow: [ { namespace: dev } ] }
`,
  });
  run = joinRunner(h);
}, 120_000);

afterAll(async () => {
  run?.close();
  await idp?.server.close();
  await h?.close();
  tmp.cleanup();
});

describe('oidc jti replay', () => {
  it('a used token is never accepted again while any rule still considers it unexpired', async () => {
    h.clock.offsetMs = 0;
    const t0 = h.ctx.now();
    const token = await idp.sign(
      { iss: `${base}/tfc`, aud: AUD, sub: 'ws', org: 'acme', ws: 'prod-net', jti: 'jti-replay-1' },
      { now: t0 }, // exp = t0 + 300 s
    );
    const first = await joinOutcome(token);
    expect(first.ok).toBe(true);
    // An immediate replay is refused, as documented.
    expect(await joinOutcome(token)).toMatchObject({ ok: false, code: 'jwt_replayed' });

    // 120 s after exp: rule a-short (skew 60 s) calls it expired, b-long (skew 5 min) does not.
    h.clock.offsetMs = 300_000 + 120_000;
    // Any other oidc join in between prunes the replay rows (commitPort.recordJti prunes first).
    const other = await idp.sign(
      { iss: `${base}/tfc`, aud: AUD, sub: 'ws', org: 'acme', ws: 'x', jti: randomUUID() },
      { now: h.ctx.now() },
    );
    expect((await joinOutcome(other)).ok).toBe(true);

    const replay = await joinOutcome(token);
    h.clock.offsetMs = 0;
    // Refused: the use is remembered until exp + the largest skew any rule may allow.
    expect(replay).toEqual({ ok: false, code: 'jwt_replayed' });
  });
});

describe('machine id shared across issuers / bots', () => {
  it("a token from another cluster naming a victim pod's uid does not re-join the victim's instance (of another bot)", async () => {
    h.clock.offsetMs = 0;
    const podUid = randomUUID();
    const victim = await run.exchange(
      oidcTokenAgent(await idp.sign(k8s(`${base}/prod-cluster`, podUid, 'prod'), { now: h.ctx.now() })),
    );
    expect(victim.payload.result.instance_id).toBe(`k8s-${podUid}`);
    expect(victim.payload.result.bot).toBe('prod');

    // The dev cluster's issuer (its signing key, or etcd, in the attacker's hands) names the same pod uid.
    const attacker = await joinOutcome(await idp.sign(k8s(`${base}/dev-cluster`, podUid, 'dev'), { now: h.ctx.now() }));
    const inst = (await h.ctx.stores.instances.get(`k8s-${podUid}`))!;
    expect(attacker).toEqual({ ok: false, code: 'instance_conflict' });
    expect(inst.bot).toBe('prod');
    expect(inst.generation).toBe(1);
    expect(inst.facts.oidc_rule).toBe('k8s-prod');
  });

  it("a second cluster mapped to the SAME bot naming a victim pod's uid does not re-join it; the victim's own cluster still does", async () => {
    h.clock.offsetMs = 0;
    const podUid = randomUUID();
    const victim = await run.exchange(
      oidcTokenAgent(await idp.sign(k8s(`${base}/prod-cluster`, podUid, 'prod'), { now: h.ctx.now() })),
    );
    expect(victim.payload.result.bot).toBe('prod');
    const before = (await h.ctx.stores.instances.get(`k8s-${podUid}`))!;
    expect(before.facts.machine_id_authority).toBe(`${base}/prod-cluster`);

    // prod-eu's issuer (another cluster of the same bot) names the pod uid of a prod pod.
    const attacker = await h.ctx.stores.audit.list();
    const out = await joinOutcome(await idp.sign(k8s(`${base}/prod-eu-cluster`, podUid, 'prod'), { now: h.ctx.now() }));
    expect(out).toEqual({ ok: false, code: 'instance_conflict' });
    const refusal = (await h.ctx.stores.audit.list()).slice(attacker.length).find((a) => a.outcome === 'refused');
    expect(JSON.stringify(refusal?.details)).toMatch(
      /was joined on the word of .*prod-cluster; this join names it on the word of .*prod-eu-cluster/,
    );
    const inst = (await h.ctx.stores.instances.get(`k8s-${podUid}`))!;
    expect({ generation: inst.generation, rule: inst.facts.oidc_rule, locked: inst.locked }).toEqual({
      generation: 1,
      rule: 'k8s-prod',
      locked: false,
    });

    // The pod's own cluster re-joins it (a fresh token): the same instance, the next generation.
    const again = await joinOutcome(await idp.sign(k8s(`${base}/prod-cluster`, podUid, 'prod'), { now: h.ctx.now() }));
    expect(again).toMatchObject({ ok: true, result: { instance_id: `k8s-${podUid}`, generation: 2 } });
  });

  it('...and the victim keeps working (its current identity is not turned into a "stolen" stale generation)', async () => {
    h.clock.offsetMs = 0;
    const podUid = randomUUID();
    const victim = await run.exchange(
      oidcTokenAgent(await idp.sign(k8s(`${base}/prod-cluster`, podUid, 'prod'), { now: h.ctx.now() })),
    );
    await joinOutcome(await idp.sign(k8s(`${base}/dev-cluster`, podUid, 'dev'), { now: h.ctx.now() }));
    const id = { signer: victim.identity, chainPem: victim.payload.result.chain, result: victim.payload.result };
    const { envelope } = await h.renewEnvelope(id as Identity);
    const r = await h.post('renew', envelope);
    const inst = (await h.ctx.stores.instances.get(`k8s-${podUid}`))!;
    expect({ status: r.status, code: r.json?.error?.code ?? r.json?.code, locked: inst.locked }).toEqual({
      status: 200,
      code: undefined,
      locked: false,
    });
  });
});
