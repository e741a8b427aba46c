/**
 * Verify a leaf this CA issued itself — the renewal hot path. A renewal can only present a
 * certificate Sigil signed with its own intermediate, so no path building is needed: check the
 * issuer Name bytes, then the signature over the exact TBSCertificate bytes with the cached
 * intermediate key, and read the fields with the DER reader.
 *
 * Why not X509Certificate: with OpenSSL 3.0 each certificate parse costs 0.2–0.5 ms
 * (nodejs/node#50386), several times the signature check itself; bench/renew-https.ts measured
 * certificate parsing as the largest issuer cost per renewal.
 *
 * The signature check itself is skipped only for a leaf whose exact bytes this issuer produced
 * (IssuedLeafMemo below): those bytes carry this CA's signature, so verifying it again could not
 * come out any other way.
 */
import { hash as sha, verify, type KeyObject } from 'node:crypto';
import { SigilError } from '../errors.js';
import { readCertificate, spiffeIdOfFields, type CertificateFields } from './cert-reader.js';
import { TAG } from './der.js';
import { DerReader } from './der-reader.js';
import { serialHex } from './serial.js';

export interface IssuingCa {
  certDer: Buffer;
  /** Subject Name DER of the issuing CA (byte-exact, as it appears in the leaf's issuer). */
  subjectDer: Buffer;
  publicKey: KeyObject;
}

export interface OwnLeaf {
  fields: CertificateFields;
  serial: string;
  spiffeId: string | undefined;
  spkiHash: string;
}

const HASH_BY_SIG_OID: Record<string, string> = { '1.2.840.10045.4.3.2': 'sha256', '1.2.840.10045.4.3.3': 'sha384' };

/**
 * The SHA-256 of every leaf DER this issuer signed recently, with the CA certificate that signed
 * it (issue #14: the leaf a renewal presents is, nearly always, the one the previous renewal
 * issued). Why a match may stand in for the signature check: SHA-256 is collision resistant, so
 * a presented DER with a remembered hash is byte for byte a certificate this issuer signed with
 * that CA key — its signature verifies with that key, every time. The match counts only for the
 * same CA the issuer Name selected, and everything else (issuer Name, signature algorithm, field
 * parsing) is still checked. Entries are added by the issuer after signing (server/ops/issue.ts),
 * never from presented input. Bounded: the oldest entries go first, and a leaf not remembered
 * (older, or issued by another issuer process) is simply verified.
 */
export class IssuedLeafMemo {
  private readonly signed = new Map<string, Buffer>();

  constructor(readonly maxEntries = 20_000) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
  }

  /** `der` was just signed by the CA whose certificate is `caCertDer`. */
  remember(der: Buffer, caCertDer: Buffer): void {
    const id = leafId(der);
    this.signed.delete(id);
    this.signed.set(id, caCertDer);
    if (this.signed.size > this.maxEntries) this.signed.delete(this.signed.keys().next().value as string);
  }

  /** The certificate of the CA that signed exactly these bytes, if this issuer remembers doing so. */
  signerOf(der: Buffer): Buffer | undefined {
    return this.signed.get(leafId(der));
  }

  /**
   * Forget `der` once its holder renewed away from it: a later presentation of it (a replayed
   * request) is verified against the CA signature again, which comes out the same.
   */
  forget(der: Buffer): void {
    this.signed.delete(leafId(der));
  }

  get size(): number {
    return this.signed.size;
  }
}

// One-shot crypto.hash: no Hash object, so nothing for the GC's weak-handle pass to free (issue #14:
// native objects that outlive a scavenge are what makes the old generation's pauses long).
const leafId = (der: Buffer): string => sha('sha256', der, 'base64');

export function verifyOwnLeaf(der: Buffer, cas: readonly IssuingCa[], memo?: IssuedLeafMemo): OwnLeaf {
  const fields = readCertificate(der, 'bad_certificate', 'presented certificate');
  const ca = cas.find((c) => c.subjectDer.equals(fields.issuer));
  if (!ca) throw new SigilError('chain_invalid', 'the presented certificate was not issued by this issuer');
  const r = new DerReader(der, 'bad_certificate', 'presented certificate');
  const [, sigAlg, sigBits] = r.children(r.root());
  const algOid = r.oid(r.children(r.expect(sigAlg, TAG.SEQUENCE, 'signatureAlgorithm'))[0]!, 'signature algorithm');
  const hash = HASH_BY_SIG_OID[algOid];
  const bits = r.content(r.expect(sigBits, TAG.BIT_STRING, 'signatureValue'));
  if (!hash || bits[0] !== 0)
    throw new SigilError(
      'chain_invalid',
      'the presented certificate uses a signature algorithm this issuer never uses',
    );
  const remembered = memo?.signerOf(der)?.equals(ca.certDer) === true;
  if (!remembered && !verify(hash, fields.tbs, { key: ca.publicKey, dsaEncoding: 'der' }, bits.subarray(1))) {
    throw new SigilError('chain_invalid', 'the presented certificate signature does not verify with this issuer CA');
  }
  return {
    fields,
    serial: serialHex(fields.serial),
    spiffeId: spiffeIdOfFields(fields),
    spkiHash: 'sha256:' + sha('sha256', fields.spki, 'hex'),
  };
}
