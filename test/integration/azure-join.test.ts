/**
 * azure join end to end, in process, over real HTTPS on loopback: the two-round exchange with
 * the issuer's nonce, a fake Azure IMDS signing attested documents in Azure's format with a
 * test CA chain (openssl), managed identity tokens from a test Entra ID issuer whose JWKS is
 * served over HTTPS with its own CA, and every refusal with its own code and one audit row.
 */
import { randomUUID } from 'node:crypto';
import { join as joinPath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AzureJoinAgent } from '../../src/join/azure/agent.js';
import { azureAgentConfigSchema, azureJoinAgentFromConfig } from '../../src/join/azure/config.js';
import { azureMachineId } from '../../src/join/azure/wire.js';
import type { JoinMethodAgent } from '../../src/join/types.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { tempDir } from '../helpers/cli.js';
import { azureCa, startFakeAzureImds, type AzureCa, type FakeAzureImds } from '../helpers/fake-azure.js';
import { newKey, TestTokenIssuer } from '../helpers/fake-oidc.js';
import { joinRunner, type JoinRunner } from '../helpers/join-run.js';
import { httpRequest } from '../../src/join/http.js';
import { OpensslPki } from '../helpers/openssl-pki.js';
import { startIssuer, type Harness } from './harness.js';

const tmp = tempDir('sigil-azure-');
const SUB = '11111111-2222-4333-8444-555555555555';
const SUB_MI = '99999999-2222-4333-8444-555555555555';
const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
let pki: OpensslPki;
let ca: AzureCa;
let entra: TestTokenIssuer;
let imds: FakeAzureImds;
let h: Harness;
let run: JoinRunner;

const agent = (o: ConstructorParameters<typeof AzureJoinAgent>[0] = {}): AzureJoinAgent =>
  new AzureJoinAgent({ endpoint: imds.url, retryDelayMs: 10, ...o });
function setVm(subscriptionId: string, resourceGroup = 'rg-edge-eu'): string {
  const vmId = randomUUID();
  imds.vm = { vmId, subscriptionId, tenantId: TENANT, resourceGroup };
  return vmId;
}

beforeAll(async () => {
  pki = new OpensslPki(joinPath(tmp.path, 'pki'));
  ca = azureCa(pki, 'azure');
  entra = new TestTokenIssuer([newKey('entra-1')]);
  await entra.start(joinPath(tmp.path, 'entra'), ['/common/discovery/v2.0/keys']);
  h = await startIssuer();
  imds = await startFakeAzureImds(
    tmp.path,
    ca,
    { vmId: randomUUID(), subscriptionId: SUB, tenantId: TENANT, resourceGroup: 'rg-edge-eu' },
    entra,
    () => h.ctx.now(),
  );
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `
kind: join_rule
name: azure-mi
spec:
  method: azure
  bot: gw
  azure:
    ca_files: [${ca.root.cert}]
    intermediate_files: [${ca.intermediate.cert}]
    managed_identity: { jwks_url: "${entra.server.url}/common/discovery/v2.0/keys", ca_file: ${entra.server.caFile} }
    allow: [ { subscription_id: "${SUB_MI}", tenant_id: "${TENANT}", resource_group: "RG-EDGE-*" } ]
---
kind: join_rule
name: azure-vms
spec:
  method: azure
  bot: gw
  azure:
    ca_files: [${ca.root.cert}]
    intermediate_files: [${ca.intermediate.cert}]
    allow: [ { subscription_id: "${SUB}" } ]
`,
  });
  run = joinRunner(h);
}, 120_000);

afterAll(async () => {
  run?.close();
  await imds?.close();
  await entra?.server.close();
  await h?.close();
  tmp.cleanup();
});

