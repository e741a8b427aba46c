/**
 * `x509` join: a device proves possession of the key of a certificate issued by a CA the join
 * rule trusts (an IEEE 802.1AR IDevID, or an enterprise PKI certificate). Two rounds:
 *
 *   1. agent → issuer   evidence { chain: [base64 DER, leaf first, ≤ 5] }
 *      issuer → agent   signed challenge { challenge_id, nonce (32 random bytes), expires_at }
 *                       — only after the chain passed every check of some rule, so a device
 *                       that cannot join learns why at once and costs no challenge
 *   2. agent → issuer   evidence { challenge_id, agent_nonce, alg, signature }, same request id,
 *                       same new identity key (CSR); the issuer re-checks the chain it kept with
 *                       the challenge, verifies the signature with the leaf's key, and issues
 *
 * The device key signs (RFC 8017 / FIPS 186 with the algorithm's hash) the message
 *
 *   "sigil x509 join v1" 0x00
 *   || u16(len) challenge nonce     freshness: issuer-chosen, single use, ≤ 60 s — a recorded
 *                                   answer cannot be replayed later or elsewhere
 *   || u16(len) agent nonce         the device never signs bytes chosen only by its peer: a
 *                                   rogue "issuer" cannot use it as a signing oracle for data
 *                                   that means something in another protocol
 *   || u16(len) request id (UTF-8)  ties the proof to this join request (idempotency, audit)
 *   || u32(len) SPKI of the new identity key
 *                                   the proof vouches for *this* key: whoever relays the
 *                                   exchange cannot get a certificate for a key of their own
 *                                   (the envelope must also be signed by that key)
 *
 * The leading context string with its NUL is domain separation: device keys also serve TLS
 * client auth, 802.1X, or other attestation protocols, and none of those signs a message that
 * begins with these bytes, so a signature from here is never valid there and vice versa.
 * Lengths are explicit so no two different field tuples produce the same message.
 *
 * Signatures: ECDSA as DER ECDSA-Sig-Value (ES256 with P-256, ES384 with P-384); RSA as
 * PKCS#1 v1.5 (RS256) or PSS with MGF1-SHA-256 (PS256; any salt length is accepted).
 *
 * DevID in a TPM (rules with `require_tpm`, tpm-check.ts): a device whose key is TPM-resident
 * adds `tpm: { ek_cert?, ek_public, ak_public, devid_public }` to round 1 (the tpm join's
 * encodings, join/ek-wire.ts); the issuer answers with `data: { tpm: { credential } }`
 * (MakeCredential to the EK for the AK's Name) and round 2 adds `tpm: { activated, certify }`:
 * ActivateCredential's output and TPM2_Certify of the device key by the AK with the challenge
 * nonce as qualifying data.
 */
import { constants, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { CHALLENGE_ID_RE } from '../challenge.js';
import { activatedB64, credentialWireSchema, ekCertB64, signedAttestSchema, tpm2bPublicB64 } from '../ek-wire.js';

export const X509_CONTEXT = 'sigil x509 join v1';
/** Leaf plus intermediates; the trust anchor comes from the rule. */
export const MAX_CHAIN_CERTS = 5;
export const DEVICE_ALGORITHMS = ['ES256', 'ES384', 'PS256', 'RS256'] as const;
export type DeviceAlgorithm = (typeof DEVICE_ALGORITHMS)[number];

const base64Cert = z
  .string()
  .max(22 * 1024, 'a certificate must be at most 16 KiB')
  .regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, 'certificates are base64 (not url) DER');

/** Round 1, device key in a TPM: its EK, a fresh AK, and the device key's TPM2B_PUBLIC. */
export const x509TpmEvidenceSchema = z.strictObject({
  ek_cert: z.optional(ekCertB64),
  ek_public: tpm2bPublicB64('ek_public'),
  ak_public: tpm2bPublicB64('ak_public'),
  devid_public: tpm2bPublicB64('key_public'),
});
export type X509TpmEvidence = z.infer<typeof x509TpmEvidenceSchema>;

const chainSchema = z
  .array(base64Cert)
  .min(1, 'chain needs the device certificate')
  .max(MAX_CHAIN_CERTS, `chain has at most ${MAX_CHAIN_CERTS} certificates`);

/** Round 1: the device's certificate chain (and, for a TPM-resident key, the TPM binding). */
export const x509EvidenceSchema = z.strictObject({
  chain: chainSchema,
  tpm: x509TpmEvidenceSchema.optional(),
});
export type X509Evidence = z.infer<typeof x509EvidenceSchema>;

