/**
 * PKCS#10 certificate signing requests (RFC 2986).
 *
 * parseCsr() is what the issuer runs on every join and renew, on bytes an agent sent: it walks
 * the DER strictly, checks the key type against Sigil's policy, and verifies the self-signature
 * over the *exact* CertificationRequestInfo bytes (RFC 2986 §4.2) with node:crypto. The CSR
 * proves possession of the key; the identity in the certificate comes from attestation, not from
 * the CSR, so the subject and URIs are returned for the caller to check, never trusted.
 */
import { verify, type KeyObject } from 'node:crypto';
import { SigilError } from '../errors.js';
import type { Signer } from '../keystore/signer.js';
import { decodeGeneralNames, findExtension, readExtensions } from './cert-reader.js';
import { bitString, implicit, integer, oid, sequence, TAG } from './der.js';
import { DerReader, type DerNode } from './der-reader.js';
import { importSpki, type PublicKeyImporter } from './key-cache.js';
import { encodeName } from './name.js';
import { OID } from './oids.js';
import { parsePem } from './pem.js';
import { classifySpki, readSpki, type KeyType } from './spki.js';

/** Larger inputs are refused before any parsing: an RSA-4096 CSR with extensions is ~2 KiB. */
export const MAX_CSR_BYTES = 16 * 1024;
const MIN_RSA_BITS = 2048;
/**
 * RSA verification costs grow with the modulus (quadratically) and with the exponent's bit
 * length (linearly): a CSR is verified before the sender is authenticated, so both are capped.
 * 4096 bits is the largest key a TPM or PKCS#11 token makes in practice; e must be odd and
 * 3 ≤ e < 2^32 (65537 everywhere; NIST SP 800-56B Rev. 2 §6.2.1 asks for 2^16 < e < 2^256,
 * we only bound it from above to keep the cost flat, and OpenSSL itself refuses e > 64 bits
 * only for moduli ≤ 3072 bits).
 */
const MAX_RSA_BITS = 4096;
const MAX_RSA_EXPONENT = 2n ** 32n;

export interface ParsedCsr {
  /** SubjectPublicKeyInfo exactly as in the CSR; pass it unchanged to issueSvid. */
  spkiDer: Buffer;
  publicKey: KeyObject;
  keyType: KeyType;
  /** URI SANs requested in the extensionRequest attribute (RFC 2985 §5.4.2), if any. */
  uris: string[];
  /** The requested subject Name, DER as sent. */
  subjectDer: Buffer;
}

const SIGNATURE_ALGORITHMS: Record<string, { family: 'ec' | 'rsa'; hash: string; name: string }> = {
  [OID.ecdsaWithSHA256]: { family: 'ec', hash: 'sha256', name: 'ecdsa-with-SHA256' },
  [OID.ecdsaWithSHA384]: { family: 'ec', hash: 'sha384', name: 'ecdsa-with-SHA384' },
  [OID.ecdsaWithSHA512]: { family: 'ec', hash: 'sha512', name: 'ecdsa-with-SHA512' },
  [OID.sha256WithRSAEncryption]: { family: 'rsa', hash: 'sha256', name: 'sha256WithRSAEncryption' },
  [OID.sha384WithRSAEncryption]: { family: 'rsa', hash: 'sha384', name: 'sha384WithRSAEncryption' },
  [OID.sha512WithRSAEncryption]: { family: 'rsa', hash: 'sha512', name: 'sha512WithRSAEncryption' },
};

