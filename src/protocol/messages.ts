/**
 * Sigil protocol v1 messages (ARCHITECTURE "Protocol sketch"). Every request and every
 * successful response is the JSON payload of a JWS envelope (./jws.ts). Errors are
 * {code, message, retryable}: over HTTPS a plain body (TLS to the pinned CA protects it); over
 * MQTT, whose broker is untrusted for integrity, the same object travels *signed* inside an
 * error response envelope ({@link ErrorResponsePayload}).
 *
 * Field names are snake_case on the wire; times are unix milliseconds.
 */
import { z } from 'zod';
import { SigilError, type ErrorCode } from '../errors.js';
import { knownKeysAt } from '../util/schema-keys.js';
import { closest } from '../util/suggest.js';
import { capMessage } from '../util/untrusted-text.js';

export const PROTOCOL_VERSION = 1;

/**
 * The operations of protocol v1, named once. The issuer serves each of them over every
 * transport (server/ops/table.ts); the agent sends each over whichever transport it has
 * (transport/types.ts IssuerTransport.post).
 */
export const OPS = ['join', 'renew', 'credential', 'bundle', 'workload', 'attest'] as const;
export type Op = (typeof OPS)[number];
/** The operations whose request is a signed envelope (`bundle` is asked for without one). */
export type RequestOp = Exclude<Op, 'bundle'>;
/** The operations answered with an identity ({@link IdentityResult}). */
export type IdentityOp = Extract<Op, 'join' | 'renew'>;

export const isOp = (s: unknown): s is Op => (OPS as readonly unknown[]).includes(s);

/** JWS `typ` values, so a response can never be replayed as a request or vice versa. */
export const TYP_REQUEST = 'sigil-request+jws';
export const TYP_RESPONSE = 'sigil-response+jws';

/** Request ids are chosen by the agent and make requests idempotent. */
export const requestIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{16,64}$/, 'request_id must be 16-64 characters of [A-Za-z0-9_-]');

const pemSchema = z
  .string()
  .min(1)
  .max(16 * 1024);

/**
 * The agent's package version (src/version.ts), recorded in the instance's facts and shown on the
 * fleet view (issue #18). A claim of the sender, never used for a decision: bounded and printable
 * ASCII only, so it cannot carry markup-sized payloads or control characters into facts and pages.
 * Optional: agents from before it are accepted as ever.
 */
export const AGENT_VERSION_MAX = 64;
export const agentVersionSchema = z
  .string()
  .regex(/^[\x20-\x7e]+$/, 'agent_version must be printable ASCII')
  .min(1)
  .max(AGENT_VERSION_MAX);

export const joinRequestSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('join'),
  request_id: requestIdSchema,
  timestamp: z.number().int().positive(),
  method: z.string().regex(/^[a-z0-9_]{1,32}$/),
  /** PKCS#10 of the new identity key, PEM. The envelope is signed by that same key. */
  csr: pemSchema,
  ttl_s: z.number().int().positive().optional(),
  /** Method-specific evidence; each method validates its own shape (join/<method>/wire.ts). */
  evidence: z.record(z.string(), z.unknown()),
  /** Where the agent keeps the key; unproven hardware claims are recorded as exportable. */
  key_storage: z.enum(['software', 'tpm', 'pkcs11']).optional(),
  /** PKCS#10 of a software key for an MQTT transport certificate (server/ops/transport-cert.ts), PEM. */
  transport_csr: pemSchema.optional(),
  agent_version: agentVersionSchema.optional(),
});
export type JoinRequest = z.infer<typeof joinRequestSchema>;

/**
 * Who a request signed by an identity (renew, credential) claims to come from: the instance and
 * the serial of the certificate in its x5c. The issuer refuses a payload whose signer differs
 * (`signer_mismatch`, server/ops/authenticate.ts), so a payload seen on the way (an MQTT broker,
 * a log) cannot be re-signed by another identity to collect its answer (issue #11).
 */
export const namedSignerFields = {
  instance_id: z.string().min(1).max(256),
  serial: z.string().regex(/^[0-9a-f]{1,64}$/, 'serial must be lower-case hex'),
};

export const renewRequestSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('renew'),
  request_id: requestIdSchema,
  timestamp: z.number().int().positive(),
  ...namedSignerFields,
  /** PKCS#10 of a NEW key; the envelope is signed by the CURRENT key (x5c = current chain). */
  csr: pemSchema,
  ttl_s: z.number().int().positive().optional(),
  key_storage: z.enum(['software', 'tpm', 'pkcs11']).optional(),
  /**
   * Proof that the new key is hardware-resident (tpm: TPM2_Certify of it by the instance's AK,
   * join/tpm/key-attestation.ts, which validates the inner shape). Without it the new
   * certificate is recorded as a software, exportable key.
   */
  key_attestation: z.record(z.string(), z.unknown()).optional(),
  /**
   * Fresh boot-state evidence (issue #16), for instances whose join rule names firmware profiles:
   * tpm: a quote bound to this request (attest/binding.ts renewalBinding), the PCR values, the
   * event log after a reboot (join/tpm/reattest-wire.ts validates the inner shape).
   */
  attestation: z.record(z.string(), z.unknown()).optional(),
  /** As in a join: a new transport key's CSR, answered with `transport_chain`. */
  transport_csr: pemSchema.optional(),
  agent_version: agentVersionSchema.optional(),
});
export type RenewRequest = z.infer<typeof renewRequestSchema>;

