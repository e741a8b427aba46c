/**
 * The tpm join's `join.tpm:` block of agent.yaml. Only zod and plain data here: the
 * agent's config loader builds the configured method's schema (join/agent-methods.ts), while the code that
 * builds the method (config.ts, with its heavier imports) is loaded by the entry's `load()` only
 * when agent.yaml names this method (issue #19). config.ts documents the settings.
 */
import * as z from '../../util/zod-mini.js';

export const DEFAULT_TCTI = 'device:/dev/tpmrm0';

/**
 * A fresh schema per call: the agent parses its config once at start, and a schema kept at module
 * level would stay resident in the daemon for nothing (zod schemas are large; issue #19).
 */
export function tpmAgentConfigSchema() {
  return z.strictObject({
    tcti: z.optional(z.string().check(z.minLength(1), z.maxLength(1024))),
    ek: z.optional(z.enum(['auto', 'rsa-2048', 'ecc-p256', 'ecc-p384'])),
    event_log: z.optional(z.union([z.string().check(z.minLength(1), z.maxLength(4096)), z.literal(false)])),
  });
}
export type TpmAgentConfig = z.infer<ReturnType<typeof tpmAgentConfigSchema>>;

export function tpmTcti(cfg: TpmAgentConfig | undefined): string {
  return cfg?.tcti ?? DEFAULT_TCTI;
}
