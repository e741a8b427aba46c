/**
 * Fuzzing the DER/BER readers an unauthenticated client reaches: certificates (x509 join
 * chains, renew x5c), CSRs (every join and renew), Names, extensions, SubjectPublicKeyInfo,
 * CRLs (rule files) and PKCS#7 SignedData (AWS and Azure instance documents).
 */
import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { checkBerStructure } from '../../src/pki/ber-structure.js';
import {
  decodeAuthorityKeyIdentifier,
  decodeBasicConstraints,
  decodeGeneralNames,
  decodeKeyUsage,
  decodeSubjectKeyIdentifier,
  readCertificate,
} from '../../src/pki/cert-reader.js';
import { parseCsr } from '../../src/pki/csr.js';
import { readGeneralNames } from '../../src/pki/general-names.js';
import { decodeNameConstraints, UnsupportedNameConstraint } from '../../src/pki/name-constraints.js';
import { readName } from '../../src/pki/name-reader.js';
import { verifyOwnLeaf } from '../../src/pki/own-leaf.js';
import { parsePem, toPem } from '../../src/pki/pem.js';
import { isSignerCertificate, parseSignedData, verifySigner } from '../../src/pki/pkcs7.js';
import { classifySpki, readSpki } from '../../src/pki/spki.js';
import { parseCert } from '../../src/join/x509-cert.js';
import { parseCrl } from '../../src/join/x509-crl.js';
import { fuzzBytes, fuzzParams, fuzzTimeout, mustBeCoded, type CheckOptions } from './harness.js';
import { pkiSeeds, type PkiSeeds } from './seeds.js';
import { replayRegressions } from './regressions.js';

let s: PkiSeeds;
beforeAll(() => {
  s = pkiSeeds();
}, 60_000);

const P7_CODES = { malformed: 'aws_evidence_malformed', invalid: 'aws_signature_invalid' } as const;
const ncAllowed: CheckOptions = { allow: (e) => e instanceof UnsupportedNameConstraint };

/** Everything the issuer reads from one certificate, as path validation and renewal do. */
export function readWholeCertificate(der: Buffer): void {
  const f = readCertificate(der);
  readName(Buffer.from(f.subject));
  readName(Buffer.from(f.issuer));
  classifySpki(readSpki(Buffer.from(f.spki), 'bad_certificate'));
  for (const e of f.extensions) {
    const decode: Record<string, (v: Buffer) => unknown> = {
      '2.5.29.19': decodeBasicConstraints,
      '2.5.29.15': decodeKeyUsage,
      '2.5.29.17': (v) => (decodeGeneralNames(v), readGeneralNames(v)),
      '2.5.29.14': decodeSubjectKeyIdentifier,
      '2.5.29.35': decodeAuthorityKeyIdentifier,
      '2.5.29.30': (v) => {
        try {
          decodeNameConstraints(v);
        } catch (err) {
          if (!(err instanceof UnsupportedNameConstraint)) throw err;
        }
      },
    };
    decode[e.oid]?.(e.value);
  }
}

/** The parsers by name, for the regression files (test/fuzz/regressions/der.json). */
export const DER_TARGETS: Record<string, (b: Buffer) => unknown> = {
  certificate: readWholeCertificate,
  x509Cert: (b) => parseCert(b, 'device certificate'),
  name: (b) => readName(b),
  csr: (b) => parseCsr(b),
  crl: (b) => parseCrl(b, 'fuzz.crl'),
  pkcs7: (b) => parseSignedData(b, P7_CODES),
  ber: (b) =>
    checkBerStructure(b, (m) => {
      throw new SigilError('bad_request', m);
    }),
};

