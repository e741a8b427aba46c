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
import { SigilError } from '../../errors.js';
import { pemToDers } from '../../pki/pem.js';
import { parseDuration } from '../../util/duration.js';
import { AzureJoinAgent } from './agent.js';
import type { AgentJoinMethodCode } from '../registry.js';
import type { AzureAgentConfig } from './schema.js';
export { azureAgentConfigSchema, type AzureAgentConfig } from './schema.js';

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

/** The agent side of the azure join (its registry entry in join/agent-methods.ts loads this file). */
export const azureAgentCode: AgentJoinMethodCode<AzureAgentConfig> = {
  create: (settings) => ({ method: azureJoinAgentFromConfig(settings), singleUseCredential: undefined }),
};
