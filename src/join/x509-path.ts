/**
 * Certification path validation for device chains (RFC 5280 §6.1), each failed check with its
 * own error code (errors.ts, `x509_*`):
 *
 *  - building: leaf → supplied intermediates → a trust anchor from the rule's ca_files, issuer
 *    and subject names compared per §7.1, every signature verified (`x509_untrusted_ca`,
 *    `x509_cert_signature_invalid`, `x509_chain_too_long`);
 *  - every certificate, anchor included (as OpenSSL does): validity at `at`
 *    (`x509_cert_expired`, `x509_cert_not_yet_valid`), key type and size — EC P-256/P-384 or
 *    RSA ≥ 2048 (`x509_weak_key`), no critical extension Sigil does not process
 *    (`x509_critical_extension`); every non-anchor: an accepted signature algorithm — no SHA-1
 *    or MD5 (`x509_signature_algorithm`);
 *  - issuers: BasicConstraints cA (§6.1.4 (k), `x509_not_ca`), pathLenConstraint counting the
 *    non-self-issued intermediates below (§6.1.4 (l)(m), `x509_path_length_exceeded`),
 *    keyCertSign when KeyUsage is present (§6.1.4 (n), `x509_key_usage`);
 *  - the leaf: digitalSignature when KeyUsage is present (it signs the challenge;
 *    `x509_key_usage`);
 *  - name constraints of every CA over the certificates below it (§6.1.3 (b)(c),
 *    `x509_name_constraints`).
 *
 * Not processed: certificate policies (policyConstraints, inhibitAnyPolicy and policyMappings
 * are therefore refused when critical), and OpenSSL's habit of checking a hostname-like CN
 * against DNS name constraints when there is no DNS SAN.
 */
import { SigilError } from '../errors.js';
import { decodeBasicConstraints, decodeKeyUsage, findExtension, KEY_USAGE } from '../pki/cert-reader.js';
import { signedBy } from '../pki/chain.js';
import {
  constrainedNames,
  decodeNameConstraints,
  nameConstraintViolation,
  UnsupportedNameConstraint,
} from '../pki/name-constraints.js';
import { formatName, rdnEqual, type Rdn } from '../pki/name-reader.js';
import { OID } from '../pki/oids.js';
import { classifySpki, readSpki } from '../pki/spki.js';
import { describeCert, type ParsedCert } from './x509-cert.js';

/** Extensions whose criticality Sigil honours (§4.2: an unrecognised critical one fails the path). */
const UNDERSTOOD = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  OID.nameConstraints,
  '2.5.29.32', // certificatePolicies: its qualifiers are informational; policy processing is not done
]);

const ACCEPTED_SIGNATURES = new Set<string>([
  OID.ecdsaWithSHA256,
  OID.ecdsaWithSHA384,
  OID.ecdsaWithSHA512,
  OID.sha256WithRSAEncryption,
  OID.sha384WithRSAEncryption,
  OID.sha512WithRSAEncryption,
  '1.2.840.113549.1.1.10', // RSASSA-PSS (RFC 4055)
]);

const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 16384;

export interface PathInput {
  leaf: ParsedCert;
  /** Untrusted certificates that may complete the path (from the device), in any order. */
  intermediates: readonly ParsedCert[];
  /** Trust anchors (the rule's ca_files). */
  anchors: readonly ParsedCert[];
  at: Date;
  maxIntermediates: number;
}

export interface ValidatedPath {
  /** leaf, intermediates…, anchor. */
  certs: ParsedCert[];
  leaf: ParsedCert;
  anchor: ParsedCert;
}

const namesEqual = (a: Rdn[], b: Rdn[]): boolean => a.length === b.length && a.every((rdn, i) => rdnEqual(rdn, b[i]!));
const selfIssued = (c: ParsedCert): boolean => namesEqual(c.subject, c.issuer);

export function validatePath(input: PathInput): ValidatedPath {
  const certs = buildPath(input);
  for (let i = 0; i < certs.length; i++) checkCertificate(certs, i, input.at);
  checkNameConstraints(certs);
  return { certs, leaf: certs[0]!, anchor: certs[certs.length - 1]! };
}

function buildPath(input: PathInput): ParsedCert[] {
  const path: ParsedCert[] = [input.leaf];
  for (;;) {
    const current = path[path.length - 1]!;
    const anchors = input.anchors.filter((a) => namesEqual(a.subject, current.issuer));
    const anchor = anchors.find((a) => signedBy(current, a));
    if (anchor !== undefined) {
      path.push(anchor);
      return path;
    }
    const pool = input.intermediates.filter((c) => !path.includes(c) && namesEqual(c.subject, current.issuer));
    const next = pool.find((c) => signedBy(current, c));
    if (next === undefined) {
      if (anchors.length > 0 || pool.length > 0) {
        throw new SigilError(
          'x509_cert_signature_invalid',
          `the signature of ${describeCert(current)} does not verify with the key of its issuer "${formatName(current.issuer)}"`,
        );
      }
      const self = selfIssued(current) ? " (it is self-issued and not one of the rule's CAs)" : '';
      throw new SigilError(
        'x509_untrusted_ca',
        `no CA in the rule's ca_files and no supplied intermediate issued ${describeCert(current)}; its issuer is "${formatName(current.issuer)}"${self}`,
      );
    }
    path.push(next);
    if (path.length - 1 > input.maxIntermediates) {
      throw new SigilError(
        'x509_chain_too_long',
        `the path needs more than ${input.maxIntermediates} intermediate CA certificates (the rule's max_intermediates)`,
      );
    }
  }
}

