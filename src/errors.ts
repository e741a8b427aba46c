/**
 * Sigil's error taxonomy. Every refusal a client can cause carries a stable string `code`
 * from {@link ERROR_TABLE}; the table decides the HTTP status, whether a client should retry,
 * and the default message. Transports map codes, never messages.
 *
 * Caller *misuse* (a wrong option type inside Sigil itself) stays a TypeError; bad *input*
 * from a user, an agent or a file is always a SigilError.
 */

export interface ErrorSpec {
  /** HTTP status the issuer answers with. */
  readonly status: number;
  /** Whether an agent should retry the same request later (with backoff). */
  readonly retryable: boolean;
  /** Default human message; call sites usually add the detail that names the failed check. */
  readonly message: string;
}

/**
 * One table for every code. Keep it sorted by area; codes are part of the public contract
 * (docs/errors.md lists them), so never rename one, only add.
 */
export const ERROR_TABLE = {
  // --- request shape (client's fault) ---
  bad_request: { status: 400, retryable: false, message: 'the request is malformed' },
  malformed_json: { status: 400, retryable: false, message: 'the request body is not valid JSON' },
  body_too_large: { status: 413, retryable: false, message: 'the request body exceeds the size limit' },
  unsupported_version: { status: 400, retryable: false, message: 'unsupported protocol version' },
  unsupported_media_type: { status: 415, retryable: false, message: 'expected application/json' },
  not_found: { status: 404, retryable: false, message: 'no such resource' },
  method_not_allowed: { status: 405, retryable: false, message: 'method not allowed' },
  // --- join ---
  unknown_join_method: { status: 400, retryable: false, message: 'unknown join method' },
  token_invalid: { status: 401, retryable: false, message: 'the join token is not valid' },
  token_expired: { status: 401, retryable: false, message: 'the join token has expired' },
  token_reused: { status: 401, retryable: false, message: 'the join token was already used' },
  unknown_bot: { status: 404, retryable: false, message: 'no such bot' },
  bot_locked: { status: 403, retryable: false, message: 'the bot is locked' },
  // --- join: challenge round (join/challenge.ts) ---
  challenge_invalid: { status: 401, retryable: false, message: 'the challenge is unknown or does not belong to this join request and key' },
  challenge_expired: { status: 401, retryable: false, message: 'the challenge has expired; start the join again' },
  challenge_reused: { status: 401, retryable: false, message: 'the challenge was already answered' },
  // --- join: x509 (join/x509/) — one code per failed check ---
  x509_no_rule: { status: 401, retryable: false, message: 'no x509 join rule is configured on this issuer' },
  x509_chain_malformed: { status: 400, retryable: false, message: 'the device certificate chain could not be parsed' },
  x509_untrusted_ca: { status: 401, retryable: false, message: 'the device certificate chain does not lead to a CA trusted by an x509 join rule' },
  x509_chain_too_long: { status: 401, retryable: false, message: 'the device certificate chain has more intermediates than the join rule allows' },
  x509_cert_signature_invalid: { status: 401, retryable: false, message: 'a certificate signature in the device chain does not verify' },
  x509_signature_algorithm: { status: 401, retryable: false, message: 'a certificate in the device chain is signed with an algorithm that is not accepted' },
  x509_cert_expired: { status: 401, retryable: false, message: 'a certificate in the device chain has expired' },
  x509_cert_not_yet_valid: { status: 401, retryable: false, message: 'a certificate in the device chain is not valid yet' },
  x509_not_ca: { status: 401, retryable: false, message: 'a certificate that issued another one in the device chain is not a CA' },
  x509_path_length_exceeded: { status: 401, retryable: false, message: 'a CA pathLenConstraint in the device chain is exceeded' },
  x509_key_usage: { status: 401, retryable: false, message: 'a certificate key usage in the device chain does not allow this use' },
  x509_name_constraints: { status: 401, retryable: false, message: 'a certificate in the device chain violates a CA name constraint' },
  x509_critical_extension: { status: 401, retryable: false, message: 'a certificate in the device chain has a critical extension that is not processed' },
  x509_weak_key: { status: 401, retryable: false, message: 'a certificate key in the device chain is too weak or of an unsupported type' },
  x509_revoked: { status: 401, retryable: false, message: 'the device certificate is revoked' },
  x509_crl_unavailable: { status: 503, retryable: true, message: 'no current CRL with a valid signature is available for the device certificate' },
  x509_not_allowed: { status: 403, retryable: false, message: 'the device certificate does not match the join rule allow list' },
  x509_proof_invalid: { status: 401, retryable: false, message: 'the challenge signature does not verify with the device certificate key' },
  device_not_registered: { status: 403, retryable: false, message: 'the device is not registered with this issuer' },
  join_rule_unusable: { status: 503, retryable: true, message: 'a join rule refers to a file the issuer cannot read or parse' },
  // --- CSR / certificates ---
  bad_csr: { status: 400, retryable: false, message: 'the certificate signing request is not acceptable' },
  csr_signature_invalid: { status: 400, retryable: false, message: 'the CSR self-signature does not verify' },
  unsupported_key: { status: 400, retryable: false, message: 'unsupported key type' },
  bad_certificate: { status: 400, retryable: false, message: 'the certificate could not be parsed' },
  chain_invalid: { status: 401, retryable: false, message: 'the certificate chain does not verify' },
  cert_expired: { status: 401, retryable: false, message: 'the certificate has expired' },
  // --- renew ---
  signature_invalid: { status: 401, retryable: false, message: 'the request signature does not verify' },
  stale_request: { status: 401, retryable: false, message: 'the request timestamp is outside the allowed clock skew' },
  key_reused: { status: 400, retryable: false, message: 'renewal must use a new key' },
  unknown_instance: { status: 404, retryable: false, message: 'no such instance' },
  instance_locked: { status: 403, retryable: false, message: 'the instance is locked' },
  generation_mismatch: { status: 403, retryable: false, message: 'stale credential generation presented; the instance is now locked' },
  request_id_conflict: { status: 409, retryable: false, message: 'the request id was already used for a different request' },
  ttl_invalid: { status: 400, retryable: false, message: 'the requested TTL is not valid' },
  // --- admin ---
  unauthorized: { status: 401, retryable: false, message: 'missing or invalid admin credential' },
  policy_invalid: { status: 400, retryable: false, message: 'the policy resource is not valid' },
  conflict: { status: 409, retryable: false, message: 'the resource conflicts with an existing one' },
  manifest_invalid: { status: 400, retryable: false, message: 'the device manifest is not valid; nothing was imported' },
  // --- agent / local ---
  config_invalid: { status: 400, retryable: false, message: 'the configuration is not valid' },
  not_joined: { status: 400, retryable: false, message: 'the agent has no identity yet' },
  reattest_required: { status: 400, retryable: false, message: 'the identity expired and this join method cannot re-attest by itself' },
  pin_mismatch: { status: 400, retryable: false, message: 'the issuer CA does not match the pinned CA' },
  response_invalid: { status: 502, retryable: true, message: 'the issuer response could not be verified' },
  issuer_unreachable: { status: 503, retryable: true, message: 'the issuer cannot be reached' },
  tpm_error: { status: 500, retryable: false, message: 'the TPM refused the command' },
  tpm_unavailable: { status: 503, retryable: true, message: 'the TPM is busy or cannot be reached' },
  keystore_unavailable: { status: 503, retryable: true, message: 'the key store (PKCS#11 token or TPM) is not available' },
  keystore_error: { status: 500, retryable: false, message: 'the key store (PKCS#11 token or TPM) refused the operation' },
  unsafe_path: { status: 400, retryable: false, message: 'refusing to write through a symbolic link or unsafe path' },
  already_initialized: { status: 409, retryable: false, message: 'the data directory is already initialised' },
  not_initialized: { status: 400, retryable: false, message: 'the data directory is not initialised' },
  not_built: { status: 500, retryable: false, message: 'sigil is not built; run npm run build' },
  audit_chain_broken: { status: 500, retryable: false, message: 'the audit hash chain does not verify' },
  // --- server side ---
  rate_limited: { status: 429, retryable: true, message: 'too many requests' },
  unavailable: { status: 503, retryable: true, message: 'the issuer is not ready' },
  internal: { status: 500, retryable: true, message: 'internal error' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(ERROR_TABLE, x);
}

/** The wire form of an error, identical over HTTPS and MQTT. */
export interface WireError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  retryAfterMs?: number;
}

export class SigilError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message ?? ERROR_TABLE[code].message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'SigilError';
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }

  get status(): number {
    return ERROR_TABLE[this.code].status;
  }

  get retryable(): boolean {
    return ERROR_TABLE[this.code].retryable;
  }

  toWire(): WireError {
    const w: WireError = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.retryAfterMs !== undefined) w.retryAfterMs = this.retryAfterMs;
    return w;
  }

  /** Rebuild an error an issuer sent us; unknown codes become `response_invalid`. */
  static fromWire(w: unknown): SigilError {
    if (w && typeof w === 'object' && isErrorCode((w as WireError).code)) {
      const e = w as WireError;
      const msg = typeof e.message === 'string' ? e.message.slice(0, 500) : undefined;
      return new SigilError(e.code, msg, typeof e.retryAfterMs === 'number' ? { retryAfterMs: e.retryAfterMs } : undefined);
    }
    return new SigilError('response_invalid', 'the issuer answered with an unrecognised error');
  }
}

/** Anything thrown that is not a SigilError is internal; never leak its message to a client. */
export function toSigilError(err: unknown): SigilError {
  if (err instanceof SigilError) return err;
  return new SigilError('internal', undefined, { cause: err });
}
