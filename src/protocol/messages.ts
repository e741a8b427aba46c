/**
 * Sigil protocol v1 messages (ARCHITECTURE "Protocol sketch"). Every request and every
 * successful response is the JSON payload of a JWS envelope (./jws.ts). Errors are
 * {code, message, retryable}: over HTTPS a plain body (TLS to the pinned CA protects it); over
 * MQTT, whose broker is untrusted for integrity, the same object travels *signed* inside an
 * error response envelope ({@link ErrorResponsePayload}).
 *
 * Field names are snake_case on the wire; times are unix milliseconds.
 */
import type * as core from 'zod/v4/core';
import { SigilError, type ErrorCode } from '../errors.js';
import { knownKeysAt } from '../util/schema-keys.js';
import { closest } from '../util/suggest.js';
import { capMessage } from '../util/untrusted-text.js';
import * as z from '../util/zod-mini.js';

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

// The request schemas (join, renew, the signer fields and the request id other messages reuse) are
// in ./requests.ts: the issuer validates requests, an agent only builds them, and schemas at
// module level stay resident in the agent daemon for nothing (issue #19).

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
  /**
   * The issuer's key-rotation sequence (seconds; server/rotating-keys.ts), when it ever rotated a
   * key: it moves whenever the SSH CA or JWT keys it publishes change (`sigil server rotate-key`, or
   * a retired key dropping out). An agent re-issues its ssh outputs, whose trust files list the
   * CAs, when it moves (agent/credentials.ts).
   */
  trust_sequence?: number;
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
  /**
   * The same key-rotation sequence as {@link IdentityResult.trust_sequence}, when the issuer ever
   * rotated a key: the agent daemon asks for this answer every `trust_check_every` and re-issues
   * its ssh and jwt outputs when it rose (agent/trust-check.ts), without waiting for a renewal.
   */
  trust_sequence?: number;
  /**
   * The root CA's CRL (base64 DER), when the root revoked an intermediate (`rotate-intermediate
   * --revoke-old`, `retire-issuer --revoke`): the agent keeps the newest one the pinned root signed
   * and refuses answers signed under an intermediate it lists (agent/root-crl-state.ts).
   */
  root_crl?: string;
}

export interface ResponsePayload<T> {
  v: typeof PROTOCOL_VERSION;
  op: Op;
  request_id: string | null;
  /**
   * The answered request's hash (./request-hash.ts), as in a signed refusal: binds the answer to
   * the exact signed request, not only to its id. Absent from answers without a signed request
   * (bundle) and from those of issuers before it.
   */
  request_hash?: string;
  /** The requester's nonce, echoed (a `bundle` asked for over MQTT: it carries no request). */
  nonce?: string;
  issued_at: number;
  result: T;
}

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

/**
 * The lifetime every issued credential's answer reports (identity, credentials, workload SVIDs):
 * validity in unix ms, the granted and requested TTL, whether it was clamped, and when to renew.
 * A function, like the answers built from it: nothing resident in an agent daemon (issue #19).
 */
export function lifetimeFields() {
  return {
    not_before: z.number(),
    not_after: z.number(),
    ttl_s: z.number(),
    requested_ttl_s: z.number(),
    ttl_clamped: z.boolean(),
    renew_after: z.number(),
  };
}

/**
 * The signed answers of join, renew and bundle (and a join's challenge), as the agent checks them
 * (protocol/response-verifier.ts). Built per call, not kept at module level: the agent daemon
 * verifies a few answers a day, and ~90 resident zod schemas cost it memory for as long as it runs
 * (issue #19, docs/performance.md "Agent footprint"); building them takes well under a
 * millisecond.
 */
export function identityResponseSchemas() {
  const identityResult = z.object({
    instance_id: z.string(),
    spiffe_id: z.string().check(z.startsWith('spiffe://')),
    bot: z.string(),
    generation: z.int().check(z.positive()),
    serial: z.string(),
    chain: z.array(z.string()).check(z.minLength(1)),
    bundle: z.array(z.string()).check(z.minLength(1)),
    ...lifetimeFields(),
    key_storage: z.string(),
    exportable: z.boolean(),
    transport_chain: z.optional(z.array(z.string()).check(z.minLength(1))),
    trust_sequence: z.optional(z.int().check(z.nonnegative())),
  });
  const bundleResult = z.object({
    trust_domain: z.string(),
    roots: z.array(z.string()).check(z.minLength(1)),
    intermediates: z.array(z.string()),
    jwt_jwks: z.optional(z.object({ keys: z.array(z.record(z.string(), z.unknown())) })),
    trust_sequence: z.optional(z.int().check(z.nonnegative())),
    root_crl: z.optional(z.string().check(z.maxLength(1_000_000))),
  });
  const joinChallenge = z.object({
    challenge_id: z.string().check(z.regex(/^[A-Za-z0-9_-]{16,64}$/)),
    method: z.string().check(z.regex(/^[a-z0-9_]{1,32}$/)),
    nonce: z.string().check(z.regex(/^[A-Za-z0-9_-]{43,128}$/)),
    expires_at: z.number(),
    data: z.record(z.string(), z.unknown()),
  });
  return {
    join: z.object({
      v: z.literal(PROTOCOL_VERSION),
      op: z.literal('join'),
      request_id: z.string(),
      issued_at: z.number(),
      result: identityResult,
    }),
    renew: z.object({
      v: z.literal(PROTOCOL_VERSION),
      op: z.literal('renew'),
      request_id: z.string(),
      issued_at: z.number(),
      result: identityResult,
    }),
    bundle: z.object({
      v: z.literal(PROTOCOL_VERSION),
      op: z.literal('bundle'),
      request_id: z.null(),
      issued_at: z.number(),
      result: bundleResult,
    }),
    /** A join step answered with a challenge instead of a result (see {@link JoinChallenge}). */
    join_challenge: z.object({
      v: z.literal(PROTOCOL_VERSION),
      op: z.literal('join'),
      request_id: z.string(),
      issued_at: z.number(),
      challenge: joinChallenge,
    }),
  };
}

/** A signed refusal's payload ({@link ErrorResponsePayload}); built per call like {@link identityResponseSchemas}. */
export function errorResponseSchema() {
  return z.object({
    v: z.literal(PROTOCOL_VERSION),
    op: z.string().check(z.maxLength(64)),
    request_id: z.nullable(z.string().check(z.maxLength(128))),
    request_hash: z.nullable(z.string().check(z.regex(/^[0-9a-f]{64}$/))),
    issued_at: z.number(),
    error: z.object({
      code: z.string().check(z.maxLength(64)),
      message: z.string().check(z.maxLength(2000)),
      retryable: z.boolean(),
      retry_after_ms: z.optional(z.int().check(z.nonnegative())),
    }),
  });
}

/**
 * Validate `data` against `schema`, turning the first issue into one readable SigilError
 * (`field.path: problem`). Used at every boundary: HTTP bodies, YAML, configs.
 */
export function parseWith<S extends core.$ZodType>(
  schema: S,
  data: unknown,
  code: ErrorCode,
  what: string,
): z.infer<S> {
  const r = z.safeParse(schema, data);
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
  schema: core.$ZodType,
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
