/**
 * X509-SVID issuance — the issuer's hot path.
 *
 * A CertificateIssuer is built once per CA. Everything that does not change between
 * certificates (signature AlgorithmIdentifier, issuer Name, AuthorityKeyIdentifier and the
 * constant extensions) is DER-encoded in the constructor; issueSvid() only encodes the
 * per-request fields, concatenates, and calls crypto.sign once. Profiles follow the SPIFFE
 * X509-SVID spec (§3 hierarchy, §4 constraints) on top of RFC 5280.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { SigilError } from '../errors.js';
import { certSigningKey, checkValidity, encodeTbs, signTbs, type CertSigningKey } from './certificate.js';
import {
  decodeBasicConstraints,
  decodeKeyUsage,
  decodeSubjectKeyIdentifier,
  findExtension,
  KEY_USAGE,
  readCertificate,
} from './cert-reader.js';
import { integer, oid, sequence, TAG, time } from './der.js';
import { DerReader } from './der-reader.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  extKeyUsage,
  keyUsage,
  subjectAltName,
  subjectKeyIdentifier,
} from './extensions.js';
import { encodeName, type NameSpec } from './name.js';
import { OID } from './oids.js';
import { checkSerial } from './serial.js';
import { parseSpiffeId, trustDomainId } from './spiffe-id.js';
import { keyIdentifier, readSpki } from './spki.js';

export interface CertificateIssuerOptions {
  /** The issuing CA's certificate (root or intermediate), DER. */
  caCertDer: Buffer;
  /** Its private key: ECDSA P-256 or P-384. */
  caKey: KeyObject;
}

export interface SvidRequest {
  /** Positive, at most 20 octets encoded (see serial.ts randomSerial). */
  serial: Buffer;
  /**
   * SubjectPublicKeyInfo DER, copied as-is into the certificate. Must come from a CSR that
   * parseCsr() accepted (self-signature verified, key type checked); only its structure and
   * algorithm are re-checked here.
   */
  spkiDer: Buffer;
  /** spiffe://<td>/<path>; leaf SPIFFE IDs must have a path (X509-SVID §3.1). */
  spiffeId: string;
  notBefore: Date;
  notAfter: Date;
  /**
   * Subject Name, e.g. [['O', 'Acme'], ['CN', 'edge-7']]. When omitted or empty, the subject is
   * the empty Name and subjectAltName is marked critical (RFC 5280 §4.1.2.6, X509-SVID §3.1).
   */
  subject?: NameSpec;
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
}

/**
 * A TLS *client* certificate that is not an SVID: what PostgreSQL/MySQL (CN = database user)
 * and Kubernetes (CN = user, each O = a group) authenticate by. It carries no SPIFFE ID, so it
 * can never be presented as the machine's identity (renewal, SPIFFE-aware verifiers), and
 * clientAuth only, so it cannot serve TLS.
 */
export interface ClientCertRequest {
  serial: Buffer;
  /** SubjectPublicKeyInfo DER, already checked by the caller (readSpki/classifySpki). */
  spkiDer: Buffer;
  /** Non-empty: the subject is the credential here (RFC 5280 §4.1.2.6). */
  subject: NameSpec;
  notBefore: Date;
  notAfter: Date;
}

export interface CaRequest {
  serial: Buffer;
  spkiDer: Buffer;
  /** A CA's subject must not be empty (RFC 5280 §4.1.2.6). */
  subject: NameSpec;
  notBefore: Date;
  notAfter: Date;
  /** pathLenConstraint (§4.2.1.9); default 0: the new CA may issue only leaves. */
  pathLen?: number;
  /** When given, adds URI SAN spiffe://<td>, making the CA an SVID itself (X509-SVID §3.2). */
  trustDomain?: string;
}

// KeyUsage profiles. RSA leaves also get keyEncipherment for RSA key transport in TLS 1.2;
// X509-SVID §4.3 allows it and forbids keyCertSign/cRLSign on leaves.
const KU_LEAF_EC = keyUsage([KEY_USAGE.digitalSignature]);
const KU_LEAF_RSA = keyUsage([KEY_USAGE.digitalSignature, KEY_USAGE.keyEncipherment]);
const KU_CA = keyUsage([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign]);
const BC_LEAF = basicConstraints(false);
// X509-SVID §4.4: when EKU is present, both serverAuth and clientAuth.
const EKU_LEAF = extKeyUsage([OID.serverAuth, OID.clientAuth]);
const EKU_CLIENT = extKeyUsage([OID.clientAuth]);
const EMPTY_NAME = sequence();