/** What a join or renew returns. */
export interface IdentityResult {
  instance_id: string;
  spiffe_id: string;
  bot: string;
  generation: number;
  serial: string;
  /** PEM certificates, leaf first (leaf + issuing intermediate). */
  chain: string[];
  /** PEM trust anchors. */
  bundle: string[];
  not_before: number;
  not_after: number;
  ttl_s: number;
  requested_ttl_s: number;
  /** True when the requested TTL was above the cap and was lowered (never an error). */
  ttl_clamped: boolean;
  /** Issuer's hint for when to renew (the agent adds jitter). */
  renew_after: number;
  key_storage: string;
  exportable: boolean;
  /**
   * Only when the request carried `transport_csr`: the MQTT transport certificate and its
   * issuing intermediate (PEM, leaf first) — a TLS client certificate with the SVID's subject
   * and validity but no SPIFFE ID (server/ops/transport-cert.ts).
   */
  transport_chain?: string[];
}

export interface BundleResult {
  trust_domain: string;
  roots: string[];
  intermediates: string[];
  /**
   * The JWT-SVID signing keys as a JWK Set (each with `kid` and `alg`; server/ops/bundle.ts), for
   * the Workload API's JWT bundle (issue #17). Absent from issuers older than that.
   */
  jwt_jwks?: { keys: Array<Record<string, unknown>> };
}

export interface ResponsePayload<T> {
  v: typeof PROTOCOL_VERSION;
  op: Op;
  request_id: string | null;
  issued_at: number;
  result: T;
}

const identityResultSchema = z.object({
  instance_id: z.string(),
  spiffe_id: z.string().startsWith('spiffe://'),
  bot: z.string(),
  generation: z.number().int().positive(),
  serial: z.string(),
  chain: z.array(z.string()).min(1),
  bundle: z.array(z.string()).min(1),
  not_before: z.number(),
  not_after: z.number(),
  ttl_s: z.number(),
  requested_ttl_s: z.number(),
  ttl_clamped: z.boolean(),
  renew_after: z.number(),
  key_storage: z.string(),
  exportable: z.boolean(),
  transport_chain: z.array(z.string()).min(1).optional(),
});
const bundleResultSchema = z.object({
  trust_domain: z.string(),
  roots: z.array(z.string()).min(1),
  intermediates: z.array(z.string()),
  jwt_jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())) }).optional(),
});

/**
 * A signed refusal (MQTT). `request_hash` binds it to the exact signed request (hex SHA-256 of
 * the request's JWS signing input, ./request-hash.ts — header with the signer's x5c, and
 * payload; the issuer's idempotency hash), not only to the request id: anyone
 * may send the issuer a *different* request carrying a victim's request id and collect a signed
 * refusal for it; replayed to the victim by a broker, a refusal bound only to the id would make
 * the agent drop a request the issuer may already have answered — and a fresh request with the
 * old credential would then lock the instance (generation_mismatch). Hashing the header too
 * means a refusal earned by *another signer* re-signing the victim's payload (say, with a
 * locked instance's certificate) never matches the victim's request. Both are null when the
 * issuer could not read the request (the agent then treats the answer as unverifiable).
 */
export interface ErrorResponsePayload {
  v: typeof PROTOCOL_VERSION;
  op: string;
  request_id: string | null;
  request_hash: string | null;
  issued_at: number;
  error: { code: string; message: string; retryable: boolean; retry_after_ms?: number };
}

export const errorResponseSchema = z.object({
  v: z.literal(PROTOCOL_VERSION),
  op: z.string().max(64),
  request_id: z.string().max(128).nullable(),
  request_hash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .nullable(),
  issued_at: z.number(),
  error: z.object({
    code: z.string().max(64),
    message: z.string().max(2000),
    retryable: z.boolean(),
    retry_after_ms: z.number().int().nonnegative().optional(),
  }),
});

/**
 * A join step that is not finished: the method wants an answer first (join/challenge.ts). The
 * issuer signs it like any response; the agent answers with a new join envelope carrying the
 * *same* request id and key, whose evidence answers the challenge. Nothing is stored for a
 * challenge except the challenge itself, so resending the first request just yields another.
 */
