/**
 * Revocation by CRLs configured on the join rule (RFC 5280 §5, §6.3 simplified to complete,
 * direct CRLs). Parsed and signature-checked with pkijs; each CRL is believed only when:
 *
 *  - its issuer name is the subject of the CA that issued the certificate being checked, and
 *    the CRL's signature verifies with that CA's key (a CRL file from elsewhere is ignored);
 *  - that CA may sign CRLs (cRLSign, when it has a KeyUsage extension);
 *  - it is current: thisUpdate ≤ now ≤ nextUpdate. A stale CRL fails closed
 *    (`x509_crl_unavailable`, retryable): publish a fresh one and the device joins on retry;
 *  - it has no critical extension Sigil does not process (delta CRLs, issuing distribution
 *    points and indirect-CRL entries are refused rather than half-understood).
 *
 * With crl_files configured, the device certificate's issuer must be covered by one of them
 * (otherwise a missing CRL would silently mean "not revoked"); intermediates are checked when a
 * CRL from their issuer is present.
 *
 * The tpm join checks EK certificates against a rule's ek_crl_files with the same function
 * (join/ek-trust.ts): only the codes and the words of its refusals differ (RevocationScope).
 */
import * as pkijs from 'pkijs';
import { SigilError, type ErrorCode } from '../errors.js';
import { decodeKeyUsage, findExtension, KEY_USAGE } from '../pki/cert-reader.js';
import { TAG } from '../pki/der.js';
import { DerReader } from '../pki/der-reader.js';
import { formatName, rdnEqual, readName, type Rdn } from '../pki/name-reader.js';
import { OID } from '../pki/oids.js';
import { describeCert, magnitudeHex, type ParsedCert } from './x509-cert.js';

export interface LoadedCrl {
  file: string;
  crl: pkijs.CertificateRevocationList;
  issuer: Rdn[];
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** Revoked serials (magnitude hex) → revocation date. */
  revoked: Map<string, Date>;
  /** Why the CRL cannot be used at all, if so. */
  unsupported: string | undefined;
  /** Signature results per issuer certificate fingerprint (a CRL file version is parsed once). */
  verified: Map<string, boolean>;
}

const CRL_EXTENSIONS_OK = new Set(['2.5.29.20' /* cRLNumber */, OID.authorityKeyIdentifier]);
const ENTRY_EXTENSIONS_OK = new Set(['2.5.29.21' /* reasonCode */, '2.5.29.24' /* invalidityDate */]);

/** Parse a CRL (DER). Unparseable input is the operator's problem: `join_rule_unusable`. */
export function parseCrl(der: Buffer, file: string): LoadedCrl {
  let crl: pkijs.CertificateRevocationList;
  let issuer: Rdn[];
  try {
    crl = pkijs.CertificateRevocationList.fromBER(der);
    // The issuer Name exactly as encoded: TBSCertList ::= SEQUENCE { version OPTIONAL, signature, issuer, … }
    const r = new DerReader(der, 'join_rule_unusable', `CRL ${file}`);
    const [tbs] = r.children(r.root());
    const f = r.children(r.expect(tbs, TAG.SEQUENCE, 'TBSCertList'));
    const nameNode = f[0]?.tag === TAG.INTEGER ? f[2] : f[1];
    issuer = readName(
      Buffer.from(r.bytes(r.expect(nameNode, TAG.SEQUENCE, 'issuer'))),
      'join_rule_unusable',
      `CRL ${file} issuer`,
    );
  } catch (e) {
    if (e instanceof SigilError) throw e;
    throw new SigilError('join_rule_unusable', `CRL ${file} cannot be parsed (expected a DER or PEM "X509 CRL")`);
  }
  let unsupported: string | undefined;
  for (const ext of crl.crlExtensions?.extensions ?? []) {
    if (ext.critical && !CRL_EXTENSIONS_OK.has(ext.extnID))
      unsupported = `it has critical extension ${ext.extnID} (delta and partitioned CRLs are not supported)`;
  }
  const revoked = new Map<string, Date>();
  for (const rc of crl.revokedCertificates ?? []) {
    for (const ext of rc.crlEntryExtensions?.extensions ?? []) {
      if (ext.critical && !ENTRY_EXTENSIONS_OK.has(ext.extnID))
        unsupported = `an entry has critical extension ${ext.extnID} (indirect CRLs are not supported)`;
    }
    revoked.set(magnitudeHex(rc.userCertificate.valueBlock.valueHexView), rc.revocationDate.value);
  }
  return {
    file,
    crl,
    issuer,
    thisUpdate: crl.thisUpdate.value,
    nextUpdate: crl.nextUpdate?.value,
    revoked,
    unsupported,
    verified: new Map(),
  };
}