// Raw OID TLVs compared against the SPKI's AlgorithmIdentifier without decoding it.
const OID_EC = oid(OID.ecPublicKey);
const OID_RSA = oid(OID.rsaEncryption);
const OID_P256 = oid(OID.secp256r1);
const OID_P384 = oid(OID.secp384r1);

export class CertificateIssuer {
  readonly caCertDer: Buffer;
  /** The CA's own expiry: a certificate outliving it fails validation, so callers clamp to it. */
  readonly caNotAfter: Date;
  private readonly signingKey: CertSigningKey;
  private readonly issuerName: Buffer;
  private readonly akiExt: Buffer;
  private readonly caPathLen: number | undefined;

  constructor(opts: CertificateIssuerOptions) {
    const fields = readCertificate(opts.caCertDer, 'config_invalid', 'CA certificate');
    this.signingKey = certSigningKey(opts.caKey);
    const bcExt = findExtension(fields.extensions, OID.basicConstraints);
    const bc = bcExt && decodeBasicConstraints(bcExt.value, 'config_invalid');
    if (!bc?.ca) throw new SigilError('config_invalid', 'CA certificate does not have BasicConstraints cA=TRUE');
    const kuExt = findExtension(fields.extensions, OID.keyUsage);
    if (kuExt && !decodeKeyUsage(kuExt.value, 'config_invalid').has(KEY_USAGE.keyCertSign)) {
      throw new SigilError('config_invalid', 'CA certificate KeyUsage lacks keyCertSign');
    }
    const certKey = createPublicKey({ key: Buffer.from(fields.spki), format: 'der', type: 'spki' });
    if (!createPublicKey(opts.caKey).equals(certKey)) {
      throw new SigilError('config_invalid', 'CA private key does not match the CA certificate');
    }
    this.caCertDer = Buffer.from(opts.caCertDer);
    this.caNotAfter = fields.notAfter;
    this.caPathLen = bc.pathLen;
    // Byte-exact copy of the CA's subject: name chaining (§4.1.2.4) and AKI = CA's SKI
    // (§4.2.1.1), or SHA-1 of its key when the CA has no SKI, so verifiers can pick the key.
    this.issuerName = Buffer.from(fields.subject);
    const skiExt = findExtension(fields.extensions, OID.subjectKeyIdentifier);
    const caKeyId = skiExt
      ? decodeSubjectKeyIdentifier(skiExt.value, 'config_invalid')
      : keyIdentifier(readSpki(Buffer.from(fields.spki), 'config_invalid', 'CA public key').publicKey);
    this.akiExt = authorityKeyIdentifier(caKeyId);
  }

  /** Signature hash the CA uses (sha256 for P-256, sha384 for P-384). */
  get hash(): 'sha256' | 'sha384' {
    return this.signingKey.hash;
  }

  /** Issue a leaf X509-SVID; returns the certificate DER. Synchronous. */
  issueSvid(req: SvidRequest): Buffer {
    checkSerial(req.serial);
    checkValidity(req.notBefore, req.notAfter);
    if (parseSpiffeId(req.spiffeId).path === '') {
      throw new SigilError('bad_request', `leaf SPIFFE ID "${req.spiffeId}" must have a path (X509-SVID §3.1)`);
    }
    const key = inspectSpki(req.spkiDer);
    const hasSubject = req.subject !== undefined && req.subject.length > 0;
    return signTbs(
      encodeTbs({
        serial: integer(req.serial),
        algorithmId: this.signingKey.algorithmId,
        issuer: this.issuerName,
        notBefore: time(req.notBefore),
        notAfter: time(req.notAfter),
        subject: hasSubject ? encodeName(req.subject!) : EMPTY_NAME,
        spki: req.spkiDer,
        extensions: [
          BC_LEAF,
          key.rsa ? KU_LEAF_RSA : KU_LEAF_EC,
          EKU_LEAF,
          subjectKeyIdentifier(keyIdentifier(key.bits)),
          this.akiExt,
          subjectAltName({ uris: [req.spiffeId], dnsNames: req.dnsNames, ipAddresses: req.ipAddresses }, !hasSubject),
        ],
      }),
      this.signingKey,
    );
  }

