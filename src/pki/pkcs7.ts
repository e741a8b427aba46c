/**
 * PKCS#7 / CMS SignedData (RFC 2315, RFC 5652 §5) with one signer and embedded content: what
 * AWS (`/latest/dynamic/instance-identity/pkcs7` and `/rsa2048`) and Azure
 * (`/metadata/attested/document`) sign their instance documents with.
 *
 * Parsing uses pkijs (BER: AWS streams its SignedData with indefinite lengths); signatures are
 * checked with node:crypto, which — unlike WebCrypto — has DSA, which AWS's `pkcs7` document
 * uses with SHA-1.
 *
 * Strictness: a signature covers only the signed attributes (or the content); the rest of a
 * SignedData — versions, the digestAlgorithms set, the signer identifier, the algorithm
 * fields — is unsigned. Every such field is therefore checked to hold exactly the value it
 * must, so that no byte of an accepted SignedData can be changed without the change being
 * refused: nothing that is not verified is ever read, and nothing unverified may differ from
 * what the verification implies. Certificates a SignedData carries are returned as their exact
 * bytes; what they are trusted for is the caller's decision (and the caller must use each one).
 */
import { createHash, constants, verify as cryptoVerify, type KeyObject, type X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { SigilError, type ErrorCode } from '../errors.js';
import { checkBerStructure } from './ber-structure.js';
import { findExtension, readCertificate, decodeSubjectKeyIdentifier } from './cert-reader.js';
import { OID } from './oids.js';

export type HashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

/** RFC 5652 §4, §5.1, §11 object identifiers. */
export const CMS_OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
} as const;

const DIGEST_OIDS: Record<string, HashName> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
  // Azure IMDS names the signature algorithm where the digest algorithm belongs (as some
  // Windows signers do); its hash is what is meant, and what Go's and OpenSSL's parsers take.
  '1.2.840.113549.1.1.5': 'sha1',
  [OID.sha256WithRSAEncryption]: 'sha256',
  [OID.sha384WithRSAEncryption]: 'sha384',
  [OID.sha512WithRSAEncryption]: 'sha512',
};

type KeyKind = 'rsa' | 'dsa' | 'ec';
/** SignerInfo.signatureAlgorithm: the key type, and the hash when the OID names one. */
const SIGNATURE_OIDS: Record<string, { key: KeyKind; hash?: HashName }> = {
  [OID.rsaEncryption]: { key: 'rsa' },
  '1.2.840.113549.1.1.5': { key: 'rsa', hash: 'sha1' },
  [OID.sha256WithRSAEncryption]: { key: 'rsa', hash: 'sha256' },
  [OID.sha384WithRSAEncryption]: { key: 'rsa', hash: 'sha384' },
  [OID.sha512WithRSAEncryption]: { key: 'rsa', hash: 'sha512' },
  '1.2.840.10040.4.1': { key: 'dsa' },
  '1.2.840.10040.4.3': { key: 'dsa', hash: 'sha1' },
  '2.16.840.1.101.3.4.3.2': { key: 'dsa', hash: 'sha256' },
  [OID.ecdsaWithSHA256]: { key: 'ec', hash: 'sha256' },
  [OID.ecdsaWithSHA384]: { key: 'ec', hash: 'sha384' },
  [OID.ecdsaWithSHA512]: { key: 'ec', hash: 'sha512' },
};

export interface SignerInfoFields {
  /** IssuerAndSerialNumber: the exact Name DER and INTEGER content octets; or a subjectKeyIdentifier. */
  issuer: Buffer | undefined;
  serial: Buffer | undefined;
  subjectKeyId: Buffer | undefined;
  digest: HashName;
  signatureAlgorithm: string;
  signature: Buffer;
  /** The signed attributes as signed (DER, SET OF tag), or undefined when the content itself is signed. */
  signedAttributes: Buffer | undefined;
  /** The messageDigest attribute (with signed attributes). */
  messageDigest: Buffer | undefined;
}

export interface ParsedSignedData {
  /** The encapsulated content (eContent), its octets concatenated when BER-segmented. */
  content: Buffer;
  /** Embedded certificates, exact bytes, in order. */
  certificates: Buffer[];
  signer: SignerInfoFields;
}