export interface JoinChallenge {
  /** Opaque id the answer refers to (base64url, 128 bits). */
  challenge_id: string;
  /** The join method that asked. */
  method: string;
  /** 32 random bytes chosen by the issuer, base64url; methods bind their answer to it. */
  nonce: string;
  /** Unix ms after which the issuer refuses the answer (`challenge_expired`). */
  expires_at: number;
  /** Method-specific data (public). */
  data: Record<string, unknown>;
}

export interface ChallengePayload {
  v: typeof PROTOCOL_VERSION;
  op: 'join';
  request_id: string;
  issued_at: number;
  challenge: JoinChallenge;
}

export const joinChallengeSchema = z.object({
  challenge_id: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  method: z.string().regex(/^[a-z0-9_]{1,32}$/),
  nonce: z.string().regex(/^[A-Za-z0-9_-]{43,128}$/),
  expires_at: z.number(),
  data: z.record(z.string(), z.unknown()),
});

export const responseSchemas = {
  join: z.object({
    v: z.literal(PROTOCOL_VERSION),
    op: z.literal('join'),
    request_id: z.string(),
    issued_at: z.number(),
    result: identityResultSchema,
  }),
  renew: z.object({
    v: z.literal(PROTOCOL_VERSION),
    op: z.literal('renew'),
    request_id: z.string(),
    issued_at: z.number(),
    result: identityResultSchema,
  }),
  bundle: z.object({
    v: z.literal(PROTOCOL_VERSION),
    op: z.literal('bundle'),
    request_id: z.null(),
    issued_at: z.number(),
    result: bundleResultSchema,
  }),
  /** A join step answered with a challenge instead of a result (see {@link JoinChallenge}). */
  join_challenge: z.object({
    v: z.literal(PROTOCOL_VERSION),
    op: z.literal('join'),
    request_id: z.string(),
    issued_at: z.number(),
    challenge: joinChallengeSchema,
  }),
};

/**
 * Validate `data` against `schema`, turning the first issue into one readable SigilError
 * (`field.path: problem`). Used at every boundary: HTTP bodies, YAML, configs.
 */
export function parseWith<S extends z.ZodType>(schema: S, data: unknown, code: ErrorCode, what: string): z.infer<S> {
  const r = schema.safeParse(data);
  if (r.success) return r.data;
  // A typo'd key usually also leaves a required key missing; the typo is the one worth naming.
  const typos = r.error.issues
    .slice(0, 20)
    .flatMap((i) =>
      i.code === 'unrecognized_keys' ? [{ issue: i, hint: didYouMean(schema, i.path, i.keys, data) }] : [],
    )
    .find((t) => t.hint);
  const issue = typos?.issue ?? r.error.issues[0]!;
  const where = issue.path.length ? issue.path.join('.') : '(top level)';
  const hint =
    typos?.hint ?? (issue.code === 'unrecognized_keys' ? didYouMean(schema, issue.path, issue.keys, data) : '');
  // zod says "expected string, received undefined" for a key that is simply not there.
  if (issue.code === 'invalid_type' && issue.path.length > 0 && valueAt(data, issue.path) === undefined)
    throw new SigilError(code, capMessage(`${what}: ${where}: is required`));
  // The path and zod's message quote what the sender chose (unknown keys, long values): bounded,
  // so a 64 KiB body of made-up keys does not come back — or reach a log — as a 40 KB message.
  throw new SigilError(code, capMessage(`${what}: ${where}: ${issue.message}${hint}`));
}

/** ` (did you mean "path"?)` for unknown keys within 2 edits of a key the schema knows there; else ''. */
function didYouMean(
  schema: z.ZodType,
  path: ReadonlyArray<PropertyKey>,
  keys: readonly string[],
  data: unknown,
): string {
  const present = valueAt(data, path);
  // Keys the input already has are not what a typo meant; a few short keys only (bounded work on hostile input).
  const known = [...knownKeysAt(schema, path)].filter(
    (k) => !(present && typeof present === 'object' && Object.hasOwn(present, k)),
  );
  const pairs = keys.slice(0, 3).flatMap((k) => {
    const m = k.length <= 64 ? closest(k, known) : undefined;
    return m ? [[k, m] as const] : [];
  });
  if (pairs.length === 0) return '';
  if (keys.length === 1) return ` (did you mean "${pairs[0]![1]}"?)`;
  return ` (did you mean ${pairs.map(([k, m]) => `"${m}" for "${k}"`).join(', ')}?)`;
}

function valueAt(data: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v = data;
  for (const p of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

/** Peek at `v` first so a future agent gets `unsupported_version`, not a confusing schema error. */
export function checkVersion(payload: unknown): void {
  const v = (payload as { v?: unknown } | null)?.v;
  if (v !== PROTOCOL_VERSION) {
    throw new SigilError(
      'unsupported_version',
      `protocol version ${JSON.stringify(v ?? null)} is not supported (this issuer speaks v${PROTOCOL_VERSION})`,
    );
  }
}