  /** Issue a client certificate (see {@link ClientCertRequest}); returns the DER. Synchronous. */
  issueClientCert(req: ClientCertRequest): Buffer {
    checkSerial(req.serial);
    checkValidity(req.notBefore, req.notAfter);
    if (req.subject.length === 0) throw new TypeError('a client certificate needs a non-empty subject');
    const key = inspectSpki(req.spkiDer);
    return this.signNamed(req, [
      BC_LEAF,
      key.rsa ? KU_LEAF_RSA : KU_LEAF_EC,
      EKU_CLIENT,
      subjectKeyIdentifier(keyIdentifier(key.bits)),
      this.akiExt,
    ]);
  }

  /** Issue a subordinate CA certificate (X509-SVID §3.2 signing certificate). */
  issueCa(req: CaRequest): Buffer {
    checkSerial(req.serial);
    checkValidity(req.notBefore, req.notAfter);
    if (req.subject.length === 0) throw new TypeError('a CA certificate needs a non-empty subject (RFC 5280 §4.1.2.6)');
    const pathLen = req.pathLen ?? 0;
    // §4.2.1.9: pathLenConstraint bounds the CAs below this one; honour our own when delegating.
    if (this.caPathLen !== undefined && pathLen > this.caPathLen - 1) {
      throw new TypeError(`this CA has pathLen ${this.caPathLen}; it cannot issue a CA with pathLen ${pathLen}`);
    }
    const key = inspectSpki(req.spkiDer);
    const extensions = [
      basicConstraints(true, pathLen),
      KU_CA,
      subjectKeyIdentifier(keyIdentifier(key.bits)),
      this.akiExt,
    ];
    if (req.trustDomain !== undefined)
      extensions.push(subjectAltName({ uris: [trustDomainId(req.trustDomain)] }, false));
    return this.signNamed(req, extensions);
  }
  /** TBS with a named subject (client and CA certificates; issueSvid keeps its own fast path). */
  private signNamed(
    req: { serial: Buffer; notBefore: Date; notAfter: Date; subject: NameSpec; spkiDer: Buffer },
    extensions: Buffer[],
  ): Buffer {
    return signTbs(
      encodeTbs({
        serial: integer(req.serial),
        algorithmId: this.signingKey.algorithmId,
        issuer: this.issuerName,
        notBefore: time(req.notBefore),
        notAfter: time(req.notAfter),
        subject: encodeName(req.subject),
        spki: req.spkiDer,
        extensions,
      }),
      this.signingKey,
    );
  }
}

/**
 * Structural check of the subject SPKI plus what the profile needs from it: whether it is RSA
 * (KeyUsage) and the public key bits (SubjectKeyIdentifier). Compares raw OID bytes instead of
 * decoding them, because it runs once per certificate.
 */
function inspectSpki(spki: Buffer): { rsa: boolean; bits: Buffer } {
  if (!Buffer.isBuffer(spki)) throw new TypeError('spkiDer must be a Buffer');
  const r = new DerReader(spki, 'unsupported_key', 'subject public key');
  const [alg, key, extra] = r.children(r.expect(r.root(), TAG.SEQUENCE, 'SubjectPublicKeyInfo'));
  if (extra !== undefined) r.fail('SubjectPublicKeyInfo has extra fields');
  const [algOid, params] = r.children(r.expect(alg, TAG.SEQUENCE, 'AlgorithmIdentifier'));
  const algBytes = r.bytes(r.expect(algOid, TAG.OID, 'key algorithm'));
  const bits = r.bitString(r.expect(key, TAG.BIT_STRING, 'subjectPublicKey'));
  if (bits.unusedBits !== 0) r.fail('subjectPublicKey has unused bits');
  if (algBytes.equals(OID_RSA)) return { rsa: true, bits: bits.bytes };
  if (algBytes.equals(OID_EC) && params !== undefined) {
    const curve = r.bytes(params);
    if (curve.equals(OID_P256) || curve.equals(OID_P384)) return { rsa: false, bits: bits.bytes };
  }
  // Names the algorithm/curve the slow way, only on the error path.
  const f = readSpki(spki, 'unsupported_key', 'subject public key');
  return r.fail(
    `algorithm ${f.algorithm}${f.curve ? ` curve ${f.curve}` : ''} is not accepted (EC P-256, P-384 or RSA)`,
  );
}