export interface Pkcs7Codes {
  /** The structure does not parse, or holds a value it may not. */
  malformed: ErrorCode;
  /** The signature, digest or signer identification does not verify. */
  invalid: ErrorCode;
}

const bytes = (v: ArrayBuffer | Uint8Array): Buffer => Buffer.from(v instanceof Uint8Array ? v : new Uint8Array(v));

/** AlgorithmIdentifier parameters must be absent or NULL for every algorithm accepted here. */
function algorithmOid(alg: pkijs.AlgorithmIdentifier, fail: (m: string) => never, what: string): string {
  const p = alg.algorithmParams as asn1js.AsnType | undefined;
  if (p !== undefined && !(p instanceof asn1js.Null))
    fail(`${what} has parameters; only absent or NULL parameters are accepted`);
  if (p instanceof asn1js.Null && p.valueBeforeDecodeView.byteLength !== 2) fail(`${what} has a malformed NULL`);
  return alg.algorithmId;
}

/** The eContent OCTET STRING: primitive, or (BER) constructed of primitive segments. */
function octets(node: asn1js.AsnType, fail: (m: string) => never): Buffer {
  if (!(node instanceof asn1js.OctetString)) fail('eContent is not an OCTET STRING');
  if (!node.idBlock.isConstructed) return bytes(node.valueBlock.valueHexView);
  const parts: Buffer[] = [];
  for (const seg of node.valueBlock.value) {
    if (!(seg instanceof asn1js.OctetString) || seg.idBlock.isConstructed)
      fail('eContent segments must be primitive OCTET STRINGs');
    parts.push(bytes(seg.valueBlock.valueHexView));
  }
  return Buffer.concat(parts);
}

