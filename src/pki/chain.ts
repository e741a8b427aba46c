/**
 * Certificate path validation (RFC 5280 §6.1, the parts Sigil relies on) and the small
 * identity helpers built on it: the CA pin agents configure and the SPIFFE ID of an SVID.
 *
 * Signatures and issuer/subject matching use node's X509Certificate (OpenSSL underneath);
 * the checks node does not expose — validity at a chosen time, cA, keyCertSign,
 * pathLenConstraint, unknown critical extensions — are read from the DER by cert-reader.
 */
import { createHash, createPublicKey, KeyObject, X509Certificate } from 'node:crypto';
import { SigilError } from '../errors.js';
import {
  decodeBasicConstraints,
  decodeGeneralNames,
  decodeKeyUsage,
  findExtension,
  KEY_USAGE,
  readCertificate,
  type CertificateFields,
} from './cert-reader.js';
import { TAG } from './der.js';
import { DerReader } from './der-reader.js';
import { OID } from './oids.js';
import { fromPem } from './pem.js';

/** Most certificates in a path, leaf and root included (Sigil's own paths have 3). */
export const MAX_PATH_LENGTH = 5;

export interface VerifyChainInput {
  leaf: Buffer;
  /** Untrusted certificates that may complete the path, in any order. */
  intermediates: readonly Buffer[];
  /** Trust anchors. */
  roots: readonly Buffer[];
  /** The time the path must be valid at (usually now). */
  at: Date;
}

export interface VerifiedChain {
  leaf: X509Certificate;
  /** leaf, intermediates…, root. */
  path: X509Certificate[];
}

interface Cert {
  x509: X509Certificate;
  fields: CertificateFields;
  label: string;
}

/**
 * Critical extensions a certificate may carry and still pass (§6.1.3 (a)(…) / §6.1.4 (o): an
 * unrecognised critical extension fails the path). BasicConstraints and KeyUsage are enforced
 * here; EKU and SAN are left to the caller (TLS stacks check purposes, spiffeIdOf reads SANs);
 * key identifiers carry no constraint. Name constraints are *not* processed, so a CA with a
 * critical nameConstraints extension is refused rather than silently trusted beyond its limits.
 */
const UNDERSTOOD = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
]);

function load(der: Buffer, label: string): Cert {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (e) {
    // OpenSSL's own text names its internals (and PEM routines for DER input); keep it as cause.
    throw new SigilError('bad_certificate', `${label} cannot be parsed as a DER X.509 certificate`, { cause: e });
  }
  return { x509, fields: readCertificate(der, 'bad_certificate', label), label };
}

/** Node's one-line-per-RDN name string, on one line; node gives undefined for an empty Name. */
function nameText(name: string | undefined): string {
  return (name ?? '').replace(/\n/g, ', ') || '<empty>';
}

function describe(c: Cert): string {
  return `${c.label} (subject "${nameText(c.x509.subject)}")`;
}

/** Did `issuer` sign `child`? Name/AKI/KeyUsage match first (cheap), then the signature. */
function issued(issuer: Cert, child: Cert): boolean {
  return child.x509.checkIssued(issuer.x509) && signedBy(child, issuer);
}

/** Does `issuer`'s key verify `child`'s signature? (False, not a throw, for a mismatched key type.) */
export function signedBy(child: { x509: X509Certificate }, issuer: { x509: X509Certificate }): boolean {
  try {
    return child.x509.verify(issuer.x509.publicKey);
  } catch {
    return false;
  }
}

/**
 * Build a path from `leaf` to one of `roots` through `intermediates`, then check every
 * certificate in it. Throws SigilError: `bad_certificate` (unparseable input),
 * `cert_expired` (the leaf is past notAfter), `chain_invalid` (everything else), with a
 * message naming the certificate and the failed check.
 */
