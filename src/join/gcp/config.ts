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
import { z } from 'zod';
import { parseDuration } from '../../util/duration.js';
import { GcpJoinAgent } from './agent.js';
import type { AgentJoinMethodEntry } from '../registry.js';
import { gcpDescriptor } from './descriptor.js';

export const gcpAgentConfigSchema = z.strictObject({
  audience: z.string().min(1).max(512),
  metadata_endpoint: z.url({ protocol: /^https?$/, error: 'metadata_endpoint must be an http(s):// URL' }).optional(),
  service_account: z.string().min(1).max(256).optional(),
  timeout: z.union([z.string(), z.number()]).optional(),
});
export type GcpAgentConfig = z.infer<typeof gcpAgentConfigSchema>;

export function gcpJoinAgentFromConfig(cfg: GcpAgentConfig): GcpJoinAgent {
  return new GcpJoinAgent({
    audience: cfg.audience,
    ...(cfg.metadata_endpoint !== undefined ? { endpoint: cfg.metadata_endpoint } : {}),
    ...(cfg.service_account !== undefined ? { serviceAccount: cfg.service_account } : {}),
    ...(cfg.timeout !== undefined ? { timeoutMs: parseDuration(cfg.timeout, 'config_invalid') * 1000 } : {}),
  });
}

/** The agent side of the gcp join (join/agent-methods.ts). */
export const gcpAgentMethod: AgentJoinMethodEntry<GcpAgentConfig> = {
  descriptor: gcpDescriptor,
  configSchema: gcpAgentConfigSchema,
  create: (settings) => ({ method: gcpJoinAgentFromConfig(settings), singleUseCredential: undefined }),
};
