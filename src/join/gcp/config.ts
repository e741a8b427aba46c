/**
 * Building the gcp join agent from the agent's configuration (agent.yaml, snake_case):
 *
 *   join:
 *     method: gcp
 *     gcp:
 *       audience: "https://sigil.example.com"          # required: the issuer's gcp rule audience
 *       metadata_endpoint: "http://metadata.google.internal"   # optional (default)
 *       service_account: default                        # optional
 *       timeout: 5s                                     # optional
 */
import { parseDuration } from '../../util/duration.js';
import { GcpJoinAgent } from './agent.js';
import type { AgentJoinMethodCode } from '../registry.js';
import type { GcpAgentConfig } from './schema.js';
export { gcpAgentConfigSchema, type GcpAgentConfig } from './schema.js';

export function gcpJoinAgentFromConfig(cfg: GcpAgentConfig): GcpJoinAgent {
  return new GcpJoinAgent({
    audience: cfg.audience,
    ...(cfg.metadata_endpoint !== undefined ? { endpoint: cfg.metadata_endpoint } : {}),
    ...(cfg.service_account !== undefined ? { serviceAccount: cfg.service_account } : {}),
    ...(cfg.timeout !== undefined ? { timeoutMs: parseDuration(cfg.timeout, 'config_invalid') * 1000 } : {}),
  });
}

/** The agent side of the gcp join (its registry entry in join/agent-methods.ts loads this file). */
export const gcpAgentCode: AgentJoinMethodCode<GcpAgentConfig> = {
  create: (settings) => ({ method: gcpJoinAgentFromConfig(settings), singleUseCredential: undefined }),
};