/** Parse a SignedData ContentInfo (DER or BER). Every failure is `codes.malformed`, naming the field. */
export function parseSignedData(der: Buffer, codes: Pkcs7Codes, what = 'PKCS#7 signature'): ParsedSignedData {
  const fail: (m: string) => never = (m) => {
    throw new SigilError(codes.malformed, `${what}: ${m}`);
  };
  checkBerStructure(der, (m) => fail(`not strict BER: ${m}`));
  const ab = new Uint8Array(der).buffer;
  let asn1: ReturnType<typeof asn1js.fromBER>;
  try {
    asn1 = asn1js.fromBER(ab);
  } catch (e) {
    // asn1js reports most errors in its result but throws from some value decoders (a
    // GeneralizedTime whose text is not a time: "Wrong input string for conversion").
    return fail(`not BER-encoded ASN.1 (${(e as Error).message.slice(0, 120)})`);
  }
  if (asn1.offset === -1) fail(`not BER-encoded ASN.1 (${asn1.result.error || 'parse error'})`);
  if (asn1.offset !== der.length) fail(`${der.length - asn1.offset} trailing bytes after the ContentInfo`);

  let ci: pkijs.ContentInfo;
  let sd: pkijs.SignedData;
  try {
    ci = new pkijs.ContentInfo({ schema: asn1.result });
  } catch {
    return fail('not a ContentInfo');
  }
  if (ci.contentType !== CMS_OID.signedData) fail(`content type ${ci.contentType} is not signedData`);
  try {
    sd = new pkijs.SignedData({ schema: ci.content });
  } catch (e) {
    return fail(`not a SignedData (${(e as Error).message.slice(0, 120)})`);
  }

  if (sd.signerInfos.length !== 1) fail(`${sd.signerInfos.length} signers; exactly one is accepted`);
  const si = sd.signerInfos[0]!;
  if (sd.crls !== undefined && sd.crls.length > 0) fail('carries CRLs, which are not accepted');
  if (si.unsignedAttrs !== undefined) fail('carries unsigned attributes, which are not accepted');

  // RFC 5652 §5.1 / §5.3: the versions follow from the choices made.
  const bySki = !(si.sid instanceof pkijs.IssuerAndSerialNumber);
  const eType = sd.encapContentInfo.eContentType;
  if (eType !== CMS_OID.data) fail(`encapsulated content type ${eType} is not id-data`);
  if (sd.version !== (bySki ? 3 : 1)) fail(`SignedData version ${sd.version} (expected ${bySki ? 3 : 1})`);
  if (si.version !== (bySki ? 3 : 1)) fail(`SignerInfo version ${si.version} (expected ${bySki ? 3 : 1})`);

  const digestOid = algorithmOid(si.digestAlgorithm, fail, 'digestAlgorithm');
  const digest = DIGEST_OIDS[digestOid] ?? fail(`digest algorithm ${digestOid} is not supported`);
  // digestAlgorithms must name exactly the signer's algorithm: any other value is unverified noise.
  if (sd.digestAlgorithms.length !== 1)
    fail(`digestAlgorithms has ${sd.digestAlgorithms.length} entries (expected the signer's one)`);
  const listed = sd.digestAlgorithms[0]!;
  if (algorithmOid(listed, fail, 'digestAlgorithms') !== digestOid)
    fail("digestAlgorithms does not name the signer's digest algorithm");
  if ((listed.algorithmParams === undefined) !== (si.digestAlgorithm.algorithmParams === undefined))
    fail("digestAlgorithms and the signer's digestAlgorithm differ in their parameters");
  const signatureAlgorithm = algorithmOid(si.signatureAlgorithm, fail, 'signatureAlgorithm');
  if (SIGNATURE_OIDS[signatureAlgorithm] === undefined)
    fail(`signature algorithm ${signatureAlgorithm} is not supported`);

  const eContent = sd.encapContentInfo.eContent;
  if (eContent === undefined) fail('no encapsulated content (a detached signature)');
  const content = octets(eContent, fail);

  let issuer: Buffer | undefined;
  let serial: Buffer | undefined;
  let subjectKeyId: Buffer | undefined;
  if (si.sid instanceof pkijs.IssuerAndSerialNumber) {
    issuer = bytes(si.sid.issuer.valueBeforeDecode);
    serial = bytes(si.sid.serialNumber.valueBlock.valueHexView);
    if (issuer.length === 0 || serial.length === 0) fail('malformed IssuerAndSerialNumber');
  } else {
    const ski = (si.sid as asn1js.Constructed).valueBlock.value[0];
    if (!(ski instanceof asn1js.OctetString) || ski.idBlock.isConstructed)
      fail('malformed subjectKeyIdentifier signer id');
    subjectKeyId = bytes(ski.valueBlock.valueHexView);
  }

  let signedAttributes: Buffer | undefined;
  let messageDigest: Buffer | undefined;
  if (si.signedAttrs !== undefined) {
    // pkijs keeps the attributes' original bytes with the [0] IMPLICIT tag already replaced by
    // SET OF (0x31): what RFC 5652 §5.4 says the signature covers.
    signedAttributes = bytes(si.signedAttrs.encodedValue);
    const one = (type: string, name: string): asn1js.AsnType => {
      const found = si.signedAttrs!.attributes.filter((a) => a.type === type);
      // pkijs leaves `values` undefined when an Attribute's attrValues is not a SET (RFC 5652
      // §5.3 Attribute ::= SEQUENCE { attrType, attrValues SET OF }): refuse it, don't crash.
      if (found.length !== 1 || found[0]!.values?.length !== 1)
        fail(`signed attributes need exactly one ${name} with one value`);
      return found[0]!.values[0] as asn1js.AsnType;
    };
    const ct = one(CMS_OID.contentType, 'contentType');
    if (!(ct instanceof asn1js.ObjectIdentifier) || ct.valueBlock.toString() !== eType)
      fail('the contentType attribute does not match the encapsulated content type');
    const md = one(CMS_OID.messageDigest, 'messageDigest');
    if (!(md instanceof asn1js.OctetString) || md.idBlock.isConstructed)
      fail('the messageDigest attribute is not a primitive OCTET STRING');
    messageDigest = bytes(md.valueBlock.valueHexView);
  }

  const signature = bytes(si.signature.valueBlock.valueHexView);
  if (si.signature.idBlock.isConstructed || signature.length === 0) fail('malformed signature value');

  return {
    content,
    certificates: rawCertificates(ci.content as asn1js.AsnType, fail),
    signer: { issuer, serial, subjectKeyId, digest, signatureAlgorithm, signature, signedAttributes, messageDigest },
  };
}

