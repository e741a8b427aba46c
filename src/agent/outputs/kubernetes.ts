/**
 * The `kubernetes` output: one self-contained `kubeconfig` (0600) for the configured API server,
 * with a client certificate whose CN is the Kubernetes user and whose O attributes are its
 * groups (the API server's x509 client-cert authenticator reads exactly these), the key, and the
 * API server's CA — all embedded, so a rotation replaces one file atomically and kubectl never
 * sees a certificate next to the wrong key.
 *
 * The API server must trust the Sigil root for client certificates (`--client-ca-file`);
 * `ca_file` is the CA of the API server's own serving certificate (default: the Sigil root).
 */
import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { SigilError } from '../../errors.js';
import type { CredentialOutputConfig } from './config.js';
import {
  KEY_MODE,
  withNewline,
  writeOutputFiles,
  type CredentialDestination,
  type Prepared,
} from './credential-output.js';
import { checkChainFor } from './database.js';
import { createOutputKey } from './output-key.js';

type KubernetesConfig = Extract<CredentialOutputConfig, { type: 'kubernetes' }>;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

export function renderKubeconfig(p: {
  cluster: string;
  server: string;
  caPem: string;
  user: string;
  certPem: string;
  keyPem: string;
}): string {
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: p.cluster, cluster: { server: p.server, 'certificate-authority-data': b64(p.caPem) } }],
    users: [{ name: p.user, user: { 'client-certificate-data': b64(p.certPem), 'client-key-data': b64(p.keyPem) } }],
    contexts: [{ name: p.cluster, context: { cluster: p.cluster, user: p.user } }],
    'current-context': p.cluster,
    preferences: {},
  };
  return '# Written by sigil (kubernetes output); rewritten at every rotation — do not edit.\n' + stringify(doc);
}

export function kubernetesOutput(cfg: KubernetesConfig): CredentialDestination {
  return {
    config: cfg,
    files: ['kubeconfig'],
    async prepare(): Promise<Prepared> {
      const key = await createOutputKey('software');
      return {
        fields: {
          kind: 'kubernetes',
          csr: key.csrPem,
          ...(cfg.user ? { kubernetes_user: cfg.user } : {}),
          ...(cfg.groups ? { kubernetes_groups: cfg.groups } : {}),
          ...(cfg.ttl !== undefined ? { ttl_s: cfg.ttl } : {}),
        },
        secret: { keyPem: key.keyPem, spkiPem: key.spkiPem },
      };
    },
    write(result, prepared, ctx) {
      checkChainFor(result, prepared.secret!.spkiPem!);
      let caPem = ctx.bundlePem;
      if (cfg.ca_file) {
        try {
          caPem = readFileSync(cfg.ca_file, 'utf8');
        } catch (e) {
          throw new SigilError(
            'config_invalid',
            `kubernetes output ca_file ${cfg.ca_file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`,
          );
        }
      }
      const kubeconfig = renderKubeconfig({
        cluster: cfg.cluster_name ?? 'sigil',
        server: cfg.api_server,
        caPem,
        user: result.common_name ?? 'sigil',
        certPem: result.chain!.map(withNewline).join(''),
        keyPem: prepared.secret!.keyPem!,
      });
      writeOutputFiles(cfg, [{ name: 'kubeconfig', data: kubeconfig, mode: KEY_MODE }]);
    },
  };
}
