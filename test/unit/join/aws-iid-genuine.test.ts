/**
 * The aws_iid verifier against genuine AWS-signed instance identity documents
 * (test/fixtures/cloud-iid/aws, see its README) and AWS's own certificates as
 * bundled in assets/aws-iid-certs: every sample of every kind (PKCS#7 DSA/SHA-1, PKCS#7
 * RSA-2048/SHA-256, raw RSA signature) is accepted; the document presented with another
 * region's certificate is refused; every one-byte change to a region certificate is refused
 * (each byte position, XOR 0x01 and XOR 0xFF: the full iteration). aws-iid-mutations.test.ts
 * does the same to the documents and signatures.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUNDLED_AWS_CERTS_DIR, CERT_SUBDIR } from '../../../src/join/aws-iid/certs.js';
import { verifyIdentityDocument } from '../../../src/join/aws-iid/verify.js';
import { fromPem, toPem } from '../../../src/pki/pem.js';
import {
  acceptedMutations,
  BUNDLED_CERTS_MANIFEST,
  certDirWith,
  loadSamples,
  MUTATION_TIMEOUT_MS,
  newScratch,
  refusal,
  requireFixture,
  type Sample,
} from './aws-fixtures.js';

const samples = loadSamples();
const scratch = newScratch();
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('genuine AWS instance identity documents', () => {
  it('the fixtures hold all three kinds from several regions', () => {
    expect(new Set(samples.map((s) => s.kind))).toEqual(new Set(['pkcs7', 'rsa2048', 'signature']));
    expect(new Set(samples.map((s) => s.region)).size).toBeGreaterThanOrEqual(4);
    expect(samples.length).toBeGreaterThanOrEqual(13);
  });

  it('every sample verifies with the bundled AWS certificates', () => {
    for (const s of samples) {
      const v = verifyIdentityDocument(s.signed, BUNDLED_AWS_CERTS_DIR, s.at);
      expect(v.doc.region, s.name).toBe(s.region);
      expect(v.kind).toBe(s.kind);
      expect(v.doc.instanceId).toMatch(/^i-[0-9a-f]+$/);
      expect(v.doc.accountId).toMatch(/^\d{12}$/);
    }
  });

  it("the bundled certificates are AWS's (the SHA-256 of the collected copies, fixtures README)", () => {
    const manifest = readFileSync(requireFixture(BUNDLED_CERTS_MANIFEST), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+\*?/) as [string, string]);
    for (const sub of ['dsa', 'rsa2048', 'rsa']) {
      const listed = manifest.filter(([, f]) => f.startsWith(`${sub}/`));
      expect(listed.length).toBe(36);
      expect(readdirSync(join(BUNDLED_AWS_CERTS_DIR, sub)).sort()).toEqual(
        listed.map(([, f]) => f.slice(sub.length + 1)).sort(),
      );
      for (const [hash, f] of listed)
        expect(
          createHash('sha256')
            .update(readFileSync(join(BUNDLED_AWS_CERTS_DIR, f)))
            .digest('hex'),
          f,
        ).toBe(hash);
    }
  });

  describe.each(samples.map((s) => [s.name, s] as const))('%s', (_name, s) => {
    it("refuses the document with another region's certificate", () => {
      const own = readFileSync(join(BUNDLED_AWS_CERTS_DIR, CERT_SUBDIR[s.kind], `${s.region}.pem`));
      // Another region's certificate with a key of the same type, checked at a fixed moment both
      // certificates are valid (no wall clock): only the signature can tell them apart.
      const ownCert = new X509Certificate(own);
      const other = readdirSync(join(BUNDLED_AWS_CERTS_DIR, CERT_SUBDIR[s.kind]))
        .map((f) => new X509Certificate(readFileSync(join(BUNDLED_AWS_CERTS_DIR, CERT_SUBDIR[s.kind], f))))
        .find(
          (x) =>
            !x.raw.equals(ownCert.raw) &&
            x.publicKey.asymmetricKeyType === ownCert.publicKey.asymmetricKeyType &&
            new Date(x.validTo) >= s.at,
        )!;
      const at = new Date(Math.max(s.at.getTime(), new Date(other.validFrom).getTime()));
      expect(at.getTime()).toBeLessThanOrEqual(new Date(ownCert.validTo).getTime());
      expect(
        refusal(() => verifyIdentityDocument(s.signed, certDirWith(scratch, s.kind, s.region, other.toString()), at)),
      ).toBe('aws_signature_invalid');
      // And with its own region's certificate copied the same way, it verifies (the directory is not the problem).
      expect(
        refusal(() => verifyIdentityDocument(s.signed, certDirWith(scratch, s.kind, s.region, own), s.at)),
      ).toBeUndefined();
    });
  });

  // One run per distinct certificate: the DSA one is shared by most regions.
  const distinct = new Map<string, Sample>();
  for (const s of samples) {
    const pem = readFileSync(join(BUNDLED_AWS_CERTS_DIR, CERT_SUBDIR[s.kind], `${s.region}.pem`), 'utf8');
    distinct.set(
      createHash('sha256').update(pem).digest('hex'),
      distinct.get(createHash('sha256').update(pem).digest('hex')) ?? s,
    );
  }
  describe.each(
    [...distinct.values()].map((s) => [`${CERT_SUBDIR[s.kind]}/${s.region}.pem (with ${s.name})`, s] as const),
  )('certificate %s', (_n, s) => {
    it(
      'refuses every one-byte change to the certificate',
      () => {
        const der = fromPem(
          readFileSync(join(BUNDLED_AWS_CERTS_DIR, CERT_SUBDIR[s.kind], `${s.region}.pem`), 'utf8'),
          'CERTIFICATE',
        );
        const dir = join(scratch, `mut-${s.name}`);
        mkdirSync(join(dir, CERT_SUBDIR[s.kind]), { recursive: true });
        const file = join(dir, CERT_SUBDIR[s.kind], `${s.region}.pem`);
        const r = acceptedMutations(der, (m) => {
          writeFileSync(file, toPem('CERTIFICATE', m));
          verifyIdentityDocument(s.signed, dir, s.at);
        });
        expect(r.accepted).toEqual([]);
        expect(
          [...r.codes].every((c) => c === 'aws_certificate_invalid' || c === 'aws_signature_invalid'),
          [...r.codes].join(),
        ).toBe(true);
        copyFileSync(join(BUNDLED_AWS_CERTS_DIR, CERT_SUBDIR[s.kind], `${s.region}.pem`), file);
        expect(refusal(() => verifyIdentityDocument(s.signed, dir, s.at))).toBeUndefined();
      },
      MUTATION_TIMEOUT_MS,
    );
  });

  it('refuses a region without a certificate, and an expired certificate', () => {
    const s = samples.find((x) => x.kind === 'rsa2048')!;
    expect(refusal(() => verifyIdentityDocument(s.signed, join(scratch, 'empty'), s.at))).toBe('aws_region_unknown');
    const rsa = samples.find((x) => x.kind === 'signature' && x.region === 'us-east-1')!;
    // The raw-signature RSA certificates of the older regions end in 2029.
    expect(
      refusal(() => verifyIdentityDocument(rsa.signed, BUNDLED_AWS_CERTS_DIR, new Date('2030-01-01T00:00:00Z'))),
    ).toBe('aws_certificate_invalid');
  });
});
