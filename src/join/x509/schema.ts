/**
 * The x509 join's `join.x509:` block of agent.yaml. Only zod and plain data here: the
 * agent's config loader builds the configured method's schema (join/agent-methods.ts), while the code that
 * builds the method (config.ts, with its heavier imports) is loaded by the entry's `load()` only
 * when agent.yaml names this method (issue #19). config.ts documents the settings.
 */
import { z } from 'zod';

/**
 * A fresh schema per call: the agent parses its config once at start, and a schema kept at module
 * level would stay resident in the daemon for nothing (zod schemas are large; issue #19).
 */
export function x509AgentConfigSchema() {
  const path = z.string().min(1).max(4096);
  return z
    .strictObject({
      cert: path,
      chain: path.optional(),
      key: path.optional(),
      key_uri: z.string().min(8).max(4096).optional(),
      rsa_scheme: z.enum(['pss', 'pkcs1']).optional(),
      pkcs11: z
        .strictObject({
          module: path.optional(),
          pin_file: path.optional(),
          pin_env: z
            .string()
            .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'pin_env is the NAME of an environment variable')
            .optional(),
        })
        .optional(),
      tpm: z
        .strictObject({
          handle: z.union([z.string().min(1).max(16), z.number().int()]),
          tcti: z.string().min(1).max(1024).optional(),
          ek: z.enum(['auto', 'rsa-2048', 'ecc-p256', 'ecc-p384']).optional(),
          attest: z.boolean().optional(),
        })
        .optional(),
    })
    .refine((c) => [c.key, c.key_uri, c.tpm].filter((k) => k !== undefined).length === 1, {
      message: 'give exactly one of key (a PEM file), key_uri (pkcs11:… or tpm:…) or tpm: { handle, tcti }',
    });
}
export type X509AgentConfig = z.infer<ReturnType<typeof x509AgentConfigSchema>>;
