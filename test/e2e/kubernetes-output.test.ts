/**
 * The kubernetes output read by the real kubectl: `kubectl config view --raw --kubeconfig …`
 * parses the kubeconfig (server, context, embedded CA/cert/key), and the client certificate
 * carries CN = the Kubernetes user and O = each group (openssl x509 -subject), for the key
 * embedded next to it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { credentialAgent, type CredentialAgent } from '../helpers/credential-agent.js';
import { startIssuer, type Harness } from '../integration/harness.js';

let h: Harness;
let agent: CredentialAgent;

function kubectl(args: string[]): string {
  const r = spawnSync('kubectl', args, { encoding: 'utf8' });
  if (r.error)
    throw new Error(
      'kubectl is not installed; install it with: apt-get install -y kubernetes-client (scripts/setup.sh does)',
    );
  if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  kubectl(['version', '--client']);
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `
kind: role
name: k8s-ci
spec: { max_ttl: 1h, allowed_outputs: [kubernetes], kubernetes_users: [ci-robot], kubernetes_groups: [ci, "{{internal.teams}}"] }
---
kind: bot
name: kbot
spec: { roles: [k8s-ci], traits: { teams: [viewers] } }
`,
  });
  agent = await credentialAgent(h, { bot: 'kbot' });
});

afterAll(async () => {
  agent?.close();
  await h?.close();
});

describe('kubernetes output with real kubectl', () => {
  it('kubectl parses the kubeconfig; the client certificate has CN = user and O = groups, for the embedded key', async () => {
    const dir = join(agent.dir, 'kube');
    const [o] = await agent
      .outputs([{ type: 'kubernetes', path: dir, api_server: 'https://k8s.example:6443', cluster_name: 'prod' }])
      .refresh();
    expect(o).toMatchObject({ action: 'issued' });
    const kubeconfig = join(dir, 'kubeconfig');
    expect(statSync(kubeconfig).mode & 0o777).toBe(0o600);

    const view = JSON.parse(kubectl(['config', 'view', '--raw', '--kubeconfig', kubeconfig, '-o', 'json']));
    expect(view['current-context']).toBe('prod');
    expect(view.clusters[0]).toMatchObject({ name: 'prod', cluster: { server: 'https://k8s.example:6443' } });
    expect(view.contexts[0].context).toEqual({ cluster: 'prod', user: 'ci-robot' });
    const jsonpath = (p: string): string =>
      kubectl(['config', 'view', '--raw', '--kubeconfig', kubeconfig, '-o', `jsonpath={${p}}`]);
    const certPem = Buffer.from(jsonpath('.users[0].user.client-certificate-data'), 'base64').toString('utf8');
    const keyPem = Buffer.from(jsonpath('.users[0].user.client-key-data'), 'base64').toString('utf8');
    const caPem = Buffer.from(jsonpath('.clusters[0].cluster.certificate-authority-data'), 'base64').toString('utf8');
    expect(caPem).toBe(h.rootPem.trim() + '\n');

    const certFile = join(agent.dir, 'client.crt');
    const keyFile = join(agent.dir, 'client.key');
    writeFileSync(certFile, certPem);
    writeFileSync(keyFile, keyPem, { mode: 0o600 });
    // Groups in the order the role grants them (literal, then the trait), then the user.
    expect(execFileSync('openssl', ['x509', '-noout', '-subject', '-in', certFile], { encoding: 'utf8' }).trim()).toBe(
      'subject=O = ci, O = viewers, CN = ci-robot',
    );
    expect(
      execFileSync('openssl', ['x509', '-noout', '-ext', 'extendedKeyUsage', '-in', certFile], { encoding: 'utf8' }),
    ).toMatch(/TLS Web Client Authentication\s*$/);
    const certPub = execFileSync('openssl', ['x509', '-noout', '-pubkey', '-in', certFile], { encoding: 'utf8' });
    const keyPub = execFileSync('openssl', ['pkey', '-pubout', '-in', keyFile], { encoding: 'utf8' });
    expect(keyPub).toBe(certPub);
    // The chain (leaf + intermediate) verifies against the Sigil root as a TLS client.
    const root = join(agent.dir, 'root.pem');
    writeFileSync(root, h.rootPem);
    expect(
      execFileSync('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', root, '-untrusted', certFile, certFile], {
        encoding: 'utf8',
      }),
    ).toMatch(/: OK/);
  });

  it('a group beyond the role is refused by the issuer', async () => {
    const [o] = await agent
      .outputs([
        {
          type: 'kubernetes',
          path: join(agent.dir, 'kube-admin'),
          api_server: 'https://k8s.example:6443',
          groups: ['system:masters'],
        },
      ])
      .refresh();
    expect(o!.action === 'failed' && [o.error.code, o.error.message]).toEqual([
      'role_denied',
      'role k8s-ci does not allow kubernetes group system:masters (kubernetes_groups)',
    ]);
  });
});
