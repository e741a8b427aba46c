/**
 * The gcp join's `join.gcp:` block of agent.yaml. Only zod and plain data here: the
 * agent's config loader builds the configured method's schema (join/agent-methods.ts), while the code that
 * builds the method (config.ts, with its heavier imports) is loaded by the entry's `load()` only
 * when agent.yaml names this method (issue #19). config.ts documents the settings.
 */
import { z } from 'zod';

/**
 * A fresh schema per call: the agent parses its config once at start, and a schema kept at module
 * level would stay resident in the daemon for nothing (zod schemas are large; issue #19).
 */
export function gcpAgentConfigSchema() {
  return z.strictObject({
    audience: z.string().min(1).max(512),
    metadata_endpoint: z.url({ protocol: /^https?$/, error: 'metadata_endpoint must be an http(s):// URL' }).optional(),
    service_account: z.string().min(1).max(256).optional(),
    timeout: z.union([z.string(), z.number()]).optional(),
  });
}
export type GcpAgentConfig = z.infer<ReturnType<typeof gcpAgentConfigSchema>>;
