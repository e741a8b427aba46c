/**
 * The x509 join's `join.x509:` block of agent.yaml. Only zod and plain data here: the
 * agent's config loader builds the configured method's schema (join/agent-methods.ts), while the code that
 * builds the method (config.ts, with its heavier imports) is loaded by the entry's `load()` only
 * when agent.yaml names this method (issue #19). config.ts documents the settings.
 */
import * as z from '../../util/zod-mini.js';

/**
 * A fresh schema per call: the agent parses its config once at start, and a schema kept at module
 * level would stay resident in the daemon for nothing (zod schemas are large; issue #19).
 */
export function x509AgentConfigSchema() {
  const path = z.string().check(z.minLength(1), z.maxLength(4096));
  return z
    .strictObject({
      cert: path,
      chain: z.optional(path),
      key: z.optional(path),
      key_uri: z.optional(z.string().check(z.minLength(8), z.maxLength(4096))),
      rsa_scheme: z.optional(z.enum(['pss', 'pkcs1'])),
      pkcs11: z.optional(
        z.strictObject({
          module: z.optional(path),
          pin_file: z.optional(path),
          pin_env: z.optional(
            z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'pin_env is the NAME of an environment variable')),
          ),
        }),
      ),
      tpm: z.optional(
        z.strictObject({
          handle: z.union([z.string().check(z.minLength(1), z.maxLength(16)), z.int()]),
          tcti: z.optional(z.string().check(z.minLength(1), z.maxLength(1024))),
          ek: z.optional(z.enum(['auto', 'rsa-2048', 'ecc-p256', 'ecc-p384'])),
          attest: z.optional(z.boolean()),
        }),
      ),
    })
    .check(
      z.refine((c) => [c.key, c.key_uri, c.tpm].filter((k) => k !== undefined).length === 1, {
        message: 'give exactly one of key (a PEM file), key_uri (pkcs11:… or tpm:…) or tpm: { handle, tcti }',
      }),
    );
}
export type X509AgentConfig = z.infer<ReturnType<typeof x509AgentConfigSchema>>;
