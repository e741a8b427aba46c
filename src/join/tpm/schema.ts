/**
 * The tpm join's `join.tpm:` block of agent.yaml. Only zod and plain data here: the
 * agent's config loader builds the configured method's schema (join/agent-methods.ts), while the code that
 * builds the method (config.ts, with its heavier imports) is loaded by the entry's `load()` only
 * when agent.yaml names this method (issue #19). config.ts documents the settings.
 */
import { z } from 'zod';

export const DEFAULT_TCTI = 'device:/dev/tpmrm0';

/**
 * A fresh schema per call: the agent parses its config once at start, and a schema kept at module
 * level would stay resident in the daemon for nothing (zod schemas are large; issue #19).
 */
export function tpmAgentConfigSchema() {
  return z.strictObject({
    tcti: z.string().min(1).max(1024).optional(),
    ek: z.enum(['auto', 'rsa-2048', 'ecc-p256', 'ecc-p384']).optional(),
    event_log: z.union([z.string().min(1).max(4096), z.literal(false)]).optional(),
  });
}
export type TpmAgentConfig = z.infer<ReturnType<typeof tpmAgentConfigSchema>>;

export function tpmTcti(cfg: TpmAgentConfig | undefined): string {
  return cfg?.tcti ?? DEFAULT_TCTI;
}
