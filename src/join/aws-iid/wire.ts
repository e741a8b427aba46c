/**
 * `aws_iid` join: an EC2 instance proves what it is with the instance identity document AWS
 * signs for it (EC2 User Guide, "Instance identity documents"), fetched over IMDSv2:
 *
 *   PUT  /latest/api/token                              X-aws-ec2-metadata-token-ttl-seconds
 *   GET  /latest/dynamic/instance-identity/document     the JSON document (exact bytes matter)
 *   GET  /latest/dynamic/instance-identity/rsa2048      PKCS#7 SignedData, RSA-2048/SHA-256,
 *                                                       the document embedded (base64 body)
 *        /latest/dynamic/instance-identity/pkcs7        the same with DSA/SHA-1 (older)
 *        /latest/dynamic/instance-identity/signature    raw RSA PKCS#1 v1.5 SHA-256 over the
 *                                                       document bytes (base64)
 *
 * One request, no challenge round: the evidence is
 *
 *   { kind, document: base64(document bytes), signature: base64(DER PKCS#7 | raw signature),
 *     binding_key: base64url(SPKI of the agent's binding key), binding_signature: base64url }
 *
 * Why a binding key: the document is the same bytes for the instance's whole life, and any
 * process on the instance (or anyone it leaks to) can fetch it — it proves *which instance*,
 * never *who is asking now*. So the first join binds the instance id to a key the agent keeps
 * on the instance (a P-256 key in a 0600 file, never sent), and every later join of that
 * instance must be signed by the same key; a copied document alone joins nothing. The key
 * signs (ECDSA P-256, SHA-256, DER)
 *
 *   "sigil aws_iid join v1" 0x00
 *   || u16(len) request id             ties the proof to this join request
 *   || u32(len) SPKI of the identity key being certified (the envelope is signed by it too)
 *   || SHA-256(document bytes)         ties it to this document
 *
 * (trust on first use: whoever joins first with an instance's document owns the binding until
 * an administrator resets it; docs/join-aws.md says how to narrow that window).
 */
import { createHash } from 'node:crypto';
import * as z from '../../util/zod-mini.js';
import { AWS_SIGNATURE_KINDS } from './schema.js';

export const AWS_IID_CONTEXT = 'sigil aws_iid join v1';

// Defined beside the agent's config schema, which lists them too: an agent loads schema.ts for every
// method, and this file's module-level schemas only when it joins with aws_iid (issue #19).
export { AWS_SIGNATURE_KINDS, type AwsSignatureKind } from './schema.js';

export const IMDS_PATHS = {
  token: '/latest/api/token',
  document: '/latest/dynamic/instance-identity/document',
  rsa2048: '/latest/dynamic/instance-identity/rsa2048',
  pkcs7: '/latest/dynamic/instance-identity/pkcs7',
  signature: '/latest/dynamic/instance-identity/signature',
} as const;

const base64 = (max: number, what: string): z.ZodMiniString =>
  z
    .string()
    .check(
      z.minLength(4),
      z.maxLength(max),
      z.regex(
        /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/,
        `${what} must be base64 (not url, no line breaks)`,
      ),
    );

export const awsEvidenceSchema = z.strictObject({
  kind: z.enum(AWS_SIGNATURE_KINDS),
  /** The document exactly as IMDS served it. */
  document: base64(8 * 1024, 'document'),
  signature: base64(16 * 1024, 'signature'),
  binding_key: z
    .string()
    .check(z.regex(/^[A-Za-z0-9_-]{80,200}$/, 'binding_key must be a base64url SubjectPublicKeyInfo')),
  binding_signature: z.string().check(z.regex(/^[A-Za-z0-9_-]{16,200}$/, 'binding_signature must be base64url')),
});
export type AwsEvidence = z.infer<typeof awsEvidenceSchema>;

/** The document fields Sigil reads (AWS adds others; they are kept in nothing but the bytes). */
export const identityDocumentSchema = z.object({
  accountId: z.string().check(z.regex(/^\d{12}$/, 'accountId is 12 digits')),
  region: z.string().check(z.regex(/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/, 'region is like us-east-1')),
  availabilityZone: z.optional(z.string().check(z.maxLength(64))),
  instanceId: z.string().check(z.regex(/^i-[0-9a-f]{8,32}$/, 'instanceId is like i-0123456789abcdef0')),
  imageId: z.optional(z.string().check(z.maxLength(64))),
  instanceType: z.optional(z.string().check(z.maxLength(64))),
  architecture: z.optional(z.string().check(z.maxLength(32))),
  pendingTime: z.optional(z.string().check(z.maxLength(64))),
  privateIp: z.optional(z.nullable(z.string().check(z.maxLength(64)))),
});
export type IdentityDocument = z.infer<typeof identityDocumentSchema>;

function lengthPrefixed(bytes: Buffer, width: 2 | 4): Buffer {
  const len = Buffer.alloc(width);
  if (width === 2) len.writeUInt16BE(bytes.length);
  else len.writeUInt32BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

/** The exact bytes the binding key signs (see the file comment). */
export function bindingMessage(requestId: string, identitySpki: Buffer, document: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`${AWS_IID_CONTEXT}\0`, 'latin1'),
    lengthPrefixed(Buffer.from(requestId, 'utf8'), 2),
    lengthPrefixed(identitySpki, 4),
    createHash('sha256').update(document).digest(),
  ]);
}

/** sha256:<hex> of a key's SPKI: how bindings record it. */
export function keyHash(spkiDer: Buffer): string {
  return `sha256:${createHash('sha256').update(spkiDer).digest('hex')}`;
}

/** The stable machine id of an EC2 instance (EC2 never reuses an instance id). */
export function awsMachineId(instanceId: string): string {
  return `aws-${instanceId}`;
}