describe('DER fuzzing', () => {
  it(
    'certificates: the DER readers and every extension decoder',
    () => {
      fc.assert(
        fc.property(fuzzBytes(s.certs), (b) => mustBeCoded('readCertificate', b, readWholeCertificate, ncAllowed)),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it(
    'certificates: the x509 join parse (X509Certificate + DER readers)',
    () => {
      fc.assert(
        fc.property(fuzzBytes(s.certs), (b) => mustBeCoded('parseCert', b, (x) => parseCert(x, 'device certificate'))),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'certificates: the renewal fast path (verifyOwnLeaf) against a real issuing CA',
    () => {
      const ca = new X509Certificate(s.certs[1]!);
      const issuing = [
        {
          certDer: s.certs[1]!,
          subjectDer: Buffer.from(readCertificate(s.certs[1]!).subject),
          publicKey: ca.publicKey,
        },
      ];
      fc.assert(
        fc.property(fuzzBytes([s.certs[2]!]), (b) => mustBeCoded('verifyOwnLeaf', b, (x) => verifyOwnLeaf(x, issuing))),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'names: readName over mutated issuer and subject Names',
    () => {
      const names = s.certs.flatMap((c) => {
        const f = readCertificate(c);
        return [Buffer.from(f.subject), Buffer.from(f.issuer)];
      });
      fc.assert(
        fc.property(fuzzBytes(names), (b) => mustBeCoded('readName', b, (x) => readName(x))),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it(
    'CSRs: parseCsr on DER',
    () => {
      fc.assert(
        fc.property(fuzzBytes(s.csrs), (b) => mustBeCoded('parseCsr', b, (x) => parseCsr(x))),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'CSRs: parseCsr on PEM text (what a join request carries)',
    () => {
      const text = fc.oneof(
        fuzzBytes(s.csrs).map((der) => toPem('CERTIFICATE REQUEST', der)),
        fc
          .tuple(fc.constantFrom(...s.csrPems), fc.nat(), fc.string({ maxLength: 40 }))
          .map(([p, at, junk]) => p.slice(0, at % (p.length + 1)) + junk + p.slice(at % (p.length + 1))),
        fc
          .array(
            fc.constantFrom(
              '-----BEGIN CERTIFICATE REQUEST-----',
              '-----END CERTIFICATE REQUEST-----',
              '-----BEGIN ',
              '-----',
              'MIIB',
              '\n',
              ':',
              '=',
            ),
            { maxLength: 2000 },
          )
          .map((a) => a.join('')),
      );
      fc.assert(
        fc.property(text, (t) => mustBeCoded('parseCsr(PEM)', t, (x) => parseCsr(x))),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'CRLs: parseCrl (operator files, but parsed by the same readers)',
    () => {
      fc.assert(
        fc.property(fuzzBytes(s.crls), (b) => mustBeCoded('parseCrl', b, (x) => parseCrl(x, 'fuzz.crl'))),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'PKCS#7: parseSignedData, the signer lookup and verification',
    () => {
      const signer = new X509Certificate(s.pkcs7Signer);
      const verifyAll = (b: Buffer): void => {
        const sd = parseSignedData(b, P7_CODES);
        for (const c of sd.certificates) isSignerCertificate(sd, c, 'aws_signature_invalid');
        verifySigner(sd, signer, { codes: P7_CODES, digests: ['sha256'] });
      };
      fc.assert(
        fc.property(fuzzBytes(s.pkcs7), (b) => mustBeCoded('parseSignedData', b, verifyAll)),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'PEM: parsePem on adversarial text',
    () => {
      const text = fc
        .array(
          fc.oneof(
            fc.constantFrom('-----BEGIN ', '-----END ', '-----', 'X', 'CERTIFICATE', '\n', '\r', 'QUJD', '=', ':'),
            fc.string({ maxLength: 8 }),
          ),
          { maxLength: 3000 },
        )
        .map((a) => a.join(''));
      fc.assert(
        fc.property(text, (t) => mustBeCoded('parsePem', t, (x) => parsePem(x))),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it('the seeds themselves parse (the fuzzers start from valid inputs)', () => {
    for (const c of s.certs) readWholeCertificate(c);
    for (const c of s.csrs) expect(parseCsr(c).keyType).toBeDefined();
    expect(parseCrl(s.crls[0]!, 'inter.crl').revoked.size).toBe(1);
    for (const p of s.pkcs7) expect(parseSignedData(p, P7_CODES).content.length).toBeGreaterThan(0);
  });
});

describe('DER: claimed lengths are never allocated', () => {
  // A few bytes that claim 2^31-1, 2^31 and 2^32-1 content octets, at the top and nested.
  const claims = [
    Buffer.from([0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x00]),
    Buffer.from([0x30, 0x84, 0x80, 0x00, 0x00, 0x00, 0x02, 0x01, 0x00]),
    Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
    Buffer.from([0x30, 0x08, 0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x05, 0x00]),
    Buffer.from([0x30, 0x80, 0x04, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x00, 0x00]),
    Buffer.from([0x30, 0x88, 0x00, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff]),
  ];
  for (const [name, parse] of Object.entries(DER_TARGETS)) {
    it(`${name}: fails fast with a coded error`, () => {
      for (const b of claims) {
        mustBeCoded(name, b, parse, { maxMs: 50 });
        expect(() => parse(b)).toThrow(SigilError);
      }
    });
  }
});

/** DER TLV with the minimal length encoding. */
function tlv(tag: number, ...content: Buffer[]): Buffer {
  const c = Buffer.concat(content);
  const n = c.length;
  const len =
    n < 0x80
      ? [n]
      : n < 0x100
        ? [0x81, n]
        : n < 0x10000
          ? [0x82, n >> 8, n & 0xff]
          : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), c]);
}

/** An OID whose second arc is `octets` long (0x81 0x81 … 0x01). */
function longArcOid(octets: number): Buffer {
  return tlv(0x06, Buffer.from([0x2a]), Buffer.alloc(octets - 1, 0x81), Buffer.from([0x01]));
}

describe('DER: one huge OID arc costs linear time (regression)', () => {
  // Before the fix DerReader.oid shifted a BigInt per octet and printed it in decimal: a single
  // 48 KB arc (fits a 64 KiB request as base64) took ~150 ms, a quadratic cost per request.
  const name = (arc: number): Buffer => tlv(0x30, tlv(0x31, tlv(0x30, longArcOid(arc), tlv(0x0c, Buffer.from('x')))));
  it('readName refuses a 48 KB arc fast, with bad_certificate', () => {
    const b = name(48 * 1024);
    mustBeCoded('readName(long OID arc)', b, (x) => readName(x), { maxMs: 50 });
    expect(() => readName(b)).toThrow(expect.objectContaining({ code: 'bad_certificate' }));
  });
  it('a 2.25 UUID arc (128 bits, 19 octets) still parses', () => {
    const uuidArc = Buffer.from([0x69, ...Buffer.alloc(18, 0xff).map((_, i) => (i === 17 ? 0x7f : 0xff))]);
    const b = tlv(0x30, tlv(0x31, tlv(0x30, tlv(0x06, uuidArc), tlv(0x0c, Buffer.from('x')))));
    expect(readName(b)[0]![0]!.type).toMatch(/^2\.25\.\d{38,39}$/);
  });
  it('the asn1js-based readers (PKCS#7, CRL) stay fast on it too', () => {
    const ci = tlv(0x30, longArcOid(40 * 1024), tlv(0xa0, tlv(0x30)));
    mustBeCoded('parseSignedData(long OID arc)', ci, DER_TARGETS.pkcs7!);
    mustBeCoded('parseCrl(long OID arc)', tlv(0x30, tlv(0x30, tlv(0x30, longArcOid(40 * 1024)))), DER_TARGETS.crl!);
  });
});

replayRegressions('der', DER_TARGETS);