describe('azure join against a fake IMDS', () => {
  it("joins in two rounds: the attested document carries the nonce derived from the issuer's challenge", async () => {
    const vmId = setVm(SUB);
    const hits = imds.server.hits.length;
    const r = await run.exchange(azureJoinAgentFromConfig(azureAgentConfigSchema().parse({ imds_endpoint: imds.url })));
    expect(r.challenges).toBe(1);
    const calls = imds.server.hits.slice(hits);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatch(/^GET \/metadata\/attested\/document\?api-version=2020-09-01&nonce=\d{10}$/);
    expect(r.payload.result.instance_id).toBe(azureMachineId(vmId));
    expect((await h.ctx.stores.instances.get(azureMachineId(vmId)))!.facts).toMatchObject({
      azure_vm_id: vmId,
      azure_subscription_id: SUB,
      azure_sku: '22_04-lts-gen2',
      azure_rule: 'azure-vms',
      azure_signer: expect.stringContaining('CN=metadata.azure.com'),
    });
    const again = await run.exchange(agent());
    expect(again.payload.result.instance_id).toBe(azureMachineId(vmId));
    expect(again.payload.result.generation).toBe(2);
  });

  it('with a managed identity token: tenant and resource group are checked and audited', async () => {
    const vmId = setVm(SUB_MI);
    const r = await run.exchange(
      azureJoinAgentFromConfig(azureAgentConfigSchema().parse({ imds_endpoint: imds.url, managed_identity: true })),
    );
    expect(imds.server.hits.at(-1)).toBe(
      `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent('https://management.azure.com/')}`,
    );
    expect((await h.ctx.stores.instances.get(r.payload.result.instance_id))!.facts).toMatchObject({
      azure_vm_id: vmId,
      azure_tenant_id: TENANT,
      azure_resource_group: 'rg-edge-eu',
      azure_rule: 'azure-mi',
    });
    // A resource group outside the rule.
    setVm(SUB_MI, 'rg-finance');
    const { error } = await run.refused(agent({ managedIdentity: true }), 'azure_not_allowed');
    expect(error.message).toMatch(/resource_group "rg-finance" does not match "rg-edge-\*"/);
  });

  it('a rule with managed_identity refuses a join without a token: azure_token_required', async () => {
    setVm(SUB_MI);
    await run.refused(agent(), 'azure_token_required');
  });

  it('a managed identity of another subscription: azure_token_mismatch', async () => {
    setVm(SUB_MI);
    imds.tokenSubscription = SUB;
    try {
      await run.refused(agent({ managedIdentity: true }), 'azure_token_mismatch');
    } finally {
      imds.tokenSubscription = undefined;
    }
  });

  it('a document with another nonce (IMDS served a cached one, or a replay): the agent asks again, then azure_nonce_mismatch', async () => {
    setVm(SUB);
    imds.staleNonce = '0123456789';
    try {
      const hits = imds.server.hits.length;
      const { error } = await run.refused(agent({ attempts: 3 }), 'azure_nonce_mismatch');
      expect(imds.server.hits.slice(hits).filter((x) => x.includes('attested'))).toHaveLength(3);
      expect(error.message).toContain('0123456789');
    } finally {
      imds.staleNonce = undefined;
    }
  });

  it('a document outside its validity window: azure_document_expired', async () => {
    setVm(SUB);
    imds.timeShiftMs = -8 * 3600_000;
    try {
      await run.refused(agent(), 'azure_document_expired');
    } finally {
      imds.timeShiftMs = 0;
    }
  });

  it('a document signed under a CA the rule does not trust: azure_signer_untrusted', async () => {
    setVm(SUB);
    imds.ca = azureCa(pki, 'rogue');
    try {
      await run.refused(agent(), 'azure_signer_untrusted');
      // Sending the rogue intermediate along does not help: the root is what matters.
      await run.refused(
        agent({
          intermediates: [
            Buffer.from(imds.ca.intermediate.pem.replace(/-----[^-]+-----|\s/g, ''), 'base64').toString('base64'),
          ],
        }),
        'azure_signer_untrusted',
      );
    } finally {
      imds.ca = ca;
    }
  });

  it("a document signed by a trusted CA's certificate for another name: azure_signer_domain", async () => {
    setVm(SUB);
    const other = pki.leaf('other-name', ca.intermediate, '/O=Example/CN=metadata.example.com', {
      kind: 'rsa',
      ext: [
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage = serverAuth',
      ],
      san: 'DNS:metadata.example.com,DNS:azure.com.example.com',
    });
    imds.ca = { ...ca, signer: other };
    try {
      const { error } = await run.refused(agent(), 'azure_signer_domain');
      expect(error.message).toContain('metadata.example.com');
    } finally {
      imds.ca = ca;
    }
  });

  it('a subscription outside the allow list: azure_not_allowed', async () => {
    setVm('00000000-0000-4000-8000-000000000000');
    await run.refused(agent(), 'azure_not_allowed');
  });

  it('an answer taken from another join is refused (challenge_invalid)', async () => {
    setVm(SUB);
    let captured: Record<string, unknown> | undefined;
    const sniff: JoinMethodAgent = {
      name: 'azure',
      canReattest: true,
      evidence: () => Promise.resolve({}),
      respond: async (c, ctx) => {
        captured = await agent().respond(c, ctx);
        throw new Error('stop');
      },
    };
    await expect(run.exchange(sniff)).rejects.toThrow('stop');
    await run.refused(
      { name: 'azure', canReattest: true, evidence: () => Promise.resolve(captured!) },
      'challenge_invalid',
    );
  });

  it("the fake IMDS, like Azure's, wants the Metadata header", async () => {
    expect(
      (await httpRequest({ url: `${imds.url}/metadata/attested/document?api-version=2020-09-01&nonce=1234567890` }))
        .status,
    ).toBe(400);
  });
});
