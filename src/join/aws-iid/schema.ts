/**
 * The aws_iid join's `join.aws_iid:` block of agent.yaml. Only zod and plain data here: the
 * agent's config loader builds the configured method's schema (join/agent-methods.ts), while the code that
 * builds the method (config.ts, with its heavier imports) is loaded by the entry's `load()` only
 * when agent.yaml names this method (issue #19). config.ts documents the settings.
 */
import * as z from '../../util/zod-mini.js';

/** The signed forms of the identity document, in the order the agent tries them (404 → next). */
export const AWS_SIGNATURE_KINDS = ['rsa2048', 'pkcs7', 'signature'] as const;
export type AwsSignatureKind = (typeof AWS_SIGNATURE_KINDS)[number];

/**
 * A fresh schema per call: the agent parses its config once at start, and a schema kept at module
 * level would stay resident in the daemon for nothing (zod schemas are large; issue #19).
 */
export function awsIidAgentConfigSchema() {
  return z.strictObject({
    imds_endpoint: z.optional(z.url({ protocol: /^https?$/, error: 'imds_endpoint must be an http(s):// URL' })),
    binding_key: z.optional(z.string().check(z.minLength(1), z.maxLength(4096))),
    signatures: z.optional(z.array(z.enum(AWS_SIGNATURE_KINDS)).check(z.minLength(1), z.maxLength(3))),
    timeout: z.optional(z.union([z.string(), z.number()])),
  });
}
export type AwsIidAgentConfig = z.infer<ReturnType<typeof awsIidAgentConfigSchema>>;
