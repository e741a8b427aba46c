/**
 * Whether a registry row (../store/issuer-registry-types.ts) names an intermediate this issuer may
 * trust. The database is not trusted for this (docs/issuers.md, "database writer"): a row is
 * accepted only if its certificate is signed by the root this issuer pins (its own ca/root.pem),
 * is a CA (basicConstraints cA), is within its validity,
 * and carries this trust domain's SPIFFE ID — what `sigil server add-issuer` makes.
 */
import { X509Certificate } from 'node:crypto';
import { subjectNameDer } from '../../pki/name.js';
import { fromPem } from '../../pki/pem.js';
import type { IssuingCa } from '../../pki/own-leaf.js';

export interface VerifiedIntermediate {
  ca: IssuingCa;
  /** The PEM as answers carry it (trimmed, one trailing newline). */
  pem: string;
  serial: string;
  notAfter: number;
}

export type Verdict = { ok: true; value: VerifiedIntermediate } | { ok: false; reason: string };

export function verifyIntermediate(certPem: string, root: X509Certificate, trustDomain: string, now: number): Verdict {
  let cert: X509Certificate;
  let der: Buffer;
  try {
    der = fromPem(certPem, 'CERTIFICATE');
    cert = new X509Certificate(der);
  } catch {
    return { ok: false, reason: 'not a PEM certificate' };
  }
  // checkIssued compares names and key identifiers; verify checks the signature itself.
  if (!cert.checkIssued(root) || !cert.verify(root.publicKey))
    return { ok: false, reason: 'not signed by the pinned root CA' };
  if (!cert.ca) return { ok: false, reason: 'not a CA certificate (basicConstraints cA is false)' };
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (!(notBefore <= now && now < notAfter))
    return { ok: false, reason: `not valid now (${cert.validFrom} – ${cert.validTo})` };
  const sans = (cert.subjectAltName ?? '').split(', ');
  if (!sans.includes(`URI:spiffe://${trustDomain}`))
    return { ok: false, reason: `does not carry the trust domain's SPIFFE ID spiffe://${trustDomain}` };
  let subjectDer: Buffer;
  try {
    subjectDer = subjectNameDer(der);
  } catch (err) {
    return { ok: false, reason: `not a DER certificate (${err instanceof Error ? err.message : String(err)})` };
  }
  return {
    ok: true,
    value: {
      ca: { certDer: der, subjectDer, publicKey: cert.publicKey },
      pem: certPem.trim() + '\n',
      serial: cert.serialNumber.toLowerCase().replace(/^(00)+(?=.)/, ''),
      notAfter,
    },
  };
}
