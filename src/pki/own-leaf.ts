/**
 * Verify a leaf this CA issued itself — the renewal hot path. A renewal can only present a
 * certificate Sigil signed with its own intermediate, so no path building is needed: check the
 * issuer Name bytes, then the signature over the exact TBSCertificate bytes with the cached
 * intermediate key, and read the fields with the DER reader.
 *
 * Why not X509Certificate: with OpenSSL 3.0 each certificate parse costs 0.2–0.5 ms
 * (nodejs/node#50386), several times the signature check itself; bench/renew-https.ts measured
 * certificate parsing as the largest issuer cost per renewal.
 */
import { createHash, verify, type KeyObject } from 'node:crypto';
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

export function verifyOwnLeaf(der: Buffer, cas: readonly IssuingCa[]): OwnLeaf {
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
  if (!verify(hash, fields.tbs, { key: ca.publicKey, dsaEncoding: 'der' }, bits.subarray(1))) {
    throw new SigilError('chain_invalid', 'the presented certificate signature does not verify with this issuer CA');
  }
  return {
    fields,
    serial: serialHex(fields.serial),
    spiffeId: spiffeIdOfFields(fields),
    spkiHash: 'sha256:' + createHash('sha256').update(fields.spki).digest('hex'),
  };
}
