/**
 * Creating Sigil's own CA hierarchy: a self-signed root, an intermediate that signs SVIDs, and
 * the issuer's TLS server certificate. All keys are ECDSA P-256. The certificates are SPIFFE
 * signing certificates (X509-SVID §3.2): cA=TRUE, keyCertSign, and the trust domain's own ID
 * spiffe://<td> (no path) as URI SAN.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { certSigningKey, encodeTbs, signTbs } from './certificate.js';
import { integer, time } from './der.js';
import { basicConstraints, keyUsage, subjectAltName, subjectKeyIdentifier } from './extensions.js';
import { KEY_USAGE } from './cert-reader.js';
import { CertificateIssuer } from './issue.js';
import { encodeName, type NameSpec } from './name.js';
import { randomSerial } from './serial.js';
import { checkTrustDomain, trustDomainId } from './spiffe-id.js';
import { keyIdentifier, readSpki } from './spki.js';

export interface CaMaterial {
  certDer: Buffer;
  /** Private key (ECDSA P-256). */
  key: KeyObject;
}

const DAY_MS = 86_400_000;
/** Backdate notBefore so machines whose clocks run a little slow accept new certificates. */
const BACKDATE_MS = 5 * 60_000;

export const DEFAULT_ROOT_TTL_DAYS = 3650;
export const DEFAULT_INTERMEDIATE_TTL_DAYS = 1825;

function caName(kind: string, trustDomain: string, commonName: string | undefined): NameSpec {
  const cn = commonName ?? `${trustDomain} ${kind}`;
  // ub-common-name is 64 (RFC 5280 Appendix A.1); long trust domains fall back to a generic CN.
  return [
    ['O', 'Sigil'],
    ['CN', [...cn].length <= 64 ? cn : `Sigil ${kind}`],
  ];
}

function checkTtlDays(ttlDays: number): void {
  if (!Number.isFinite(ttlDays) || ttlDays <= 0)
    throw new TypeError(`ttlDays must be a positive number, got ${ttlDays}`);
}

function newKey(): { key: KeyObject; spkiDer: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { key: privateKey, spkiDer: publicKey.export({ type: 'spki', format: 'der' }) };
}

/**
 * A self-signed root CA (RFC 5280 §3.2 self-issued + self-signed): BasicConstraints cA=TRUE
 * critical without pathLen, KeyUsage keyCertSign+cRLSign critical, SKI, URI SAN spiffe://<td>.
 * AuthorityKeyIdentifier is omitted, as §4.2.1.1 permits for self-signed certificates.
 */
export function createRootCa(opts: { trustDomain: string; commonName?: string; ttlDays?: number }): CaMaterial {
  checkTrustDomain(opts.trustDomain, 'config_invalid');
  const ttlDays = opts.ttlDays ?? DEFAULT_ROOT_TTL_DAYS;
  checkTtlDays(ttlDays);
  const { key, spkiDer } = newKey();
  const signingKey = certSigningKey(key);
  const name = encodeName(caName('root CA', opts.trustDomain, opts.commonName));
  const now = Date.now();
  const tbs = encodeTbs({
    serial: integer(randomSerial()),
    algorithmId: signingKey.algorithmId,
    issuer: name,
    notBefore: time(new Date(now - BACKDATE_MS)),
    notAfter: time(new Date(now + ttlDays * DAY_MS)),
    subject: name,
    spki: spkiDer,
    extensions: [
      basicConstraints(true),
      keyUsage([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign]),
      subjectKeyIdentifier(keyIdentifier(readSpki(spkiDer).publicKey)),
      subjectAltName({ uris: [trustDomainId(opts.trustDomain)] }, false),
    ],
  });
  return { certDer: signTbs(tbs, signingKey), key };
}

/**
 * An intermediate CA signed by `root`: pathLen 0 (it signs leaves only), 5 years by default,
 * never outliving the root (its notAfter is clamped to the root's).
 */
export function createIntermediateCa(
  root: CaMaterial,
  opts: { trustDomain: string; commonName?: string; ttlDays?: number },
): CaMaterial {
  checkTrustDomain(opts.trustDomain, 'config_invalid');
  const ttlDays = opts.ttlDays ?? DEFAULT_INTERMEDIATE_TTL_DAYS;
  checkTtlDays(ttlDays);
  const issuer = new CertificateIssuer({ caCertDer: root.certDer, caKey: root.key });
  const { key, spkiDer } = newKey();
  const now = Date.now();
  const certDer = issuer.issueCa({
    serial: randomSerial(),
    spkiDer,
    subject: caName('intermediate CA', opts.trustDomain, opts.commonName),
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(Math.min(now + ttlDays * DAY_MS, issuer.caNotAfter.getTime())),
    pathLen: 0,
    trustDomain: opts.trustDomain,
  });
  return { certDer, key };
}

export interface ServerCertOptions {
  trustDomain: string;
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  ttlDays: number;
  /** The TLS key's SubjectPublicKeyInfo, DER. */
  spkiDer: Buffer;
}

/**
 * The issuer's own TLS certificate: a leaf SVID for spiffe://<td>/sigil/issuer with the DNS and
 * IP SANs agents connect to, EKU serverAuth+clientAuth (the issuer is also an MQTT client).
 * Agents pin the CA, not this certificate, so it can be rotated freely. Clamped to the CA's life.
 */
export function issueServerCert(issuer: CertificateIssuer, opts: ServerCertOptions): Buffer {
  checkTrustDomain(opts.trustDomain, 'config_invalid');
  checkTtlDays(opts.ttlDays);
  const now = Date.now();
  return issuer.issueSvid({
    serial: randomSerial(),
    spkiDer: opts.spkiDer,
    spiffeId: `${trustDomainId(opts.trustDomain)}/sigil/issuer`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(Math.min(now + opts.ttlDays * DAY_MS, issuer.caNotAfter.getTime())),
    subject: [
      ['O', 'Sigil'],
      ['CN', 'Sigil issuer'],
    ],
    dnsNames: opts.dnsNames,
    ipAddresses: opts.ipAddresses,
  });
}