async function signedBy(crl: LoadedCrl, ca: ParsedCert): Promise<boolean> {
  const hit = crl.verified.get(ca.fingerprint);
  if (hit !== undefined) return hit;
  let ok = false;
  try {
    const caCert = pkijs.Certificate.fromBER(ca.der);
    ok = await crl.crl.verify({ publicKeyInfo: caCert.subjectPublicKeyInfo });
  } catch {
    ok = false;
  }
  crl.verified.set(ca.fingerprint, ok);
  return ok;
}

const namesEqual = (a: Rdn[], b: Rdn[]): boolean => a.length === b.length && a.every((rdn, i) => rdnEqual(rdn, b[i]!));

/** Whose revocation is checked: the codes of its refusals and the words naming the certificate. */
export interface RevocationScope {
  /** The certificate is on a current CRL of its issuer (not retryable). */
  revoked: ErrorCode;
  /** No current, signed, usable CRL covers the issuer: fail closed (retryable). */
  unavailable: ErrorCode;
  /** The rule option holding the CRLs ("crl_files"). */
  option: string;
  /** The rule, when messages should name it. */
  rule?: string;
  /** The certificate checked, as messages name it. */
  describe: (c: ParsedCert) => string;
}

/** The x509 join's device chains. */
export const X509_REVOCATION: RevocationScope = {
  revoked: 'x509_revoked',
  unavailable: 'x509_crl_unavailable',
  option: 'crl_files',
  describe: describeCert,
};

/** Check every certificate of a validated path (leaf first, anchor last) against `crls`. */
export async function checkRevocation(
  certs: readonly ParsedCert[],
  crls: readonly LoadedCrl[],
  at: Date,
  scope: RevocationScope = X509_REVOCATION,
): Promise<void> {
  if (crls.length === 0) return;
  for (let i = 0; i < certs.length - 1; i++) {
    const cert = certs[i]!;
    const ca = certs[i + 1]!;
    const named = crls.filter((c) => namesEqual(c.issuer, ca.subject));
    const usable: LoadedCrl[] = [];
    for (const c of named) if (await signedBy(c, ca)) usable.push(c);
    if (usable.length === 0) {
      if (i > 0) continue;
      const files = scope.rule === undefined ? scope.option : `join_rule ${scope.rule}'s ${scope.option}`;
      const why =
        named.length > 0
          ? `the CRL in ${named.map((c) => c.file).join(', ')} names that issuer but its signature does not verify with the CA key`
          : `none of ${files} is issued by "${formatName(ca.subject)}"`;
      throw new SigilError(scope.unavailable, `cannot check revocation of ${scope.describe(cert)}: ${why}`);
    }
    // The newest CRL of that CA decides (several files may hold successive CRLs).
    const crl = usable.reduce((a, b) => (b.thisUpdate > a.thisUpdate ? b : a));
    if (crl.unsupported !== undefined)
      throw new SigilError(scope.unavailable, `the CRL in ${crl.file} cannot be used: ${crl.unsupported}`);
    const ku = findExtension(ca.fields.extensions, OID.keyUsage);
    if (ku !== undefined && !decodeKeyUsage(ku.value, 'x509_chain_malformed').has(KEY_USAGE.cRLSign)) {
      throw new SigilError(
        scope.unavailable,
        `the CRL in ${crl.file} is signed by ${describeCert(ca)}, whose KeyUsage lacks cRLSign`,
      );
    }
    if (crl.thisUpdate > at)
      throw new SigilError(
        scope.unavailable,
        `the CRL in ${crl.file} is not valid before ${crl.thisUpdate.toISOString()} (thisUpdate)`,
      );
    if (crl.nextUpdate === undefined || crl.nextUpdate < at) {
      const when = crl.nextUpdate
        ? `its nextUpdate ${crl.nextUpdate.toISOString()} has passed`
        : 'it has no nextUpdate';
      throw new SigilError(scope.unavailable, `the CRL in ${crl.file} is stale: ${when}; publish a fresh CRL`);
    }
    const revokedAt = crl.revoked.get(cert.serialHex);
    if (revokedAt !== undefined) {
      const of = scope.rule === undefined ? '' : ` of join_rule ${scope.rule}`;
      throw new SigilError(
        scope.revoked,
        `${scope.describe(cert)}, serial ${cert.serialHex}, was revoked at ${revokedAt.toISOString()} (CRL ${crl.file}${of})`,
      );
    }
  }
}
