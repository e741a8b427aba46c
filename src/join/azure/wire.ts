/**
 * `azure` join: an Azure VM proves what it is with the attested data document its Instance
 * Metadata Service signs (Azure docs, "Azure Instance Metadata Service — attested data"),
 * fresh for this join thanks to the issuer's nonce, and optionally a managed identity token
 * that adds the tenant and resource group. Two rounds (join/challenge.ts):
 *
 *   1. agent → issuer   evidence {}                          ("azure, please")
 *      issuer → agent   signed challenge { challenge_id, nonce, expires_at }
 *   2. the agent asks IMDS
 *        GET /metadata/attested/document?api-version=2020-09-01&nonce=<N>     Metadata: true
 *      where N = {@link imdsNonce}(challenge nonce): IMDS takes a 10-digit nonce, so the
 *      issuer's 32 random bytes are reduced to 10 decimal digits both sides compute alike;
 *      the challenge itself (single use, ≤ 60 s, bound to the request id and the new key)
 *      carries the freshness, the digits prove the document was made for it.
 *      agent → issuer   evidence { challenge_id, document: <IMDS "signature" field: base64 DER
 *                       PKCS#7 SignedData with the JSON embedded>, intermediates?: [base64 DER],
 *                       identity_token?: <managed identity access token> }
 *
 * The JSON inside: { nonce, vmId, subscriptionId, sku, plan, licenseType,
 *                    timeStamp: { createdOn, expiresOn } }   (times as "MM/DD/YY HH:MM:SS -0000")
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { CHALLENGE_ID_RE } from '../challenge.js';

export const ATTESTED_PATH = '/metadata/attested/document';
export const ATTESTED_API_VERSION = '2020-09-01';
export const IDENTITY_PATH = '/metadata/identity/oauth2/token';
export const IDENTITY_API_VERSION = '2018-02-01';
export const DEFAULT_MI_RESOURCE = 'https://management.azure.com/';

const base64 = z
  .string()
  .regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, 'must be base64 (not url)');

/** Round 1: nothing but the method name. */
export const azureHelloSchema = z.strictObject({});

/** Round 2: the answer to the issuer's challenge. */
export const azureAnswerSchema = z.strictObject({
  challenge_id: z.string().regex(CHALLENGE_ID_RE, 'challenge_id is the id the issuer sent'),
  document: base64.max(32 * 1024),
  intermediates: z
    .array(base64.max(16 * 1024))
    .max(4)
    .optional(),
  identity_token: z
    .string()
    .min(16)
    .max(16 * 1024)
    .optional(),
});
export type AzureAnswer = z.infer<typeof azureAnswerSchema>;

export function isAnswer(evidence: Record<string, unknown>): boolean {
  return 'challenge_id' in evidence;
}

/** The 10-digit IMDS nonce both sides derive from the issuer's challenge nonce. */
export function imdsNonce(challengeNonce: Buffer): string {
  const h = createHash('sha256').update('sigil azure imds nonce v1\0').update(challengeNonce).digest();
  return (h.readBigUInt64BE(0) % 10_000_000_000n).toString().padStart(10, '0');
}

export const attestedDocumentSchema = z.object({
  nonce: z.string().max(64),
  vmId: z.string().regex(/^[0-9a-fA-F-]{36}$/, 'vmId is a UUID'),
  subscriptionId: z.string().regex(/^[0-9a-fA-F-]{36}$/, 'subscriptionId is a UUID'),
  sku: z.string().max(256).optional(),
  licenseType: z.string().max(256).optional(),
  timeStamp: z.object({ createdOn: z.string().max(64), expiresOn: z.string().max(64) }),
});
export type AttestedDocument = z.infer<typeof attestedDocumentSchema>;

/**
 * IMDS's timestamps, "11/19/25 12:53:30 -0000" (MM/DD/YY, 24 h, UTC offset); some documents
 * carry an hour past 23, which rolls over into the next day as Date.UTC does.
 */
export function parseImdsTime(s: string): number | undefined {
  const m = /^(\d{2})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(s);
  if (!m) return undefined;
  const n = (i: number): number => Number(m[i]);
  const offsetMs = (m[7] === '-' ? -1 : 1) * (n(8) * 60 + n(9)) * 60_000;
  return Date.UTC(2000 + n(3), n(1) - 1, n(2), n(4), n(5), n(6)) - offsetMs;
}

/** The stable machine id of an Azure VM. */
export function azureMachineId(vmId: string): string {
  return `azure-${vmId.toLowerCase()}`;
}
