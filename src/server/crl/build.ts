/**
 * Sign one CRL (RFC 5280 §5) with the issuing intermediate — the CA that signed every
 * certificate listed, so the CRL is a complete, direct CRL for it (no indirect-CRL machinery):
 *
 *   version v2, signature ecdsa-with-SHA256 (the intermediate is ECDSA P-256)
 *   issuer      the intermediate's subject, byte for byte (OpenSSL matches CRL to CA by name)
 *   thisUpdate  now - 60 s: a relying party whose clock lags a little must not see a CRL from
 *               the future (X509_V_ERR_CRL_NOT_YET_VALID); the same back-dating as certificates
 *   nextUpdate  when relying parties must stop trusting this CRL (the publisher sets now + 2×refresh)
 *   extensions  authorityKeyIdentifier (§5.2.1, MUST) and cRLNumber (§5.2.3, MUST)
 *   entries     serial, revocationDate, reasonCode
 *
 * Built with pkijs (as join/x509-crl.ts reads CRLs) on Node's WebCrypto.
 */
// The module object, not the named export: WebCrypto loads on first use (scripts/bundle.mjs LAZY_BUILTIN_EXPORTS).
import crypto, { type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { OID } from '../../pki/oids.js';
import type { RevokedEntry } from './revoked.js';

/** Back-dating of thisUpdate (as server/ops/issue.ts BACKDATE_MS for certificates). */
export const CRL_BACKDATE_MS = 60_000;

const OID_CRL_NUMBER = '2.5.29.20';
const OID_CRL_REASON = '2.5.29.21';

export interface CrlIssuer {
  /** The issuing intermediate's certificate (DER). */
  certDer: Buffer;
  key: KeyObject;
}

export interface CrlContent {
  entries: readonly RevokedEntry[];
  /** The time the content was derived; thisUpdate is this minus {@link CRL_BACKDATE_MS}. */
  now: number;
  nextUpdate: number;
  crlNumber: bigint;
}

/** An INTEGER's content octets for a non-negative value: minimal, a zero octet first when the top bit is set. */
function unsignedHex(hex: string): ArrayBuffer {
  let h = hex.replace(/^0+(?=.)/, '');
  if (h.length % 2) h = `0${h}`;
  let b = Buffer.from(h, 'hex');
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return new Uint8Array(b).buffer;
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
function time(ms: number): pkijs.Time {
  const value = new Date(ms);
  return new pkijs.Time({ type: value.getUTCFullYear() < 2050 ? 0 : 1, value });
}

function extension(extnID: string, value: asn1js.BaseBlock): pkijs.Extension {
  return new pkijs.Extension({ extnID, critical: false, extnValue: value.toBER(false) });
}

export async function signCrl(issuer: CrlIssuer, c: CrlContent): Promise<Buffer> {
  const cert = pkijs.Certificate.fromBER(issuer.certDer);
  // The key id the certificates it signed carry in their authorityKeyIdentifier (pki/issue.ts):
  // the CA's subjectKeyIdentifier (our CAs always have one; createRootCa/createIntermediateCa).
  const ski = cert.extensions?.find((e) => e.extnID === OID.subjectKeyIdentifier);
  if (!ski) throw new Error('the issuing CA certificate has no subjectKeyIdentifier');
  const keyId = asn1js.fromBER(ski.extnValue.valueBlock.valueHexView).result as asn1js.OctetString;
  const aki = new asn1js.Sequence({
    value: [new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 }, valueHex: keyId.valueBlock.valueHexView })],
  });

  const crl = new pkijs.CertificateRevocationList();
  crl.version = 1; // v2: it has extensions
  crl.issuer = cert.subject; // pkijs re-emits the name as decoded, so it is the subject byte for byte
  crl.thisUpdate = time(c.now - CRL_BACKDATE_MS);
  crl.nextUpdate = time(c.nextUpdate);
  // RFC 5280 §5.1.2.6: no revoked certificates, no list (an empty SEQUENCE is not allowed).
  if (c.entries.length > 0) {
    crl.revokedCertificates = c.entries.map(
      (e) =>
        new pkijs.RevokedCertificate({
          userCertificate: new asn1js.Integer({ valueHex: unsignedHex(e.serial) }),
          revocationDate: time(e.revokedAt),
          crlEntryExtensions: new pkijs.Extensions({
            extensions: [extension(OID_CRL_REASON, new asn1js.Enumerated({ value: e.reason }))],
          }),
        }),
    );
  }
  crl.crlExtensions = new pkijs.Extensions({
    extensions: [
      extension(OID.authorityKeyIdentifier, aki),
      extension(OID_CRL_NUMBER, new asn1js.Integer({ valueHex: unsignedHex(c.crlNumber.toString(16)) })),
    ],
  });
  const signingKey = await crypto.webcrypto.subtle.importKey(
    'pkcs8',
    issuer.key.export({ type: 'pkcs8', format: 'der' }),
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  );
  await crl.sign(signingKey as Parameters<pkijs.CertificateRevocationList['sign']>[0], 'SHA-256');
  return Buffer.from(crl.toSchema(true).toBER(false));
}
