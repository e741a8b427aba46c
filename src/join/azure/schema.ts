/**
 * The azure join's `join.azure:` block of agent.yaml. Only zod and plain data here: the
 * agent's config loader reads every method's schema (join/agent-methods.ts), while the code that
 * builds the method (config.ts, with its heavier imports) is loaded by the entry's `load()` only
 * when agent.yaml names this method (issue #19). config.ts documents the settings.
 */
import { z } from 'zod';

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
