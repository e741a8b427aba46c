/**
 * The aws_iid join's `join.aws_iid:` block of agent.yaml. Only zod and plain data here: the
 * agent's config loader builds the configured method's schema (join/agent-methods.ts), while the code that
 * builds the method (config.ts, with its heavier imports) is loaded by the entry's `load()` only
 * when agent.yaml names this method (issue #19). config.ts documents the settings.
 */
import { z } from 'zod';
import { AWS_SIGNATURE_KINDS } from './wire.js';

/**
 * A fresh schema per call: the agent parses its config once at start, and a schema kept at module
 * level would stay resident in the daemon for nothing (zod schemas are large; issue #19).
 */
export function awsIidAgentConfigSchema() {
  return z.strictObject({
    imds_endpoint: z.url({ protocol: /^https?$/, error: 'imds_endpoint must be an http(s):// URL' }).optional(),
    binding_key: z.string().min(1).max(4096).optional(),
    signatures: z.array(z.enum(AWS_SIGNATURE_KINDS)).min(1).max(3).optional(),
    timeout: z.union([z.string(), z.number()]).optional(),
  });
}
export type AwsIidAgentConfig = z.infer<ReturnType<typeof awsIidAgentConfigSchema>>;