/** SignedData.certificates ([0] IMPLICIT SET OF), each as the exact bytes it was sent as. */
function rawCertificates(signedData: asn1js.AsnType, fail: (m: string) => never): Buffer[] {
  if (!(signedData instanceof asn1js.Sequence)) return fail('SignedData is not a SEQUENCE');
  const set = signedData.valueBlock.value.find((n) => n.idBlock.tagClass === 3 && n.idBlock.tagNumber === 0) as
    asn1js.Constructed | undefined;
  if (set === undefined) return [];
  return set.valueBlock.value.map((c) => {
    if (!(c instanceof asn1js.Sequence)) fail('only X.509 certificates may be embedded');
    return bytes(c.valueBeforeDecodeView);
  });
}

function keyKind(key: KeyObject): KeyKind | undefined {
  const t = key.asymmetricKeyType;
  return t === 'rsa' ? 'rsa' : t === 'dsa' ? 'dsa' : t === 'ec' ? 'ec' : undefined;
}

/** Whether `certDer` is the certificate the signer identifier names (issuer + serial, or subjectKeyIdentifier). */
export function isSignerCertificate(sd: ParsedSignedData, certDer: Buffer, code: ErrorCode): boolean {
  const s = sd.signer;
  const fields = readCertificate(certDer, code, 'embedded certificate');
  if (s.issuer !== undefined) return s.issuer.equals(fields.issuer) && s.serial!.equals(fields.serial);
  const ext = findExtension(fields.extensions, OID.subjectKeyIdentifier);
  return ext !== undefined && decodeSubjectKeyIdentifier(ext.value, code).equals(s.subjectKeyId!);
}

export interface VerifySignerOptions {
  codes: Pkcs7Codes;
  /** Digests accepted (e.g. ['sha1'] for AWS's DSA document, ['sha256'] for its RSA one). */
  digests: readonly HashName[];
  what?: string;
}

/**
 * Verify that `cert` signed `sd`: the signer identifier names `cert` (issuer + serial, or its
 * subjectKeyIdentifier), the algorithms agree with each other and with the key, the
 * messageDigest attribute (if any) is the digest of the content, and the signature verifies.
 * Throws `codes.invalid` naming the failed check.
 */
export function verifySigner(sd: ParsedSignedData, cert: X509Certificate, o: VerifySignerOptions): void {
  const what = o.what ?? 'PKCS#7 signature';
  const fail: (m: string) => never = (m) => {
    throw new SigilError(o.codes.invalid, `${what}: ${m}`);
  };
  const s = sd.signer;
  if (!isSignerCertificate(sd, cert.raw, o.codes.invalid))
    fail(
      `the signer (${s.issuer !== undefined ? 'issuer and serial number' : 'subjectKeyIdentifier'}) is not the expected certificate`,
    );
  if (!o.digests.includes(s.digest))
    fail(`digest ${s.digest} is not accepted here (accepted: ${o.digests.join(', ')})`);
  const alg = SIGNATURE_OIDS[s.signatureAlgorithm]!;
  const key = cert.publicKey;
  const kind = keyKind(key);
  if (alg.key !== kind)
    fail(
      `signature algorithm ${s.signatureAlgorithm} does not fit the signer's ${key.asymmetricKeyType ?? 'unknown'} key`,
    );
  if (alg.hash !== undefined && alg.hash !== s.digest)
    fail(`signature algorithm ${s.signatureAlgorithm} does not use the digest algorithm ${s.digest}`);

  let data = sd.content;
  if (s.signedAttributes !== undefined) {
    const digest = createHash(s.digest).update(sd.content).digest();
    if (!digest.equals(s.messageDigest!))
      fail('the messageDigest attribute is not the digest of the content (the document was altered)');
    data = s.signedAttributes;
  }
  let ok = false;
  try {
    ok =
      kind === 'rsa'
        ? cryptoVerify(s.digest, data, { key, padding: constants.RSA_PKCS1_PADDING }, s.signature)
        : cryptoVerify(s.digest, data, { key, dsaEncoding: 'der' }, s.signature);
  } catch {
    ok = false;
  }
  if (!ok)
    fail(`the ${alg.key.toUpperCase()}/${s.digest.toUpperCase()} signature does not verify with the signer's key`);
}
