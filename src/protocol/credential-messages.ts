/**
 * The `credential` operation (protocol v1): a joined agent asks for a credential *other* than
 * its identity — an SSH user or host certificate, a database or Kubernetes client certificate,
 * or a JWT-SVID. The envelope is signed by the agent's CURRENT identity key with its chain in
 * x5c, exactly like `renew`; the bot's roles decide what is granted (server/policy/credentials.ts).
 *
 * Which fields apply to which kind:
 *   ssh_user    public_key (OpenSSH line), logins?            → certificate (principals = logins)
 *   ssh_host    public_key (OpenSSH line), principals?        → certificate (host names / IPs)
 *   database    csr (PKCS#10 PEM), db_user?                   → chain with CN = db_user
 *   kubernetes  csr (PKCS#10 PEM), kubernetes_user?, kubernetes_groups?
 *                                                             → chain with CN = user, O = groups
 * X.509 kinds take a CSR, not a bare public key: its self-signature proves possession of the
 * key, so nobody gets a certificate for a key they do not hold (the review of issue #11 had one
 * issued for the intermediate CA's own public key). The CSR's subject and extensions are ignored.
 *   jwt         audiences                                     → token (ES256, sub = SPIFFE ID)
 * An omitted list means "everything the deciding role grants"; an omitted single user means
 * "the one the role grants" (refused when it grants several).
 *
 * `answer_key` (any kind; ./answer-key.ts): an ephemeral P-256 public key the secret part of the
 * answer is encrypted to — the JWT comes back as `token_jwe` instead of `token`. Required for
 * {@link SECRET_KINDS} over a carrier that is not confidential (MQTT: `answer_key_required`).
 */
import { z } from 'zod';
import { answerKeySchema } from './answer-key.js';
import { lifetimeFields, PROTOCOL_VERSION } from './messages.js';
import { namedSignerFields, requestIdSchema } from './requests.js';

export const CREDENTIAL_KINDS = ['ssh_user', 'ssh_host', 'database', 'kubernetes', 'jwt'] as const;
export type CredentialKind = (typeof CREDENTIAL_KINDS)[number];

/** Kinds whose answer carries a bearer secret (the JWT itself), sealed to `answer_key`. */
export const SECRET_KINDS: ReadonlySet<CredentialKind> = new Set(['jwt']);

/** Principals, logins, audiences: printable, no whitespace, no comma (sshd splits on commas). */
const nameSchema = z
  .string()
  .regex(/^[^\s,\0-\x1f\x7f]{1,253}$/, 'must be 1-253 printable characters without spaces or commas');
/** Values that become an X.509 CN or O (RFC 5280 ub-common-name / ub-organization-name = 64). */
const rdnSchema = z.string().regex(/^[^\0-\x1f\x7f]{1,64}$/, 'must be 1-64 printable characters');

export const credentialRequestSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('credential'),
  request_id: requestIdSchema,
  timestamp: z.number().int().positive(),
  ...namedSignerFields,
  kind: z.enum(CREDENTIAL_KINDS),
  ttl_s: z.number().int().positive().optional(),
  /** OpenSSH public key line (ssh kinds). */
  public_key: z
    .string()
    .min(1)
    .max(16 * 1024)
    .optional(),
  /** PKCS#10 PEM of the credential's key (database, kubernetes): proof of possession. */
  csr: z
    .string()
    .min(1)
    .max(16 * 1024)
    .optional(),
  logins: z.array(nameSchema).min(1).max(64).optional(),
  principals: z.array(nameSchema).min(1).max(64).optional(),
  db_user: rdnSchema.optional(),
  kubernetes_user: rdnSchema.optional(),
  kubernetes_groups: z.array(rdnSchema).max(64).optional(),
  audiences: z.array(nameSchema).min(1).max(16).optional(),
  /** Ephemeral public key the answer's secret is encrypted to (see the module comment). */
  answer_key: answerKeySchema.optional(),
});
export type CredentialRequest = z.infer<typeof credentialRequestSchema>;

