/**
 * The azure join's `join.azure:` block of agent.yaml. Only zod and plain data here: the
 * agent's config loader builds the configured method's schema (join/agent-methods.ts), while the code that
 * builds the method (config.ts, with its heavier imports) is loaded by the entry's `load()` only
 * when agent.yaml names this method (issue #19). config.ts documents the settings.
 */
import * as z from '../../util/zod-mini.js';

/**
 * A fresh schema per call: the agent parses its config once at start, and a schema kept at module
 * level would stay resident in the daemon for nothing (zod schemas are large; issue #19).
 */
export function azureAgentConfigSchema() {
  return z.strictObject({
    imds_endpoint: z.optional(z.url({ protocol: /^https?$/, error: 'imds_endpoint must be an http(s):// URL' })),
    managed_identity: z.optional(
      z.union([
        z.boolean(),
        z.strictObject({
          resource: z.optional(z.string().check(z.minLength(1), z.maxLength(512))),
          client_id: z.optional(z.string().check(z.minLength(1), z.maxLength(128))),
        }),
      ]),
    ),
    intermediates_file: z.optional(z.string().check(z.minLength(1), z.maxLength(4096))),
    timeout: z.optional(z.union([z.string(), z.number()])),
  });
}
export type AzureAgentConfig = z.infer<ReturnType<typeof azureAgentConfigSchema>>;
