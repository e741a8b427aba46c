/**
 * The oidc join's `join.oidc:` block of agent.yaml. Only zod and plain data here: the
 * agent's config loader builds the configured method's schema (join/agent-methods.ts), while the code that
 * builds the method (config.ts, with its heavier imports) is loaded by the entry's `load()` only
 * when agent.yaml names this method (issue #19). config.ts documents the settings.
 */
import * as z from '../../util/zod-mini.js';
import { OIDC_PROVIDERS } from './presets.js';

/**
 * A fresh schema per call: the agent parses its config once at start, and a schema kept at module
 * level would stay resident in the daemon for nothing (zod schemas are large; issue #19).
 */
export function oidcAgentConfigSchema() {
  return z
    .strictObject({
      provider: z.enum(OIDC_PROVIDERS),
      audience: z.optional(z.string().check(z.minLength(1), z.maxLength(512))),
      token_env: z.optional(
        z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'token_env is the NAME of an environment variable')),
      ),
      token_file: z.optional(z.string().check(z.minLength(1), z.maxLength(4096))),
    })
    .check(
      z.refine((c) => c.token_env === undefined || c.token_file === undefined, {
        message: 'give token_env or token_file, not both',
      }),
    );
}
export type OidcAgentConfig = z.infer<ReturnType<typeof oidcAgentConfigSchema>>;
