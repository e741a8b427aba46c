/**
 * `tpm` join: the machine proves it holds a genuine TPM (its endorsement key), that it booted
 * firmware a profile allows (a quote over PCRs), and that its new identity key was generated in
 * that TPM and cannot leave it (TPM2_Certify). Two rounds, on the host's challenge mechanism
 * (join/challenge.ts):
 *
 *   1. agent → issuer   evidence { ek_cert?, ek_public, ak_public, key_public }
 *                       ek_cert: the EK certificate DER from its NV index, when the TPM has one;
 *                       ek_public: the EK's TPM2B_PUBLIC; ak_public: a fresh restricted ECDSA
 *                       signing key (the AK) under the SRK; key_public: the identity key the CSR
 *                       is for, made in the same TPM.
 *      issuer           checks the EK against the join rules (certificate chain / allow list), the
 *                       AK's and the identity key's attributes, and that key_public is the CSR's
 *                       key; then MakeCredential (in software, Part 1 §24) of 32 random bytes to
 *                       the EK for the AK's Name
 *      issuer → agent   challenge { nonce (host, 32 bytes), data: { credential, pcr_selection } }
 *                       the random bytes stay in the issuer's challenge state
 *   2. agent → issuer   evidence { challenge_id, activated, quote, pcr_values, event_log?, certify }
 *                       activated: ActivateCredential's output — only a TPM holding that EK
 *                       with that AK loaded recovers it (so the AK is in the EK's TPM);
 *                       quote: TPM2_Quote by the AK over pcr_selection, qualifyingData = nonce;
 *                       pcr_values: what PCR_Read returned for the selection; event_log: the
 *                       firmware's TCG log, gzip (optional); certify: TPM2_Certify of the
 *                       identity key by the AK, qualifyingData = nonce.
 *
 * Binary fields are standard base64 of the TPM encodings: TPM2B_PUBLIC with its u16 size
 * prefix (as `tpm2_readpublic -o` writes it), TPMS_ATTEST bytes (what the signature covers),
 * TPMT_SIGNATURE, TPM2B_ID_OBJECT / TPM2B_ENCRYPTED_SECRET contents (as ActivateCredential
 * takes them). PCR digests are lowercase hex.
 */
import * as z from '../../util/zod-mini.js';
import { TPM_ALG } from '../../tpm/constants.js';
import { CHALLENGE_ID_RE } from '../challenge.js';
import {
  activatedB64,
  b64,
  credentialWireSchema,
  EK_HASH_RE,
  ekCertB64,
  signedAttestSchema,
  tpm2bPublicB64,
} from '../ek-wire.js';

export { EK_HASH_RE, signedAttestSchema };
export type { SignedAttestWire } from '../ek-wire.js';

/** The PCR banks Sigil quotes and replays (names as in the event log code). */
export const PCR_BANK_ALGS = {
  sha1: TPM_ALG.SHA1,
  sha256: TPM_ALG.SHA256,
  sha384: TPM_ALG.SHA384,
  sha512: TPM_ALG.SHA512,
} as const;
export type PcrBankName = keyof typeof PCR_BANK_ALGS;
export const PCR_BANK_NAMES = Object.keys(PCR_BANK_ALGS) as PcrBankName[];

export function bankName(alg: number): PcrBankName | undefined {
  return PCR_BANK_NAMES.find((b) => PCR_BANK_ALGS[b] === alg);
}

/** The secret MakeCredential wraps: 32 bytes (a SHA-256 EK takes at most 32). */
export const CREDENTIAL_BYTES = 32;
/** The gzip'd event log, at most (the request body limit is 64 KiB before base64url). */
export const MAX_EVENT_LOG_GZ_BYTES = 36 * 1024;
/** The event log after gunzip, at most (real firmware logs are 10–200 KB). */
export const MAX_EVENT_LOG_BYTES = 4 * 1024 * 1024;

const pcrIndex = z.int().check(z.minimum(0), z.maximum(23));
const bankSchema = z.enum(PCR_BANK_NAMES as [PcrBankName, ...PcrBankName[]]);

export const pcrSelectionSchema = z
  .array(z.strictObject({ bank: bankSchema, pcrs: z.array(pcrIndex).check(z.minLength(1), z.maxLength(24)) }))
  .check(z.minLength(1), z.maxLength(4));
export type PcrSelectionWire = z.infer<typeof pcrSelectionSchema>;

/** Round 1. */
export const tpmEvidenceSchema = z.strictObject({
  ek_cert: z.optional(ekCertB64),
  ek_public: tpm2bPublicB64('ek_public'),
  ak_public: tpm2bPublicB64('ak_public'),
  key_public: tpm2bPublicB64('key_public'),
});
export type TpmEvidence = z.infer<typeof tpmEvidenceSchema>;

/** The issuer's challenge `data`. */
export const tpmChallengeDataSchema = z.strictObject({
  credential: credentialWireSchema,
  pcr_selection: pcrSelectionSchema,
  /**
   * Present when the rule names firmware profiles (issue #16): renewals must carry a fresh quote
   * over pcr_selection (reattest-wire.ts), so the agent keeps the selection.
   */
  attest_renewals: z.optional(z.literal(true)),
});
export type TpmChallengeData = z.infer<typeof tpmChallengeDataSchema>;

const hexDigest = z
  .string()
  .check(
    z.regex(
      /^(?:[0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})$/,
      'a PCR digest is lowercase hex of 20, 32, 48 or 64 bytes',
    ),
  );

/** Round 2. */
export const tpmAnswerSchema = z.strictObject({
  challenge_id: z.string().check(z.regex(CHALLENGE_ID_RE, 'challenge_id is the id the issuer sent')),
  activated: activatedB64,
  quote: signedAttestSchema,
  pcr_values: z
    .array(z.strictObject({ bank: bankSchema, pcr: pcrIndex, digest: hexDigest }))
    .check(z.minLength(1), z.maxLength(96)),
  event_log: z.optional(b64(MAX_EVENT_LOG_GZ_BYTES, 'event_log')),
  certify: signedAttestSchema,
});
export type TpmAnswer = z.infer<typeof tpmAnswerSchema>;

export function isAnswer(evidence: Record<string, unknown>): boolean {
  return 'challenge_id' in evidence;
}

/** What the issuer keeps with the challenge (never sent). */
export const tpmChallengeStateSchema = z.strictObject({
  rule: z.string(),
  ek_public: z.string(),
  ak_public: z.string(),
  key_public: z.string(),
  ek_cert: z.optional(z.string()),
  ek_public_hash: z.string().check(z.regex(EK_HASH_RE)),
  /** The credential MakeCredential wrapped, base64. */
  secret: z.string(),
  pcr_selection: pcrSelectionSchema,
});
export type TpmChallengeState = z.infer<typeof tpmChallengeStateSchema>;