export function verifyChain(input: VerifyChainInput): VerifiedChain {
  if (!(input.at instanceof Date) || Number.isNaN(input.at.getTime()))
    throw new TypeError('verifyChain: `at` must be a valid Date');
  const leaf = load(input.leaf, 'leaf certificate');
  const roots = input.roots.map((d, i) => load(d, `root ${i}`));
  const pool = input.intermediates.map((d, i) => load(d, `intermediate ${i}`));
  if (roots.length === 0) throw new SigilError('chain_invalid', 'no trusted roots configured');

  const path: Cert[] = [leaf];
  for (;;) {
    const current = path[path.length - 1]!;
    const root = roots.find((r) => issued(r, current));
    if (root !== undefined) {
      path.push(root);
      break;
    }
    // Prefer an intermediate that is also a valid CA now, so a renewed intermediate wins over
    // an expired one with the same key; otherwise take any issuer and report what is wrong.
    const candidates = pool.filter((c) => !path.includes(c) && issued(c, current));
    const next = candidates.find((c) => c.x509.ca && withinValidity(c, input.at)) ?? candidates[0];
    if (next === undefined) {
      // checkIssued() also refuses issuers that are not CAs or lack keyCertSign; if a supplied
      // certificate did sign `current`, say precisely what disqualifies it.
      const signer = [...roots, ...pool].find((c) => !path.includes(c) && signedBy(current, c));
      if (signer !== undefined) checkCertificate(signer, path.length, input.at);
      throw new SigilError(
        'chain_invalid',
        `no trusted root or supplied intermediate issued ${describe(current)}; its issuer is "${nameText(current.x509.issuer)}"`,
      );
    }
    path.push(next);
    if (path.length >= MAX_PATH_LENGTH) {
      throw new SigilError('chain_invalid', `certificate path is longer than ${MAX_PATH_LENGTH} certificates`);
    }
  }

  path.forEach((c, i) => checkCertificate(c, i, input.at));
  return { leaf: leaf.x509, path: path.map((c) => c.x509) };
}

function withinValidity(c: Cert, at: Date): boolean {
  return at >= c.fields.notBefore && at <= c.fields.notAfter;
}

/** Checks for the certificate at `index` of the path (0 = leaf); see RFC 5280 §6.1.3 and §6.1.4. */
function checkCertificate(c: Cert, index: number, at: Date): void {
  const { notBefore, notAfter, extensions } = c.fields;
  if (at > notAfter) {
    throw new SigilError(
      index === 0 ? 'cert_expired' : 'chain_invalid',
      `${describe(c)} expired at ${notAfter.toISOString()}`,
    );
  }
  if (at < notBefore)
    throw new SigilError('chain_invalid', `${describe(c)} is not valid before ${notBefore.toISOString()}`);
  for (const e of extensions) {
    if (e.critical && !UNDERSTOOD.has(e.oid)) {
      throw new SigilError(
        'chain_invalid',
        `${describe(c)} has critical extension ${e.oid}, which Sigil does not process`,
      );
    }
  }
  if (index === 0) return;
  // §6.1.4 (k): an issuer must be a CA; (l)/(m): pathLenConstraint counts the CAs below it,
  // which here are the intermediates at indexes 1..index-1; (n): keyCertSign if KeyUsage present.
  const bcExt = findExtension(extensions, OID.basicConstraints);
  const bc = bcExt === undefined ? undefined : decodeBasicConstraints(bcExt.value);
  if (!bc?.ca)
    throw new SigilError(
      'chain_invalid',
      `${describe(c)} issued a certificate but is not a CA (BasicConstraints cA is not TRUE)`,
    );
  if (bc.pathLen !== undefined && index - 1 > bc.pathLen) {
    throw new SigilError(
      'chain_invalid',
      `${describe(c)} has pathLenConstraint ${bc.pathLen} but ${index - 1} CA certificates follow it`,
    );
  }
  const kuExt = findExtension(extensions, OID.keyUsage);
  if (kuExt !== undefined && !decodeKeyUsage(kuExt.value).has(KEY_USAGE.keyCertSign)) {
    throw new SigilError('chain_invalid', `${describe(c)} issued a certificate but its KeyUsage lacks keyCertSign`);
  }
}

