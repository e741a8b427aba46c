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
  challenge_invalid: {
    status: 401,
    retryable: false,
    message: 'the challenge is unknown or does not belong to this join request and key',
  },
  challenge_expired: { status: 401, retryable: false, message: 'the challenge has expired; start the join again' },
  challenge_reused: { status: 401, retryable: false, message: 'the challenge was already answered' },
  // --- join: x509 (join/x509/) — one code per failed check ---
  x509_no_rule: { status: 401, retryable: false, message: 'no x509 join rule is configured on this issuer' },
  x509_chain_malformed: { status: 400, retryable: false, message: 'the device certificate chain could not be parsed' },
  x509_untrusted_ca: {
    status: 401,
    retryable: false,
    message: 'the device certificate chain does not lead to a CA trusted by an x509 join rule',
  },
  x509_chain_too_long: {
    status: 401,
    retryable: false,
    message: 'the device certificate chain has more intermediates than the join rule allows',
  },
  x509_cert_signature_invalid: {
    status: 401,
    retryable: false,
    message: 'a certificate signature in the device chain does not verify',
  },
  x509_signature_algorithm: {
    status: 401,
    retryable: false,
    message: 'a certificate in the device chain is signed with an algorithm that is not accepted',
  },
  x509_cert_expired: { status: 401, retryable: false, message: 'a certificate in the device chain has expired' },
  x509_cert_not_yet_valid: {
    status: 401,
    retryable: false,
    message: 'a certificate in the device chain is not valid yet',
  },
  x509_not_ca: {
    status: 401,
    retryable: false,
    message: 'a certificate that issued another one in the device chain is not a CA',
  },
  x509_path_length_exceeded: {
    status: 401,
    retryable: false,
    message: 'a CA pathLenConstraint in the device chain is exceeded',
  },
  x509_key_usage: {
    status: 401,
    retryable: false,
    message: 'a certificate key usage in the device chain does not allow this use',
  },
  x509_name_constraints: {
    status: 401,
    retryable: false,
    message: 'a certificate in the device chain violates a CA name constraint',
  },
  x509_critical_extension: {
    status: 401,
    retryable: false,
    message: 'a certificate in the device chain has a critical extension that is not processed',
  },
  x509_weak_key: {
    status: 401,
    retryable: false,
    message: 'a certificate key in the device chain is too weak or of an unsupported type',
  },
  x509_revoked: { status: 401, retryable: false, message: 'the device certificate is revoked' },
  x509_crl_unavailable: {
    status: 503,
    retryable: true,
    message: 'no current CRL with a valid signature is available for the device certificate',
  },
  x509_not_allowed: {
    status: 403,
    retryable: false,
    message: 'the device certificate does not match the join rule allow list',
  },
  x509_proof_invalid: {
    status: 401,
    retryable: false,
    message: 'the challenge signature does not verify with the device certificate key',
  },
  // --- join: tpm (join/tpm/) — one code per failed check ---
  tpm_no_rule: { status: 401, retryable: false, message: 'no tpm join rule is configured on this issuer' },
  tpm_evidence_malformed: { status: 400, retryable: false, message: 'the TPM evidence could not be parsed' },
  ek_invalid: {
    status: 401,
    retryable: false,
    message: 'the endorsement key is not a TPM storage EK, or it does not match its certificate',
  },
  ek_cert_missing: {
    status: 401,
    retryable: false,
    message: 'the join rule needs an EK certificate and none was sent',
  },
  ek_untrusted: {
    status: 401,
    retryable: false,
    message: 'the EK certificate does not chain to a CA of the join rule',
  },
  ek_revoked: { status: 401, retryable: false, message: 'the EK certificate is revoked by a CRL of the join rule' },
  ek_crl_unavailable: {
    status: 503,
    retryable: true,
    message: 'no current CRL with a valid signature is available for the EK certificate',
  },
  ek_not_allowed: { status: 403, retryable: false, message: 'the EK public key is not on the join rule allow list' },
  ak_attributes_invalid: {
    status: 401,
    retryable: false,
    message: 'the attestation key is not a restricted, TPM-bound signing key',
  },
  credential_mismatch: {
    status: 401,
    retryable: false,
    message: 'the credential activation answer is wrong: the AK and the EK are not in one TPM',
  },
  quote_invalid: {
    status: 401,
    retryable: false,
    message: 'the TPM quote is malformed or does not cover the requested PCRs',
  },
  quote_nonce_mismatch: {
    status: 401,
    retryable: false,
    message: 'the TPM quote does not carry the issuer nonce (replayed or stale quote)',
  },
  quote_signature_invalid: {
    status: 401,
    retryable: false,
    message: 'the TPM quote signature does not verify with the attestation key',
  },
  pcr_digest_mismatch: {
    status: 401,
    retryable: false,
    message: 'the reported PCR values do not hash to the quoted PCR digest',
  },
  pcr_mismatch: { status: 403, retryable: false, message: 'the PCR values match no firmware profile of the join rule' },
  eventlog_invalid: { status: 400, retryable: false, message: 'the TPM event log could not be parsed' },
  eventlog_replay_mismatch: {
    status: 401,
    retryable: false,
    message: 'the event log does not replay to the quoted PCR values',
  },
  firmware_profile_mismatch: {
    status: 403,
    retryable: false,
    message: 'the boot does not satisfy an event-log rule of the firmware profile',
  },
  firmware_profile_unknown: {
    status: 503,
    retryable: true,
    message: 'a join rule names a firmware profile the issuer cannot find',
  },
  clock_invalid: {
    status: 401,
    retryable: false,
    message: 'the TPM clock information is inconsistent or went backwards',
  },
  // Continuous attestation (issue #16, docs/continuous-attestation.md).
  attestation_required: {
    status: 401,
    retryable: false,
    message: "the instance's join rule names firmware profiles: the request must carry a fresh attestation",
  },
  attestation_stale: {
    status: 403,
    retryable: false,
    message: "the instance's last good attestation is older than its join rule's max_attestation_age",
  },
  eventlog_required: {
    status: 401,
    retryable: false,
    message:
      'the machine rebooted (or its PCRs changed) since its last accepted attestation: the event log must be sent',
  },
  pcr_selection_changed: {
    status: 409,
    retryable: false,
    message: "the join rule's firmware profiles select other PCRs than the agent quoted: the agent must join again",
  },
  key_not_tpm_resident: {
    status: 401,
    retryable: false,
    message: 'the identity key is not bound to the TPM (fixedTPM, fixedParent, sensitiveDataOrigin)',
  },
  certify_invalid: {
    status: 401,
    retryable: false,
    message: 'the TPM2_Certify of the identity key is malformed, stale or not signed by the attestation key',
  },
  certify_key_mismatch: {
    status: 401,
    retryable: false,
    message: 'the certified key is not the key of the certificate request',
  },
  device_not_registered: { status: 403, retryable: false, message: 'the device is not registered with this issuer' },
  device_serial_mismatch: {
    status: 403,
    retryable: false,
    message: "the device certificate's subject serialNumber is not the serial its manifest line registered",
  },
  x509_tpm_binding_invalid: {
    status: 401,
    retryable: false,
    message: 'the TPM could not prove that the device key sits in the same TPM as its EK',
  },
  x509_ek_mismatch: {
    status: 403,
    retryable: false,
    message: 'the EK the device proved is not the one registered for it in the factory manifest',
  },
  join_rule_unusable: {
    status: 503,
    retryable: true,
    message: 'a join rule refers to a file the issuer cannot read or parse',
  },
  // --- join: AWS instance identity (join/aws-iid/) ---
  aws_no_rule: { status: 401, retryable: false, message: 'no aws_iid join rule is configured on this issuer' },
  aws_evidence_malformed: {
    status: 400,
    retryable: false,
    message: 'the AWS instance identity evidence could not be parsed',
  },
  aws_region_unknown: {
    status: 401,
    retryable: false,
    message: 'the issuer has no AWS certificate for the region of the instance identity document',
  },
  aws_certificate_invalid: {
    status: 503,
    retryable: true,
    message: "the issuer's AWS certificate for the region is unreadable, altered or expired",
  },
  aws_signature_invalid: {
    status: 401,
    retryable: false,
    message: "the instance identity document's signature does not verify with AWS's certificate for its region",
  },
  aws_binding_proof_invalid: {
    status: 401,
    retryable: false,
    message: 'the signature by the instance binding key does not verify',
  },
  aws_instance_key_mismatch: {
    status: 403,
    retryable: false,
    message: 'the instance already joined with another binding key (an administrator can reset the binding)',
  },
  aws_document_too_old: {
    status: 403,
    retryable: false,
    message: 'the instance launched longer ago than the join rule allows for a first join',
  },
  aws_not_allowed: {
    status: 403,
    retryable: false,
    message: 'the instance does not match the aws_iid join rule allow list',
  },
  // --- join: GCP instance identity token (join/gcp/) ---
  gcp_no_rule: { status: 401, retryable: false, message: 'no gcp join rule is configured on this issuer' },
  gcp_claims_missing: {
    status: 401,
    retryable: false,
    message: 'the token has no google.compute_engine claims (request it with format=full)',
  },
  gcp_not_allowed: {
    status: 403,
    retryable: false,
    message: 'the instance does not match the gcp join rule allow list',
  },
  // --- join: Azure attested data and managed identity (join/azure/) ---
  azure_no_rule: { status: 401, retryable: false, message: 'no azure join rule is configured on this issuer' },
  azure_evidence_malformed: {
    status: 400,
    retryable: false,
    message: 'the Azure attested document could not be parsed',
  },
  azure_signature_invalid: {
    status: 401,
    retryable: false,
    message: 'the Azure attested document signature does not verify',
  },
  azure_signer_untrusted: {
    status: 401,
    retryable: false,
    message: "the attested document's signing certificate does not chain to a CA the join rule trusts",
  },
  azure_signer_domain: {
    status: 401,
    retryable: false,
    message: 'the attested document was not signed by a certificate for the Azure metadata service domain',
  },
  azure_nonce_mismatch: {
    status: 401,
    retryable: false,
    message: "the attested document does not carry the issuer's nonce",
  },
  azure_document_expired: {
    status: 401,
    retryable: false,
    message: 'the attested document is outside its validity period',
  },
  azure_token_required: {
    status: 401,
    retryable: false,
    message: 'the join rule needs a managed identity token, and none was sent',
  },
  azure_token_mismatch: {
    status: 401,
    retryable: false,
    message: 'the managed identity token belongs to another subscription than the attested document',
  },
  azure_not_allowed: {
    status: 403,
    retryable: false,
    message: 'the virtual machine does not match the azure join rule allow list',
  },
  // --- join: OIDC tokens — CI and Kubernetes (join/oidc/, join/jwt-*.ts) ---
  oidc_no_rule: { status: 401, retryable: false, message: 'no oidc join rule is configured on this issuer' },
  oidc_claims_not_allowed: {
    status: 403,
    retryable: false,
    message: 'the token claims do not match the oidc join rule allow list',
  },
  jwt_invalid: { status: 400, retryable: false, message: 'the token is not a well-formed signed JWT' },
  jwt_alg_refused: {
    status: 401,
    retryable: false,
    message: 'the token is signed with an algorithm the join rule does not accept',
  },
  jwt_kid_unknown: {
    status: 401,
    retryable: true,
    message: "the token's key id is not in the issuer's published key set (it is fetched again at most every 30 s)",
  },
  jwt_signature_invalid: { status: 401, retryable: false, message: 'the token signature does not verify' },
  jwt_issuer_mismatch: {
    status: 401,
    retryable: false,
    message: 'the token issuer (iss) is not one a join rule trusts',
  },
  jwt_audience_mismatch: {
    status: 401,
    retryable: false,
    message: "the token audience (aud) is not this issuer's audience",
  },
  jwt_expired: { status: 401, retryable: false, message: 'the token has expired' },
  jwt_not_yet_valid: {
    status: 401,
    retryable: false,
    message: 'the token is not valid yet (nbf or iat in the future)',
  },
  jwt_replayed: { status: 401, retryable: false, message: 'the token (jti) was already used for a join' },
  jwks_unavailable: { status: 503, retryable: true, message: "the token issuer's key set cannot be fetched" },
  // --- agent: cloud and CI evidence sources ---
  cloud_metadata_unavailable: {
    status: 503,
    retryable: true,
    message: 'the instance metadata service (or CI token service) cannot be reached or refused the request',
  },
  // --- CSR / certificates ---
  bad_csr: { status: 400, retryable: false, message: 'the certificate signing request is not acceptable' },
  csr_signature_invalid: { status: 400, retryable: false, message: 'the CSR self-signature does not verify' },
  unsupported_key: { status: 400, retryable: false, message: 'unsupported key type' },
  bad_certificate: { status: 400, retryable: false, message: 'the certificate could not be parsed' },
  chain_invalid: { status: 401, retryable: false, message: 'the certificate chain does not verify' },
  cert_expired: { status: 401, retryable: false, message: 'the certificate has expired' },
  // --- several issuers, one root (docs/issuers.md) ---
  issuer_revoked: {
    status: 403,
    retryable: false,
    message: 'the certificate was issued under an intermediate CA that has been revoked',
  },
  issuer_retired: {
    status: 409,
    retryable: false,
    message: 'this issuer has been retired or revoked and no longer serves',
  },
  // --- renew ---
  signature_invalid: { status: 401, retryable: false, message: 'the request signature does not verify' },
  stale_request: { status: 401, retryable: false, message: 'the request timestamp is outside the allowed clock skew' },
  key_reused: { status: 400, retryable: false, message: 'renewal must use a new key' },
  unknown_instance: { status: 404, retryable: false, message: 'no such instance' },
  instance_locked: { status: 403, retryable: false, message: 'the instance is locked' },
  generation_mismatch: {
    status: 403,
    retryable: false,
    message: 'stale credential generation presented; the instance is now locked',
  },
  instance_conflict: {
    status: 409,
    retryable: false,
    message: 'the join maps to an existing instance of another bot or join method',
  },
  request_id_conflict: {
    status: 409,
    retryable: false,
    message: 'the request id was already used for a different request',
  },
  // Retryable: the agent keeps its request and resends it, so once the row is restored (from a
  // backup, by the operator) it gets the answer it is owed instead of re-signing with a
  // credential the issuer already superseded (which would lock it).
  stored_answer_invalid: {
    status: 500,
    retryable: true,
    message:
      'the answer stored for this request id fails its integrity check (written outside the issuer); it is not replayed',
  },
  signer_mismatch: {
    status: 403,
    retryable: false,
    message: 'the request payload names another instance or certificate than the one that signed it',
  },
  answer_key_required: {
    status: 400,
    retryable: false,
    message:
      'a credential request for a secret (a JWT) over a carrier that is not end-to-end confidential (MQTT) must carry answer_key',
  },
  ttl_invalid: { status: 400, retryable: false, message: 'the requested TTL is not valid' },
  // --- credential (SSH, database, Kubernetes, JWT; server/ops/credential.ts) ---
  role_denied: {
    status: 403,
    retryable: false,
    message: "the bot's roles do not allow this credential; the message names the role rule",
  },
  // --- workload registration (server/ops/workload.ts, docs/workload-registration.md) ---
  workload_id_reserved: {
    status: 400,
    retryable: false,
    message: 'the workload SPIFFE ID collides with a node (…/bot/…) or issuer (…/sigil/…) identity',
  },
  workload_id_outside_trust_domain: {
    status: 400,
    retryable: false,
    message: "the workload SPIFFE ID is not in this issuer's trust domain",
  },
  workload_unknown: { status: 404, retryable: false, message: 'no such workload registration entry' },
  workload_not_for_node: {
    status: 403,
    retryable: false,
    message: 'the workload registration entry does not apply to the requesting node',
  },
  workload_audience_denied: {
    status: 403,
    retryable: false,
    message: 'the workload registration entry does not allow this JWT-SVID audience',
  },
  // --- admin ---
  unauthorized: { status: 401, retryable: false, message: 'missing or invalid admin credential' },
  // --- fleet view (server/ui/) ---
  ui_csrf_invalid: {
    status: 403,
    retryable: false,
    message: 'the form was not sent by this fleet view (missing or wrong CSRF token, or another origin)',
  },
  ui_role_forbidden: { status: 403, retryable: false, message: 'a viewer session cannot change anything' },
  ui_session_invalid: {
    status: 401,
    retryable: false,
    message: 'sign in to the fleet view (no session, or it expired)',
  },
  policy_invalid: { status: 400, retryable: false, message: 'the policy resource is not valid' },
  conflict: { status: 409, retryable: false, message: 'the resource conflicts with an existing one' },
  manifest_invalid: {
    status: 400,
    retryable: false,
    message: 'the device manifest is not valid; nothing was imported',
  },
  // --- factory (sigil factory …) ---
  device_already_provisioned: {
    status: 409,
    retryable: false,
    message: 'the device (TPM handle, NV index or serial) is already provisioned; use --force to replace it',
  },
  batch_incomplete: { status: 500, retryable: false, message: 'some devices of the batch could not be provisioned' },
  // --- agent / local ---
  config_invalid: { status: 400, retryable: false, message: 'the configuration is not valid' },
  not_joined: { status: 400, retryable: false, message: 'the agent has no identity yet' },
  renewal_pending: {
    status: 503,
    retryable: true,
    message: 'the agent is renewing its identity; requests signed with it wait for the renewal',
  },
  data_dir_locked: {
    status: 409,
    retryable: false,
    message: 'another sigil agent process is using this data directory',
  },
  reattest_required: {
    status: 400,
    retryable: false,
    message: 'the identity expired and this join method cannot re-attest by itself',
  },
  pin_mismatch: { status: 400, retryable: false, message: 'the issuer CA does not match the pinned CA' },
  response_invalid: { status: 502, retryable: true, message: 'the issuer response could not be verified' },
  event_invalid: {
    status: 400,
    retryable: false,
    message: 'a pushed event is not signed by the issuer, is malformed, or is too old',
  },
  answer_mismatch: {
    status: 502,
    retryable: true,
    message: 'a verified issuer answer is not for this agent: another instance, or another key than the one requested',
  },
  issuer_unreachable: { status: 503, retryable: true, message: 'the issuer cannot be reached' },
  tpm_error: { status: 500, retryable: false, message: 'the TPM refused the command' },
  tpm_unavailable: { status: 503, retryable: true, message: 'the TPM is busy or cannot be reached' },
  keystore_unavailable: {
    status: 503,
    retryable: true,
    message: 'the key store (PKCS#11 token or TPM) is not available',
  },
  keystore_error: {
    status: 500,
    retryable: false,
    message: 'the key store (PKCS#11 token or TPM) refused the operation',
  },
  unsafe_path: { status: 400, retryable: false, message: 'refusing to write through a symbolic link or unsafe path' },
  data_dir_insecure: {
    status: 500,
    retryable: false,
    message: 'the issuer data directory or a file in it can be written by another user',
  },
  already_initialized: { status: 409, retryable: false, message: 'the data directory is already initialised' },
  not_initialized: { status: 400, retryable: false, message: 'the data directory is not initialised' },
  not_built: { status: 500, retryable: false, message: 'sigil is not built; run npm run build' },
  audit_chain_broken: { status: 500, retryable: false, message: 'the audit hash chain does not verify' },
  // --- server side ---
  rate_limited: { status: 429, retryable: true, message: 'too many requests' },
  unavailable: { status: 503, retryable: true, message: 'the issuer is not ready' },
  trust_lagging: {
    status: 503,
    retryable: true,
    // Agent side (agent/credentials.ts): the answering issuer had not read a key rotation the
    // agent already knows of; it ends when that issuer reads it (within ~10 s) or another answers.
    message:
      'the issuer that answered had not yet read the key rotation this agent already knows of; its answer is not used, the agent asks again',
  },
  signing_key_withdrawn: {
    status: 503,
    retryable: true,
    // Retryable: it ends when the operator puts the new key file in place (server/key-reload.ts).
    message:
      "this issuer's signing key for the credential was withdrawn by a compromise rotation; it signs nothing until the new key file is in place",
  },
  store_unavailable: {
    status: 503,
    retryable: true,
    message: 'the issuer cannot reach its database right now; retry the same request (same request id) later',
  },
  store_schema_newer: {
    status: 500,
    retryable: false,
    // A downgrade never heals by retrying: exit 2, which the units do not restart on.
    message: 'the database schema was written by a newer Sigil; run that version (or a newer one)',
  },
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
      return new SigilError(
        e.code,
        msg,
        typeof e.retryAfterMs === 'number' ? { retryAfterMs: e.retryAfterMs } : undefined,
      );
    }
    return new SigilError('response_invalid', 'the issuer answered with an unrecognised error');
  }
}

/** Anything thrown that is not a SigilError is internal; never leak its message to a client. */
export function toSigilError(err: unknown): SigilError {
  if (err instanceof SigilError) return err;
  return new SigilError('internal', undefined, { cause: err });
}