function checkCertificate(certs: readonly ParsedCert[], index: number, at: Date): void {
  const c = certs[index]!;
  const anchorIndex = certs.length - 1;
  const { notBefore, notAfter, extensions } = c.fields;
  if (at > notAfter)
    throw new SigilError('x509_cert_expired', `${describeCert(c)} expired at ${notAfter.toISOString()}`);
  if (at < notBefore)
    throw new SigilError(
      'x509_cert_not_yet_valid',
      `${describeCert(c)} is not valid before ${notBefore.toISOString()}`,
    );
  if (index !== anchorIndex && !ACCEPTED_SIGNATURES.has(c.signatureAlgorithm)) {
    throw new SigilError(
      'x509_signature_algorithm',
      `${describeCert(c)} is signed with ${c.signatureAlgorithm}; accepted are ECDSA and RSA (PKCS#1 v1.5 or PSS) with SHA-256/384/512`,
    );
  }
  checkKey(c);
  for (const e of extensions) {
    if (e.critical && !UNDERSTOOD.has(e.oid))
      throw new SigilError(
        'x509_critical_extension',
        `${describeCert(c)} has critical extension ${e.oid}, which Sigil does not process`,
      );
  }
  const kuExt = findExtension(extensions, OID.keyUsage);
  const ku = kuExt === undefined ? undefined : decodeKeyUsage(kuExt.value, 'x509_chain_malformed');
  if (index === 0) {
    if (ku !== undefined && !ku.has(KEY_USAGE.digitalSignature)) {
      throw new SigilError(
        'x509_key_usage',
        `${describeCert(c)}: its KeyUsage lacks digitalSignature, so its key may not sign the join challenge`,
      );
    }
    return;
  }
  const bcExt = findExtension(extensions, OID.basicConstraints);
  const bc = bcExt === undefined ? undefined : decodeBasicConstraints(bcExt.value, 'x509_chain_malformed');
  // A v1 certificate has no extensions; as a trust anchor it is accepted as a CA (OpenSSL does).
  const v1Anchor = index === anchorIndex && c.fields.version === 1;
  if (!bc?.ca && !v1Anchor)
    throw new SigilError(
      'x509_not_ca',
      `${describeCert(c)} issued a certificate but is not a CA (BasicConstraints cA is not TRUE)`,
    );
  if (bc?.pathLen !== undefined) {
    // §6.1.4 (l)(m): the CA certificates between the leaf and this one, self-issued ones excepted.
    const cas = certs.slice(1, index).filter((x) => !selfIssued(x)).length;
    if (cas > bc.pathLen)
      throw new SigilError(
        'x509_path_length_exceeded',
        `${describeCert(c)} has pathLenConstraint ${bc.pathLen} but ${cas} CA certificates follow it`,
      );
  }
  if (ku !== undefined && !ku.has(KEY_USAGE.keyCertSign))
    throw new SigilError(
      'x509_key_usage',
      `${describeCert(c)} issued a certificate but its KeyUsage lacks keyCertSign`,
    );
}

function checkKey(c: ParsedCert): void {
  const f = readSpki(c.fields.spki, 'x509_chain_malformed', `${c.label} public key`);
  const verdict = classifySpki(f);
  if ('reason' in verdict) throw new SigilError('x509_weak_key', `${describeCert(c)}: ${verdict.reason}`);
  if (verdict.keyType === 'rsa') {
    const bits = c.x509.publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS)
      throw new SigilError(
        'x509_weak_key',
        `${describeCert(c)}: RSA key of ${bits} bits (accepted: ${MIN_RSA_BITS}..${MAX_RSA_BITS})`,
      );
  }
}

function checkNameConstraints(certs: ParsedCert[]): void {
  for (let i = 1; i < certs.length; i++) {
    const ca = certs[i]!;
    const ext = findExtension(ca.fields.extensions, OID.nameConstraints);
    if (ext === undefined) continue;
    let nc;
    try {
      nc = decodeNameConstraints(ext.value, 'x509_chain_malformed');
    } catch (e) {
      if (e instanceof UnsupportedNameConstraint)
        throw new SigilError(
          'x509_name_constraints',
          `${describeCert(ca)}: ${e.message}; a constraint Sigil cannot evaluate is refused`,
        );
      throw e;
    }
    for (let j = 0; j < i; j++) {
      const c = certs[j]!;
      if (j > 0 && selfIssued(c)) continue; // §6.1.3 (b): self-issued intermediates are exempt
      const violation = nameConstraintViolation(nc, constrainedNames(c.subject, c.san));
      if (violation !== undefined)
        throw new SigilError(
          'x509_name_constraints',
          `${describeCert(c)} violates the name constraints of ${describeCert(ca)}: ${violation}`,
        );
    }
  }
}