/** The challenge `data` of a rule with require_tpm. */
export const x509ChallengeDataSchema = z.strictObject({
  tpm: z.strictObject({ credential: credentialWireSchema }).optional(),
});
export type X509ChallengeData = z.infer<typeof x509ChallengeDataSchema>;

/** The challenge data as the agent reads it (anything malformed is the issuer's fault). */
export function parseChallengeData(data: unknown): X509ChallengeData {
  const r = x509ChallengeDataSchema.safeParse(data ?? {});
  if (!r.success)
    throw new SigilError(
      'response_invalid',
      `the issuer's x509 challenge data is malformed: ${r.error.issues[0]?.message ?? 'invalid'}`,
    );
  return r.data;
}

/** Round 2 addition for require_tpm. */
export const x509TpmAnswerSchema = z.strictObject({
  activated: activatedB64,
  certify: signedAttestSchema,
});
export type X509TpmAnswer = z.infer<typeof x509TpmAnswerSchema>;

/** What the issuer keeps with the challenge (never sent). */
export const x509ChallengeStateSchema = z.strictObject({
  chain: chainSchema,
  tpm: x509TpmEvidenceSchema.extend({ ek_public_hash: z.string(), secret: z.string() }).optional(),
});
export type X509ChallengeState = z.infer<typeof x509ChallengeStateSchema>;

/** Round 2: the answer to the issuer's challenge. */
export const x509AnswerSchema = z.strictObject({
  challenge_id: z.string().regex(CHALLENGE_ID_RE, 'challenge_id is the id the issuer sent'),
  /** 16..64 random bytes, base64url. */
  agent_nonce: z.string().regex(/^[A-Za-z0-9_-]{22,86}$/, 'agent_nonce must be 16-64 bytes, base64url'),
  alg: z.enum(DEVICE_ALGORITHMS),
  /** Up to 1024 bytes (RSA-8192), base64url. */
  signature: z.string().regex(/^[A-Za-z0-9_-]{16,1366}$/, 'signature must be base64url'),
  tpm: x509TpmAnswerSchema.optional(),
});
export type X509Answer = z.infer<typeof x509AnswerSchema>;

export function isAnswer(evidence: Record<string, unknown>): boolean {
  return 'challenge_id' in evidence;
}

function lengthPrefixed(bytes: Buffer, width: 2 | 4): Buffer {
  const max = width === 2 ? 0xffff : 0xffffffff;
  if (bytes.length > max) throw new TypeError(`field of ${bytes.length} bytes is too long`);
  const len = Buffer.alloc(width);
  if (width === 2) len.writeUInt16BE(bytes.length);
  else len.writeUInt32BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

export interface ProofFields {
  challengeNonce: Buffer;
  agentNonce: Buffer;
  requestId: string;
  spkiDer: Buffer;
}

/** The exact bytes the device key signs (see the file comment). */
export function proofMessage(f: ProofFields): Buffer {
  return Buffer.concat([
    Buffer.from(`${X509_CONTEXT}\0`, 'latin1'),
    lengthPrefixed(f.challengeNonce, 2),
    lengthPrefixed(f.agentNonce, 2),
    lengthPrefixed(Buffer.from(f.requestId, 'utf8'), 2),
    lengthPrefixed(f.spkiDer, 4),
  ]);
}

/** The algorithms a device key of this SPKI may use: the curve decides the ECDSA hash. */
export function algorithmsFor(key: KeyObject): readonly DeviceAlgorithm[] {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    return curve === 'prime256v1' ? ['ES256'] : curve === 'secp384r1' ? ['ES384'] : [];
  }
  if (key.asymmetricKeyType === 'rsa') return ['PS256', 'RS256'];
  if (key.asymmetricKeyType === 'rsa-pss') return ['PS256'];
  return [];
}

/** Verify a device signature over `message`; false (never a throw) for a bad or malformed one. */
export function verifyProof(spkiDer: Buffer, alg: DeviceAlgorithm, message: Buffer, signature: Buffer): boolean {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch {
    return false;
  }
  if (!algorithmsFor(key).includes(alg)) return false;
  try {
    switch (alg) {
      case 'ES256':
        return verify('sha256', message, { key, dsaEncoding: 'der' }, signature);
      case 'ES384':
        return verify('sha384', message, { key, dsaEncoding: 'der' }, signature);
      case 'RS256':
        return verify('sha256', message, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
      case 'PS256':
        return verify(
          'sha256',
          message,
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
          signature,
        );
    }
  } catch {
    return false;
  }
}