/**
 * The CA pin agents configure: `sha256:` + lowercase hex SHA-256 of the SubjectPublicKeyInfo DER
 * (the same quantity as HPKP's pin-sha256, RFC 7469 §2.4, in hex). Pinning the key rather than
 * the certificate survives re-issuing the CA certificate with the same key.
 * Accepts a certificate (DER, PEM bytes or X509Certificate), SPKI DER, or a KeyObject.
 */
export function spkiPin(input: Buffer | KeyObject | X509Certificate): string {
  let spki: Buffer;
  if (input instanceof X509Certificate) {
    spki = readCertificate(input.raw).spki;
  } else if (input instanceof KeyObject) {
    const pub = input.type === 'public' ? input : createPublicKey(input);
    spki = pub.export({ type: 'spki', format: 'der' });
  } else if (Buffer.isBuffer(input)) {
    // A PEM file read as a Buffer is common enough (the root CA on disk) to accept it here.
    const der = input.subarray(0, 11).toString('latin1') === '-----BEGIN ' ? fromPem(input.toString('utf8')) : input;
    // Certificate ::= SEQUENCE of 3 fields; SubjectPublicKeyInfo ::= SEQUENCE of 2.
    const r = new DerReader(der, 'bad_certificate', 'pin input');
    const n = r.children(r.expect(r.root(), TAG.SEQUENCE, 'certificate or SubjectPublicKeyInfo')).length;
    if (n === 3) spki = readCertificate(der).spki;
    else if (n === 2) spki = der;
    else throw new SigilError('bad_certificate', 'pin input is neither a certificate nor a SubjectPublicKeyInfo');
  } else {
    throw new TypeError('spkiPin: expected a Buffer, KeyObject or X509Certificate');
  }
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

/**
 * The SPIFFE ID of an X509-SVID: its URI SAN when that starts with spiffe://, else undefined.
 * A certificate with more than one URI SAN is rejected (`bad_certificate`), as X509-SVID §2
 * and §5.2 require of validators. Read from the DER, not from node's subjectAltName string,
 * whose escaping of ',' and ':' differs between Node versions.
 */
export function spiffeIdOf(cert: X509Certificate | Buffer): string | undefined {
  const der = cert instanceof X509Certificate ? cert.raw : cert;
  const san = findExtension(readCertificate(der).extensions, OID.subjectAltName);
  if (san === undefined) return undefined;
  const { uris } = decodeGeneralNames(san.value);
  if (uris.length > 1)
    throw new SigilError('bad_certificate', `certificate has ${uris.length} URI SANs; an X509-SVID has exactly one`);
  const uri = uris[0];
  return uri !== undefined && uri.startsWith('spiffe://') ? uri : undefined;
}

/**
 * The SPIFFE ID the issuer serving a trust bundle must present: `spiffe://<td>/sigil/issuer`,
 * where <td> is the trust domain in the pinned root's URI SAN. An exact match — a bot's ID
 * (`…/bot/<bot>/<id>`) can never equal it, whatever names are chosen.
 */
export function expectedIssuerId(root: X509Certificate | Buffer | string): string {
  const cert = root instanceof X509Certificate ? root : new X509Certificate(root);
  const uri = (cert.subjectAltName ?? '').split(', ').find((s) => s.startsWith('URI:spiffe://'));
  const td = uri ? new URL(uri.slice(4)).host : '';
  if (!td)
    throw new SigilError(
      'pin_mismatch',
      'the pinned root carries no spiffe://<trust-domain> URI; it is not a Sigil CA',
    );
  return `spiffe://${td}/sigil/issuer`;
}
