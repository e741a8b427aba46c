/**
 * Building the azure join agent from the agent's configuration (agent.yaml, snake_case):
 *
 *   join:
 *     method: azure
 *     azure:
 *       imds_endpoint: "http://169.254.169.254"       # optional (default)
 *       managed_identity: true                          # optional: also send a managed identity token
 *       # managed_identity: { resource: "https://management.azure.com/", client_id: "<user-assigned id>" }
 *       intermediates_file: /etc/sigil/azure-cas.pem    # optional: Azure TLS issuing CA(s) to send along
 *       timeout: 5s                                     # optional
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { pemToDers } from '../../pki/pem.js';
import { parseDuration } from '../../util/duration.js';
import { AzureJoinAgent } from './agent.js';
import type { AgentJoinMethodEntry } from '../registry.js';
import { azureDescriptor } from './descriptor.js';

export const azureAgentConfigSchema = z.strictObject({
  imds_endpoint: z.url({ protocol: /^https?$/, error: 'imds_endpoint must be an http(s):// URL' }).optional(),
  managed_identity: z
    .union([
      z.boolean(),
      z.strictObject({
        resource: z.string().min(1).max(512).optional(),
        client_id: z.string().min(1).max(128).optional(),
      }),
    ])
    .optional(),
  intermediates_file: z.string().min(1).max(4096).optional(),
  timeout: z.union([z.string(), z.number()]).optional(),
});
export type AzureAgentConfig = z.infer<typeof azureAgentConfigSchema>;

export function azureJoinAgentFromConfig(cfg: AzureAgentConfig): AzureJoinAgent {
  let intermediates: string[] | undefined;
  if (cfg.intermediates_file !== undefined) {
    let pem: string;
    try {
      pem = readFileSync(cfg.intermediates_file, 'utf8');
    } catch (e) {
      throw new SigilError(
        'config_invalid',
        `cannot read join.azure.intermediates_file ${cfg.intermediates_file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    intermediates = pemToDers(pem, 'CERTIFICATE', 'config_invalid').map((d) => d.toString('base64'));
  }
  const mi = cfg.managed_identity;
  return new AzureJoinAgent({
    ...(cfg.imds_endpoint !== undefined ? { endpoint: cfg.imds_endpoint } : {}),
    ...(mi !== undefined
      ? {
          managedIdentity:
            typeof mi === 'boolean'
              ? mi
              : {
                  ...(mi.resource ? { resource: mi.resource } : {}),
                  ...(mi.client_id ? { clientId: mi.client_id } : {}),
                },
        }
      : {}),
    ...(intermediates ? { intermediates } : {}),
    ...(cfg.timeout !== undefined ? { timeoutMs: parseDuration(cfg.timeout, 'config_invalid') * 1000 } : {}),
  });
}

/** The agent side of the azure join (join/agent-methods.ts). */
export const azureAgentMethod: AgentJoinMethodEntry<AzureAgentConfig> = {
  descriptor: azureDescriptor,
  configSchema: azureAgentConfigSchema,
  create: (settings) => ({ method: azureJoinAgentFromConfig(settings), singleUseCredential: undefined }),
};
