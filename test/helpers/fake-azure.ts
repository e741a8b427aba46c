/**
 * A stand-in for Azure's Instance Metadata Service: attested documents in Azure's format (the
 * JSON embedded in a PKCS#7 SignedData without signed attributes, the signing certificate
 * embedded, signed by a "metadata.azure.com" TLS certificate from a test CA chain made with
 * openssl), for the nonce the caller asks, and managed identity tokens from a test Microsoft
 * Entra ID issuer.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openssl, OpensslPki, type Issued } from './openssl-pki.js';
import { startHttpServer, type LoopbackServer } from './loopback-servers.js';
import type { TestTokenIssuer } from './fake-oidc.js';

/** IMDS's timestamp format: "MM/DD/YY HH:MM:SS -0000". */
export function imdsTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())}/${p(d.getUTCFullYear() % 100)} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} -0000`;
}

export interface AzureCa {
  root: Issued;
  intermediate: Issued;
  /** The attested-data signer (a TLS certificate for metadata.azure.com, or `name`). */
  signer: Issued;
}

/** root (RSA) → "Test Azure RSA TLS Issuing CA" → a TLS certificate for `names`. */
export function azureCa(
  pki: OpensslPki,
  label: string,
  names = ['eastus.metadata.azure.com', 'metadata.azure.com'],
): AzureCa {
  const root = pki.root(`${label}-root`, `/C=US/O=Test DigiCert ${label}/CN=Test Global Root G2 ${label}`, 'rsa');
  const intermediate = pki.intermediate(
    `${label}-inter`,
    root,
    `/C=US/O=Test Microsoft Corporation/CN=Test Azure RSA TLS Issuing CA ${label}`,
    'rsa',
    ['basicConstraints = critical,CA:TRUE,pathlen:0', 'extendedKeyUsage = serverAuth,clientAuth'],
  );
  const signer = pki.leaf(
    `${label}-signer`,
    intermediate,
    `/C=US/ST=WA/L=Redmond/O=Microsoft Corporation/CN=${names.at(-1)}`,
    {
      kind: 'rsa',
      ext: [
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage = clientAuth,serverAuth',
      ],
      san: names.map((n) => `DNS:${n}`).join(','),
    },
  );
  return { root, intermediate, signer };
}

export interface VmIdentity {
  vmId: string;
  subscriptionId: string;
  tenantId: string;
  resourceGroup: string;
}

export interface FakeAzureImds {
  server: LoopbackServer;
  url: string;
  vm: VmIdentity;
  /** Sign with this chain from now on. */
  ca: AzureCa;
  /** When set, every attested document carries this nonce (IMDS serving a cached document). */
  staleNonce: string | undefined;
  /** Shift the document's timestamps by this much (ms). */
  timeShiftMs: number;
  /** The subscription the managed identity token names (default: the VM's). */
  tokenSubscription: string | undefined;
  close(): Promise<void>;
}

export async function startFakeAzureImds(
  dir: string,
  ca: AzureCa,
  vm: VmIdentity,
  entra: TestTokenIssuer,
  now: () => number,
): Promise<FakeAzureImds> {
  const state: FakeAzureImds = {
    server: undefined as unknown as LoopbackServer,
    url: '',
    vm,
    ca,
    staleNonce: undefined,
    timeShiftMs: 0,
    tokenSubscription: undefined,
    close: () => state.server.close(),
  };
  const sign = (json: string): string => {
    const f = join(dir, `doc-${randomBytes(6).toString('hex')}.json`);
    writeFileSync(f, json);
    openssl([
      'smime',
      '-sign',
      '-binary',
      '-nodetach',
      '-noattr',
      '-md',
      'sha256',
      '-signer',
      state.ca.signer.cert,
      '-inkey',
      state.ca.signer.key,
      '-in',
      f,
      '-outform',
      'DER',
      '-out',
      `${f}.p7`,
    ]);
    return readFileSync(`${f}.p7`).toString('base64');
  };
  state.server = await startHttpServer(async (req, url) => {
    if (req.headers.metadata !== 'true')
      return { status: 400, body: { error: 'Bad request. Required metadata header not specified' } };
    if (url.pathname === '/metadata/attested/document') {
      const t = now() + state.timeShiftMs;
      const doc = {
        licenseType: '',
        nonce: state.staleNonce ?? url.searchParams.get('nonce') ?? '',
        plan: { name: '', product: '', publisher: '' },
        sku: '22_04-lts-gen2',
        subscriptionId: state.vm.subscriptionId,
        timeStamp: { createdOn: imdsTime(t), expiresOn: imdsTime(t + 6 * 3600_000) },
        vmId: state.vm.vmId,
      };
      return { body: { encoding: 'pkcs7', signature: sign(JSON.stringify(doc)) } };
    }
    if (url.pathname === '/metadata/identity/oauth2/token') {
      const resource = url.searchParams.get('resource') ?? '';
      const sub = state.tokenSubscription ?? state.vm.subscriptionId;
      const access_token = await entra.sign(
        {
          iss: `https://sts.windows.net/${state.vm.tenantId}/`,
          aud: resource,
          tid: state.vm.tenantId,
          oid: '0a0a0a0a-1111-2222-3333-444444444444',
          sub: '0a0a0a0a-1111-2222-3333-444444444444',
          xms_mirid: `/subscriptions/${sub}/resourcegroups/${state.vm.resourceGroup}/providers/Microsoft.Compute/virtualMachines/vm-1`,
        },
        { now: now() },
      );
      return { body: { access_token, resource, token_type: 'Bearer', expires_in: '86399' } };
    }
    return { status: 404 };
  });
  state.url = state.server.url;
  return state;
}
