/**
 * The azure verifier against genuine attested documents signed by Azure's metadata service
 * (test/fixtures/cloud-iid/azure): each verifies with its chain checked at the document's
 * own createdOn (its certificates have expired since), through the Microsoft Azure TLS issuing
 * CA to DigiCert Global Root G2; the same document is refused now (expired chain), without the
 * intermediate, under another signer domain, with another nonce or outside its validity; and
 * every one-byte change to the intermediate certificate is refused (every position once, the
 * flipped bit rotating, every 7th also XOR 0xFF: aws-fixtures.ts 'lean'). azure-mutations.test.ts changes the documents themselves.
 */
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { checkFreshness } from '../../../src/join/azure/server.js';
import { verifyAttestedDocument } from '../../../src/join/azure/verify.js';
import { parseImdsTime } from '../../../src/join/azure/wire.js';
import { parseCert } from '../../../src/join/x509-cert.js';
import { loadCaFile } from '../../../src/join/trust-files.js';
import { acceptedMutations, MUTATION_TIMEOUT_MS, refusal } from './aws-fixtures.js';
import { genuineTrust, INTERMEDIATE_FILES, loadAzureSamples } from './azure-fixtures.js';

const samples = loadAzureSamples();

describe('genuine Azure attested documents', () => {
  it('IMDS timestamps parse as UTC, hours past 23 rolling over', () => {
    expect(new Date(parseImdsTime('11/19/25 12:53:30 -0000')!).toISOString()).toBe('2025-11-19T12:53:30.000Z');
    expect(new Date(parseImdsTime('11/30/20 27:19:24 -0000')!).toISOString()).toBe('2020-12-01T03:19:24.000Z');
    expect(new Date(parseImdsTime('01/02/24 10:00:00 +0130')!).toISOString()).toBe('2024-01-02T08:30:00.000Z');
    expect(parseImdsTime('2025-11-19T12:53:30Z')).toBeUndefined();
  });

  describe.each(samples.map((s) => [s.name, s] as const))('%s', (_n, s) => {
    it('verifies at its own createdOn: signature, chain to DigiCert Global Root G2, metadata.azure.com', () => {
      const v = verifyAttestedDocument(s.der, genuineTrust(s.createdOn));
      expect(v.content.equals(s.json)).toBe(true);
      expect(v.doc.vmId).toMatch(/^[0-9a-f-]{36}$/);
      expect(v.signerNames).toContain('metadata.azure.com');
      // The document's own nonce (IMDS puts a timestamp there when none is asked for) and window.
      checkFreshness(v, v.doc.nonce, s.createdOn.getTime(), 300);
      expect(() => checkFreshness(v, '1234567890', s.createdOn.getTime(), 300)).toThrow(
        expect.objectContaining({ code: 'azure_nonce_mismatch' }),
      );
      expect(() => checkFreshness(v, v.doc.nonce, s.createdOn.getTime() + 7 * 3600_000, 300)).toThrow(
        expect.objectContaining({ code: 'azure_document_expired' }),
      );
      expect(() => checkFreshness(v, v.doc.nonce, s.createdOn.getTime() - 3600_000, 300)).toThrow(
        expect.objectContaining({ code: 'azure_document_expired' }),
      );
    });

    it('is refused now (its certificates expired), without the intermediate, and for another signer domain', () => {
      expect(refusal(() => verifyAttestedDocument(s.der, genuineTrust(new Date('2030-01-01T00:00:00Z'))))).toBe(
        'azure_signer_untrusted',
      );
      expect(refusal(() => verifyAttestedDocument(s.der, genuineTrust(s.createdOn, { intermediates: [] })))).toBe(
        'azure_signer_untrusted',
      );
      expect(refusal(() => verifyAttestedDocument(s.der, genuineTrust(s.createdOn, { anchors: [] })))).toBe(
        'azure_signer_untrusted',
      );
      expect(
        refusal(() =>
          verifyAttestedDocument(s.der, genuineTrust(s.createdOn, { signerDomains: ['metadata.azure.us'] })),
        ),
      ).toBe('azure_signer_domain');
    });

    it(
      'refuses every one-byte change to the intermediate certificate',
      () => {
        const inter = INTERMEDIATE_FILES.flatMap(loadCaFile).find((c) => {
          try {
            verifyAttestedDocument(s.der, genuineTrust(s.createdOn, { intermediates: [c] }));
            return true;
          } catch {
            return false;
          }
        })!;
        expect(inter).toBeDefined();
        const r = acceptedMutations(
          inter.der,
          (m) =>
            verifyAttestedDocument(
              s.der,
              genuineTrust(s.createdOn, { intermediates: [parseCert(m, 'intermediate', 'azure_evidence_malformed')] }),
            ),
          'lean',
        );
        expect(r.accepted).toEqual([]);
        expect(r.tried).toBeGreaterThan(inter.der.length);
      },
      MUTATION_TIMEOUT_MS,
    );
  });

  it('refuses a document that is not PKCS#7 at all', () => {
    expect(refusal(() => verifyAttestedDocument(Buffer.from('{"nonce":"1"}'), genuineTrust(new Date())))).toBe(
      'azure_evidence_malformed',
    );
    expect(new SigilError('azure_evidence_malformed').status).toBe(400);
  });
});