/** Fields of a request that only some kinds take. */
export const KIND_FIELDS: Record<CredentialKind, ReadonlyArray<keyof CredentialRequest>> = {
  ssh_user: ['public_key', 'logins'],
  ssh_host: ['public_key', 'principals'],
  database: ['csr', 'db_user'],
  kubernetes: ['csr', 'kubernetes_user', 'kubernetes_groups'],
  jwt: ['audiences'],
};
export const KIND_SPECIFIC_FIELDS = [
  'public_key',
  'csr',
  'logins',
  'principals',
  'db_user',
  'kubernetes_user',
  'kubernetes_groups',
  'audiences',
] as const;

export interface CredentialResult {
  kind: CredentialKind;
  /** Hex: the SSH certificate serial, the X.509 serial, or the JWT `jti`. */
  serial: string;
  /** The role whose rules granted this credential. */
  role: string;
  spiffe_id: string;
  not_before: number;
  not_after: number;
  ttl_s: number;
  requested_ttl_s: number;
  ttl_clamped: boolean;
  /** When to ask again (half the lifetime; the agent adds jitter). */
  renew_after: number;
  /** ssh kinds: the certificate line (`…-cert-v01@openssh.com AAAA… keyid`). */
  certificate?: string;
  /** ssh kinds: the principals written into the certificate. */
  principals?: string[];
  /** ssh kinds: the user CA (sshd TrustedUserCAKeys) and host CA (known_hosts @cert-authority) lines. */
  user_ca_public_key?: string;
  host_ca_public_key?: string;
  /**
   * ssh kinds: the other CA keys to trust while a rotation is in progress (`sigil server
   * rotate-key`): a staged next CA and retired CAs whose certificates may still live, as
   * authorized_keys lines; absent when there are none. Agents before them ignore the fields.
   */
  other_user_ca_public_keys?: string[];
  other_host_ca_public_keys?: string[];
  /** database, kubernetes: PEM chain (leaf, intermediate) and trust anchors. */
  chain?: string[];
  bundle?: string[];
  common_name?: string;
  organizations?: string[];
  /** jwt: the compact JWT-SVID, its audiences and issuer URL. */
  token?: string;
  /** jwt with answer_key: the JWT-SVID as a compact JWE to that key (./answer-key.ts), instead of `token`. */
  token_jwe?: string;
  audiences?: string[];
  issuer_url?: string;
  /**
   * ssh and jwt kinds: the answering issuer's key-rotation sequence (as in identity answers), when
   * it ever rotated a key. An agent that already knows a later one does not use the answer's trust
   * lines or token (agent/credentials.ts `trust_lagging`): a peer issuer that has not read a
   * compromise rotation yet would write the withdrawn CA back.
   */
  trust_sequence?: number;
}

export const credentialResultSchema = z.object({
  kind: z.enum(CREDENTIAL_KINDS),
  serial: z.string().regex(/^[0-9a-f]{1,64}$/),
  role: z.string(),
  spiffe_id: z.string().startsWith('spiffe://'),
  ...lifetimeFields(),
  certificate: z.string().optional(),
  principals: z.array(z.string()).optional(),
  user_ca_public_key: z.string().optional(),
  host_ca_public_key: z.string().optional(),
  other_user_ca_public_keys: z.array(z.string()).max(16).optional(),
  other_host_ca_public_keys: z.array(z.string()).max(16).optional(),
  chain: z.array(z.string()).min(1).optional(),
  bundle: z.array(z.string()).min(1).optional(),
  common_name: z.string().optional(),
  organizations: z.array(z.string()).optional(),
  token: z.string().optional(),
  token_jwe: z.string().optional(),
  audiences: z.array(z.string()).optional(),
  issuer_url: z.string().optional(),
  trust_sequence: z.number().int().nonnegative().optional(),
});

export const credentialResponseSchema = z.object({
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('credential'),
  request_id: z.string(),
  issued_at: z.number(),
  result: credentialResultSchema,
});
