/**
 * The agent config's credential outputs (`outputs:` entries other than `identity`), validated
 * apart from being applied. Every entry: its own `ttl` (the role's max_ttl and 24 h still
 * bound it, at the issuer), optional numeric `uid`/`gid` for the files, and an optional
 * `reload` hook run after each rotation.
 *
 *   - { type: ssh_user, path: /run/sigil/ssh, logins: [ops] }
 *   - { type: ssh_host, path: /run/sigil/host, principals: [gw1.example.org] }
 *   - { type: database, path: /run/sigil/db, db_user: app }
 *   - { type: kubernetes, path: /run/sigil/kube, api_server: "https://k8s.example:6443" }
 *   - { type: jwt, path: /run/sigil/jwt, audiences: [vault] }
 */
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import { parseDuration } from '../../util/duration.js';
import * as z from '../../util/zod-mini.js';

/** A duration as written in config (`90s`, `15m`, or seconds), parsed; a bad one is a zod issue. */
export function durationSchema() {
  return z.pipe(
    z.union([z.string(), z.number()]),
    z.transform((v: string | number, ctx) => {
      try {
        return parseDuration(v, 'config_invalid');
      } catch (e) {
        ctx.issues.push({ code: 'custom', message: (e as Error).message, input: v });
        return z.NEVER;
      }
    }),
  );
}

/** A command (run without a shell when given as a list) or a signal to the pid in a pid file. */
export function reloadSchema() {
  const duration = durationSchema();
  const nonEmpty = z.string().check(z.minLength(1));
  return z.union([
    z.strictObject({
      command: z.union([nonEmpty, z.array(nonEmpty).check(z.minLength(1))]),
      timeout: z.optional(duration),
    }),
    z.strictObject({
      signal: z._default(z.enum(['HUP', 'USR1', 'USR2', 'TERM', 'INT']), 'HUP'),
      pid_file: nonEmpty,
    }),
  ]);
}

export type ReloadConfig = z.infer<ReturnType<typeof reloadSchema>>;

/**
 * One schema per output type; agent/config.ts puts them beside `identity` in one discriminated
 * union. Built per call, like every config schema the agent has: the config is parsed once at
 * start and a resident schema would cost the daemon memory for nothing (issue #19).
 */
export function credentialOutputVariants() {
  const duration = durationSchema();
  const name = z
    .string()
    .check(z.regex(/^[^\s,\0-\x1f\x7f]{1,253}$/, 'must be 1-253 printable characters without spaces or commas'));
  const rdn = z.string().check(z.regex(/^[^\0-\x1f\x7f]{1,64}$/, 'must be 1-64 printable characters'));
  const nonEmpty = z.string().check(z.minLength(1));
  const names = (max: number) => z.optional(z.array(name).check(z.minLength(1), z.maxLength(max)));
  const common = {
    path: nonEmpty,
    ttl: z.optional(duration),
    uid: z.optional(z.int().check(z.nonnegative())),
    gid: z.optional(z.int().check(z.nonnegative())),
    reload: z.optional(reloadSchema()),
  };
  return [
    z.strictObject({
      type: z.literal('ssh_user'),
      ...common,
      /** Certificate principals; default every login the role grants. */
      logins: names(64),
      /** Host patterns for ssh_config `Host` and the known_hosts @cert-authority line. */
      hosts: z.optional(z.array(z.string().check(z.regex(/^[^\s,]{1,253}$/))).check(z.minLength(1), z.maxLength(32))),
    }),
    z.strictObject({
      type: z.literal('ssh_host'),
      ...common,
      principals: names(64),
      /** Certify this existing key (e.g. /etc/ssh/ssh_host_ed25519_key; its .pub is read) instead of one the agent generates. */
      host_key: z.optional(nonEmpty),
    }),
    z.strictObject({
      type: z.literal('database'),
      ...common,
      db_user: z.optional(rdn),
      /** `tpm`: the key is made in the TPM and tls.key is a TSS2 PRIVATE KEY (OpenSSL tpm2 provider). */
      key: z.optional(z.enum(['software', 'tpm'])),
      /** TCTI of the TPM for `key: tpm`, e.g. device:/dev/tpmrm0 (default: $TPM2TOOLS_TCTI). */
      tcti: z.optional(nonEmpty),
    }),
    z.strictObject({
      type: z.literal('kubernetes'),
      ...common,
      api_server: z.url().check(z.refine((u) => u.startsWith('https://'), 'api_server must be an https:// URL')),
      /** The API server's CA (PEM file); default: the Sigil root. */
      ca_file: z.optional(nonEmpty),
      user: z.optional(rdn),
      groups: z.optional(z.array(rdn).check(z.maxLength(64))),
      cluster_name: z.optional(z.string().check(z.regex(/^[A-Za-z0-9._-]{1,63}$/))),
    }),
    z.strictObject({
      type: z.literal('jwt'),
      ...common,
      audiences: z.array(name).check(z.minLength(1), z.maxLength(16)),
    }),
  ] as const;
}
export function credentialOutputSchema() {
  return z.discriminatedUnion('type', credentialOutputVariants());
}
export type CredentialOutputConfig = z.infer<ReturnType<typeof credentialOutputSchema>>;
export type CredentialOutputType = CredentialOutputConfig['type'];
export const CREDENTIAL_OUTPUT_TYPES: readonly CredentialOutputType[] = [
  'ssh_user',
  'ssh_host',
  'database',
  'kubernetes',
  'jwt',
];

/**
 * Validate one output entry; relative paths resolve against `abs` (the config file's directory).
 * Used by agent/config.ts for every entry whose type is not `identity`.
 */
export function parseCredentialOutput(raw: unknown, where: string, abs: (p: string) => string): CredentialOutputConfig {
  return resolveCredentialOutput(parseWith(credentialOutputSchema(), raw, 'config_invalid', where), where, abs);
}

/** Resolve the paths of an already validated entry and check what the schema cannot. */
export function resolveCredentialOutput(
  o: CredentialOutputConfig,
  where: string,
  abs: (p: string) => string,
): CredentialOutputConfig {
  const out: CredentialOutputConfig = { ...o, path: abs(o.path) };
  if (out.type === 'ssh_host' && out.host_key) out.host_key = abs(out.host_key);
  if (out.type === 'kubernetes' && out.ca_file) out.ca_file = abs(out.ca_file);
  if (out.reload && 'pid_file' in out.reload) out.reload = { ...out.reload, pid_file: abs(out.reload.pid_file) };
  if (out.type === 'database' && out.key !== 'tpm' && out.tcti)
    throw new SigilError('config_invalid', `${where}: tcti applies only with key: tpm`);
  return out;
}
