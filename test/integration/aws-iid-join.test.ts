/**
 * aws_iid join end to end, in process, over real HTTPS on loopback: a fake IMDS (IMDSv2 only)
 * serving documents signed in AWS's exact formats by a test "AWS" (openssl: DSA/SHA-1 and
 * RSA-2048/SHA-256 PKCS#7 streamed like AWS's, raw RSA signatures), the agent's IMDS client,
 * the binding key, and every refusal with its own code and one audit row.
 */
import { existsSync, statSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { AwsIidJoinAgent } from '../../src/join/aws-iid/agent.js';
import {
  awsIidAgentConfigSchema,
  awsIidJoinAgentFromConfig,
  loadOrCreateBindingKey,
} from '../../src/join/aws-iid/config.js';
import { keyHash } from '../../src/join/aws-iid/wire.js';
import type { JoinMethodAgent } from '../../src/join/types.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { tempDir } from '../helpers/cli.js';
import { FakeAwsSigner, startFakeImds, type FakeImds } from '../helpers/fake-aws.js';
import { joinRunner, type JoinRunner } from '../helpers/join-run.js';
import { startIssuer, type Harness } from './harness.js';

const tmp = tempDir('sigil-aws-');
let aws: FakeAwsSigner;
let imds: FakeImds;
let h: Harness;
let run: JoinRunner;

const ACCOUNT = '123456789012';

function rules(certsDir: string): string {
  return `
kind: join_rule
name: ec2
spec:
  method: aws_iid
  bot: gw
  aws_iid:
    certs_dir: ${certsDir}
    allow:
      - { account_id: "${ACCOUNT}", region: [us-east-1, eu-west-1], instance_type: "t3.*" }
---
kind: join_rule
name: ec2-fresh
spec:
  method: aws_iid
  bot: gw
  aws_iid:
    certs_dir: ${certsDir}
    first_join_within: 10m
    allow:
      - { account_id: "210987654321" }
`;
}

let keyN = 0;
function agent(opts: { key?: SoftwareSigner; kinds?: Array<'rsa2048' | 'pkcs7' | 'signature'> } = {}): AwsIidJoinAgent {
  return new AwsIidJoinAgent({
    endpoint: imds.url,
    bindingKey: opts.key ?? loadOrCreateBindingKey(joinPath(tmp.path, `binding-${++keyN}.key`)),
    ...(opts.kinds ? { kinds: opts.kinds } : {}),
  });
}

let instanceN = 0;
const newInstanceId = (): string => `i-0${(++instanceN).toString(16).padStart(16, 'a')}`;

beforeAll(async () => {
  aws = new FakeAwsSigner(joinPath(tmp.path, 'aws'));
  for (const r of ['us-east-1', 'eu-west-1', 'ap-south-1']) aws.addRegion(r);
  imds = await startFakeImds(aws);
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', { yaml: rules(aws.certsDir) });
  run = joinRunner(h);
}, 120_000);

afterAll(async () => {
  run?.close();
  await imds?.close();
  await h?.close();
  tmp.cleanup();
});

describe('aws_iid join against a fake IMDS', () => {
  it('joins with the rsa2048 document over IMDSv2; the instance id names the machine and the binding records the key', async () => {
    const id = newInstanceId();
    imds.setInstance({ accountId: ACCOUNT, region: 'us-east-1', instanceId: id, instanceType: 't3.small' });
    const key = SoftwareSigner.generate();
    const hits = imds.server.hits.length;
    const r = await run.exchange(agent({ key }));
    expect(r.challenges).toBe(0);
    expect(imds.server.hits.slice(hits)).toEqual([
      'PUT /latest/api/token',
      'GET /latest/dynamic/instance-identity/document',
      'GET /latest/dynamic/instance-identity/rsa2048',
    ]);
    expect(r.payload.result.instance_id).toBe(`aws-${id}`);
    expect(r.payload.result.spiffe_id).toBe(`spiffe://example.org/bot/gw/aws-${id}`);
    const inst = (await h.ctx.stores.instances.get(`aws-${id}`))!;
    expect(inst.joinMethod).toBe('aws_iid');
    expect(inst.facts).toMatchObject({
      aws_account_id: ACCOUNT,
      aws_region: 'us-east-1',
      aws_instance_id: id,
      aws_instance_type: 't3.small',
      aws_signature_kind: 'rsa2048',
      aws_rule: 'ec2',
      aws_binding_key: keyHash(key.publicKeySpki()),
      aws_first_join: true,
    });
    const audit = (await h.ctx.stores.audit.list()).filter((a) => a.action === 'join' && a.outcome === 'ok').at(-1)!;
    expect(audit.details).toMatchObject({ aws_account_id: ACCOUNT, aws_instance_id: id, aws_region: 'us-east-1' });
    expect(await h.ctx.stores.keyBindings.get('aws_iid', id)).toMatchObject({
      keyHash: keyHash(key.publicKeySpki()),
      rule: 'ec2',
    });

    // Re-joins (after expiry, or at any time) with the same binding key: same instance, next generation.
    const again = await run.exchange(agent({ key }));
    expect(again.payload.result.instance_id).toBe(`aws-${id}`);
    expect(again.payload.result.generation).toBe(2);
  });

  it('falls back rsa2048 → pkcs7 (DSA/SHA-1) → signature on 404', async () => {
    const id = newInstanceId();
    imds.setInstance({ accountId: ACCOUNT, region: 'eu-west-1', instanceId: id }, ['pkcs7', 'signature']);
    const r1 = await run.exchange(agent());
    expect((await h.ctx.stores.instances.get(r1.payload.result.instance_id))!.facts).toMatchObject({
      aws_signature_kind: 'pkcs7',
      aws_region: 'eu-west-1',
    });
    const id2 = newInstanceId();
    imds.setInstance({ accountId: ACCOUNT, region: 'eu-west-1', instanceId: id2 }, ['signature']);
    const hits = imds.server.hits.length;
    const r2 = await run.exchange(agent());
    expect((await h.ctx.stores.instances.get(r2.payload.result.instance_id))!.facts).toMatchObject({
      aws_signature_kind: 'signature',
    });
    expect(
      imds.server.hits
        .slice(hits)
        .filter((x) => x.startsWith('GET /latest/dynamic/instance-identity/') && !x.endsWith('document')),
    ).toEqual([
      'GET /latest/dynamic/instance-identity/rsa2048',
      'GET /latest/dynamic/instance-identity/pkcs7',
      'GET /latest/dynamic/instance-identity/signature',
    ]);
  });

  it('the agent config creates the binding key (0600) once and keeps it', async () => {
    const id = newInstanceId();
    imds.setInstance({ accountId: ACCOUNT, region: 'us-east-1', instanceId: id });
    const stateDir = joinPath(tmp.path, 'state');
    const cfg = awsIidAgentConfigSchema().parse({ imds_endpoint: imds.url, timeout: '3s' });
    await run.exchange(awsIidJoinAgentFromConfig(cfg, { dataDir: stateDir }));
    const file = joinPath(stateDir, 'aws-iid-binding.key');
    expect(existsSync(file)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const r = await run.exchange(awsIidJoinAgentFromConfig(cfg, { dataDir: stateDir }));
    expect(r.payload.result.generation).toBe(2);
  });

  it('IMDSv2 only: a missing or wrong session token gets 401 from IMDS, and the agent says so', async () => {
    imds.setInstance({ accountId: ACCOUNT, region: 'us-east-1', instanceId: newInstanceId() });
    const { httpRequest } = await import('../../src/join/http.js');
    expect((await httpRequest({ url: `${imds.url}/latest/dynamic/instance-identity/document` })).status).toBe(401);
    expect(
      (
        await httpRequest({
          url: `${imds.url}/latest/dynamic/instance-identity/document`,
          headers: { 'x-aws-ec2-metadata-token': 'forged' },
        })
      ).status,
    ).toBe(401);
    // An IMDS that refuses the agent's token: the agent fails with a coded, retryable error.
    imds.refuseTokens = true;
    try {
      const e = await agent()
        .evidence({ requestId: 'r'.repeat(22), spkiDer: SoftwareSigner.generate().publicKeySpki() })
        .catch((x: unknown) => x);
      expect(e).toBeInstanceOf(SigilError);
      expect((e as SigilError).code).toBe('cloud_metadata_unavailable');
      expect((e as SigilError).message).toMatch(/HTTP 401 \(IMDSv2 token refused\)/);
      expect((e as SigilError).retryable).toBe(true);
    } finally {
      imds.refuseTokens = false;
    }
  });

  it('a later join of the instance with another binding key is aws_instance_key_mismatch, until an admin resets the binding', async () => {
    const id = newInstanceId();
    imds.setInstance({ accountId: ACCOUNT, region: 'us-east-1', instanceId: id });
    const owner = SoftwareSigner.generate();
    await run.exchange(agent({ key: owner }));
    // Someone who copied the document, with a key of their own.
    const { error } = await run.refused(agent({ key: SoftwareSigner.generate() }), 'aws_instance_key_mismatch');
    expect(error.message).toContain(`bindings reset aws_iid ${id}`);
    // The admin resets the binding (the instance lost its key): the next join binds afresh.
    const ls = (await runAdminOp(h.ctx.stores, 'bindings.ls', { method: 'aws_iid' })) as Array<{ subject: string }>;
    expect(ls.map((b) => b.subject)).toContain(id);
    expect(
      await runAdminOp(h.ctx.stores, 'bindings.reset', { method: 'aws_iid', subject: id, reason: 'rebuilt' }),
    ).toEqual({ method: 'aws_iid', subject: id, reset: true });
    expect((await h.ctx.stores.audit.list()).at(-1)).toMatchObject({
      action: 'binding_reset',
      outcome: 'ok',
      actor: 'admin',
      method: 'aws_iid',
    });
    const newKey = SoftwareSigner.generate();
    const r = await run.exchange(agent({ key: newKey }));
    expect(r.payload.result.instance_id).toBe(`aws-${id}`);
    expect((await h.ctx.stores.keyBindings.get('aws_iid', id))!.keyHash).toBe(keyHash(newKey.publicKeySpki()));
    await run.refused(agent({ key: owner }), 'aws_instance_key_mismatch');
    await expect(
      runAdminOp(h.ctx.stores, 'bindings.reset', { method: 'aws_iid', subject: 'i-0000000000000000' }),
    ).rejects.toThrow(/no aws_iid binding/);
  });

  it('two first joins racing with one document and different keys: exactly one binds', async () => {
    const id = newInstanceId();
    imds.setInstance({ accountId: ACCOUNT, region: 'us-east-1', instanceId: id });
    const results = await Promise.allSettled([run.exchange(agent()), run.exchange(agent()), run.exchange(agent())]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((x): x is PromiseRejectedResult => x.status === 'rejected'))
      expect((r.reason as SigilError).code).toBe('aws_instance_key_mismatch');
    expect((await h.ctx.stores.keyBindings.list({ method: 'aws_iid' })).filter((b) => b.subject === id)).toHaveLength(
      1,
    );
  });

  it('a copied document with a forged binding proof is aws_binding_proof_invalid', async () => {
    imds.setInstance({ accountId: ACCOUNT, region: 'us-east-1', instanceId: newInstanceId() });
    const a = agent();
    const forged: JoinMethodAgent = {
      name: 'aws_iid',
      canReattest: true,
      evidence: async (ctx) => {
        const ev = await a.evidence(ctx);
        // The proof signed for another request id.
        const other = await a.evidence({ ...ctx, requestId: `${ctx.requestId.slice(0, -1)}X` });
        return { ...ev, binding_signature: other.binding_signature };
      },
    };
    await run.refused(forged, 'aws_binding_proof_invalid');
  });

  it('refuses an account or instance type outside the allow list: aws_not_allowed, naming the rule and the fact', async () => {
    imds.setInstance({ accountId: '999999999999', region: 'us-east-1', instanceId: newInstanceId() });
    const { error, audit } = await run.refused(agent(), 'aws_not_allowed');
    expect(error.message).toMatch(/account 999999999999/);
    expect(error.message).toMatch(/join_rule ec2: entry 1: account_id "999999999999" does not match "123456789012"/);
    expect(String(audit.details.message)).toContain('999999999999');
    imds.setInstance({
      accountId: ACCOUNT,
      region: 'us-east-1',
      instanceId: newInstanceId(),
      instanceType: 'm5.large',
    });
    const e2 = await run.refused(agent(), 'aws_not_allowed');
    expect(e2.error.message).toMatch(/instance_type "m5.large" does not match "t3\.\*"/);
  });

  it('refuses a region the issuer has no certificate for: aws_region_unknown', async () => {
    const signer2 = new FakeAwsSigner(joinPath(tmp.path, 'aws-other'));
    signer2.addRegion('sa-east-1');
    const imds2 = await startFakeImds(signer2);
    try {
      imds2.setInstance({ accountId: ACCOUNT, region: 'sa-east-1', instanceId: newInstanceId() });
      await run.refused(
        new AwsIidJoinAgent({ endpoint: imds2.url, bindingKey: SoftwareSigner.generate() }),
        'aws_region_unknown',
      );
    } finally {
      await imds2.close();
    }
  });

  it("refuses a document signed by someone else than the region's AWS certificate: aws_signature_invalid", async () => {
    // A second "AWS" with its own keys for the same region: its documents do not verify here.
    const rogue = new FakeAwsSigner(joinPath(tmp.path, 'aws-rogue'));
    rogue.addRegion('us-east-1');
    const imds2 = await startFakeImds(rogue);
    try {
      for (const kind of ['rsa2048', 'pkcs7', 'signature'] as const) {
        imds2.setInstance({ accountId: ACCOUNT, region: 'us-east-1', instanceId: newInstanceId() }, [kind]);
        await run.refused(
          new AwsIidJoinAgent({ endpoint: imds2.url, bindingKey: SoftwareSigner.generate() }),
          'aws_signature_invalid',
        );
      }
    } finally {
      await imds2.close();
    }
  });

  it('first_join_within: a first join long after launch is aws_document_too_old', async () => {
    imds.setInstance({
      accountId: '210987654321',
      region: 'us-east-1',
      instanceId: newInstanceId(),
      pendingTime: '2020-01-01T00:00:00Z',
    });
    const { error } = await run.refused(agent(), 'aws_document_too_old');
    expect(error.message).toContain('ec2-fresh');
    imds.setInstance({ accountId: '210987654321', region: 'us-east-1', instanceId: newInstanceId() });
    await run.exchange(agent());
  });

  it('a join rule with malformed aws_iid blocks is refused at apply time', async () => {
    const bad = async (block: string): Promise<unknown> => {
      try {
        await runAdminOp(h.ctx.stores, 'apply', {
          yaml: `kind: join_rule\nname: bad\nspec:\n  method: aws_iid\n  bot: gw\n  aws_iid: ${block}\n`,
        });
        return undefined;
      } catch (e) {
        return (e as SigilError).code;
      }
    };
    expect(await bad('{ allow: [] }')).toBe('policy_invalid');
    expect(await bad('{ allow: [ { region: us-east-1 } ] }')).toBe('policy_invalid');
    expect(await bad('{ allow: [ { account_id: "1234*" } ] }')).toBe('policy_invalid');
    expect(await bad('{ allow: [ { account_id: "123456789012", colour: blue } ] }')).toBe('policy_invalid');
    expect(await bad('{ certs_dir: relative/dir, allow: [ { account_id: "123456789012" } ] }')).toBe('policy_invalid');
  });
});