function toDer(input: string | Buffer): Buffer {
  if (typeof input !== 'string' && !Buffer.isBuffer(input)) throw new TypeError('CSR must be a string or a Buffer');
  if (input.length > MAX_CSR_BYTES) {
    throw new SigilError('bad_csr', `CSR is ${input.length} bytes, larger than the ${MAX_CSR_BYTES}-byte limit`);
  }
  const text =
    typeof input === 'string'
      ? input
      : input.subarray(0, 11).toString('latin1').trimStart().startsWith('-----')
        ? input.toString('utf8')
        : undefined;
  if (text === undefined) return input as Buffer; // DER
  if (!text.includes('-----BEGIN')) throw new SigilError('bad_csr', 'CSR text is not PEM (no -----BEGIN line)');
  // "NEW CERTIFICATE REQUEST" is what older Netscape/Microsoft tools write (RFC 7468 §7).
  const blocks = parsePem(text, 'bad_csr').filter(
    (b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST',
  );
  if (blocks.length !== 1)
    throw new SigilError('bad_csr', `expected one CERTIFICATE REQUEST PEM block, found ${blocks.length}`);
  return blocks[0]!.der;
}

/**
 * Parse and verify a PKCS#10 CSR given as PEM or DER. Throws SigilError:
 * `bad_csr` (unparseable, too large, wrong version, unknown signature algorithm),
 * `unsupported_key` (not EC P-256/P-384 or RSA 2048..4096 with an odd exponent 3..2^32-1), `csr_signature_invalid`.
 * `keys`: where the public key is imported (the issuer's PublicKeyCache, pki/key-cache.ts: the
 * renewal's new key is the next renewal's signing key); the self-signature is verified either way.
 */
export function parseCsr(input: string | Buffer, keys?: PublicKeyImporter): ParsedCsr {
  const der = toDer(input);
  const r = new DerReader(der, 'bad_csr', 'CSR');
  // CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }
  const [criNode, algNode, sigNode, extra] = r.children(r.expect(r.root(), TAG.SEQUENCE, 'CertificationRequest'));
  if (extra !== undefined) r.fail('CertificationRequest has more than three fields');
  // CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, attributes [0] }
  const [verNode, subjNode, spkiNode, attrNode, extraCri] = r.children(
    r.expect(criNode, TAG.SEQUENCE, 'CertificationRequestInfo'),
  );
  const version = r.smallInteger(r.expect(verNode, TAG.INTEGER, 'version'), 'version');
  if (version !== 0) r.fail(`version is ${version}, PKCS#10 v1 (0) expected`);
  const subjectDer = Buffer.from(r.bytes(r.expect(subjNode, TAG.SEQUENCE, 'subject Name')));
  const spkiDer = Buffer.from(r.bytes(r.expect(spkiNode, TAG.SEQUENCE, 'subjectPKInfo')));
  // attributes is mandatory in RFC 2986 but some encoders drop it when empty; tolerate that.
  if (attrNode !== undefined) r.expect(attrNode, 0xa0, 'attributes');
  if (extraCri !== undefined) r.fail('CertificationRequestInfo has unexpected trailing fields');

  const keyType = checkKey(spkiDer);
  let publicKey: KeyObject;
  try {
    publicKey = keys ? keys.publicKey(spkiDer) : importSpki(spkiDer);
  } catch (e) {
    throw new SigilError('bad_csr', `CSR public key is not a valid ${keyType} key: ${(e as Error).message}`);
  }
  if (keyType === 'rsa') {
    const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
      throw new SigilError(
        'unsupported_key',
        `RSA key of ${bits} bits is not accepted (use ${MIN_RSA_BITS}..${MAX_RSA_BITS} bits, or EC P-256/P-384)`,
      );
    }
    const e = publicKey.asymmetricKeyDetails?.publicExponent ?? 0n;
    if (e < 3n || e % 2n === 0n || e >= MAX_RSA_EXPONENT) {
      const shown = e < 1n << 64n ? e.toString() : `a ${e.toString(2).length}-bit number`;
      throw new SigilError(
        'unsupported_key',
        `RSA public exponent ${shown} is not accepted (it must be odd, at least 3 and below 2^32; 65537 is usual)`,
      );
    }
  }

  const alg = signatureAlgorithm(r, algNode, keyType);
  const sig = r.bitString(r.expect(sigNode, TAG.BIT_STRING, 'signature'), 'signature');
  if (sig.unusedBits !== 0) r.fail('signature BIT STRING has unused bits');
  let ok = false;
  try {
    ok = verify(alg.hash, r.bytes(criNode), { key: publicKey, dsaEncoding: 'der' }, sig.bytes);
  } catch {
    ok = false; // malformed signature encodings land here on some OpenSSL versions
  }
  if (!ok)
    throw new SigilError(
      'csr_signature_invalid',
      `CSR self-signature (${alg.name}) does not verify with the CSR's ${keyType} public key`,
    );

  return { spkiDer, publicKey, keyType, uris: attrNode === undefined ? [] : requestedUris(r, attrNode), subjectDer };
}

function checkKey(spkiDer: Buffer): KeyType {
  const verdict = classifySpki(readSpki(spkiDer, 'bad_csr', 'CSR public key'));
  if ('reason' in verdict) throw new SigilError('unsupported_key', `CSR ${verdict.reason}`);
  return verdict.keyType;
}

function signatureAlgorithm(
  r: DerReader,
  algNode: DerNode | undefined,
  keyType: KeyType,
): { hash: string; name: string } {
  const [algOid, params, extra] = r.children(r.expect(algNode, TAG.SEQUENCE, 'signatureAlgorithm'));
  const id = r.oid(r.expect(algOid, TAG.OID, 'signature algorithm'), 'signature algorithm');
  const alg = SIGNATURE_ALGORITHMS[id];
  if (alg === undefined)
    r.fail(`signature algorithm ${id} is not supported (ECDSA or PKCS#1 v1.5 with SHA-256/384/512)`);
  // RFC 5758 §3.2: ECDSA parameters absent. RFC 4055 §5: RSA parameters NULL (absent tolerated).
  const paramsOk =
    alg.family === 'ec'
      ? params === undefined
      : params === undefined || (params.tag === TAG.NULL && params.end === params.contentStart);
  if (!paramsOk || extra !== undefined) r.fail(`${alg.name} has unexpected parameters`);
  if ((alg.family === 'rsa') !== (keyType === 'rsa'))
    r.fail(`signature algorithm ${alg.name} does not match the ${keyType} key`);
  return alg;
}

/** URI SANs from the PKCS#9 extensionRequest attribute (RFC 2985 §5.4.2). */
function requestedUris(r: DerReader, attrs: DerNode): string[] {
  for (const attr of r.children(attrs)) {
    const [type, values] = r.children(r.expect(attr, TAG.SEQUENCE, 'Attribute'));
    if (r.oid(r.expect(type, TAG.OID, 'attribute type'), 'attribute type') !== OID.extensionRequest) continue;
    const [exts] = r.children(r.expect(values, TAG.SET, 'extensionRequest values'));
    const san = findExtension(readExtensions(r, r.expect(exts, TAG.SEQUENCE, 'extensionRequest')), OID.subjectAltName);
    return san === undefined ? [] : decodeGeneralNames(san.value, 'bad_csr').uris;
  }
  return [];
}

const CSR_ALGORITHM_ID = {
  ES256: sequence(oid(OID.ecdsaWithSHA256)),
  ES384: sequence(oid(OID.ecdsaWithSHA384)),
} as const;

/**
 * Build a PKCS#10 CSR for the Signer's key (any backend: software, TPM, PKCS#11), DER.
 * Subject is CN=<commonName> or empty; no attributes (the issuer decides the SANs).
 */
export async function buildCsr(signer: Signer, opts?: { commonName?: string }): Promise<Buffer> {
  const algorithmId = CSR_ALGORITHM_ID[signer.algorithm];
  if (algorithmId === undefined) throw new TypeError(`unsupported signer algorithm ${String(signer.algorithm)}`);
  const cri = sequence(
    integer(0),
    encodeName(opts?.commonName !== undefined ? [['CN', opts.commonName]] : []),
    signer.publicKeySpki(),
    implicit(0, Buffer.alloc(0), true), // attributes [0] IMPLICIT SET OF Attribute, empty
  );
  const signature = await signer.sign(cri);
  return sequence(cri, algorithmId, bitString(signature));
}
