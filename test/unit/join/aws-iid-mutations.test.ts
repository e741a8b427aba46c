/**
 * Every one-byte change to a genuine AWS instance identity document or to its signature is
 * refused: each byte position of the document and of the signature (the PKCS#7 DER or the raw
 * RSA signature) changed by XOR 0x01 and by XOR 0xFF — the full iteration, no sampling —
 * verified with AWS's certificates as bundled in assets/aws-iid-certs.
 */
import { describe, expect, it } from 'vitest';
import { BUNDLED_AWS_CERTS_DIR } from '../../../src/join/aws-iid/certs.js';
import { verifyIdentityDocument } from '../../../src/join/aws-iid/verify.js';
import { acceptedMutations, loadSamples, MUTATION_TIMEOUT_MS } from './aws-fixtures.js';

const samples = loadSamples();

describe('one-byte changes to genuine AWS documents and signatures', () => {
  describe.each(samples.map((s) => [s.name, s] as const))('%s', (_name, s) => {
    it(
      'refuses every one-byte change to the document',
      () => {
        const r = acceptedMutations(s.signed.document, (m) =>
          verifyIdentityDocument({ ...s.signed, document: m }, BUNDLED_AWS_CERTS_DIR, s.at),
        );
        expect(r.accepted).toEqual([]);
        expect(r.tried).toBe(s.signed.document.length * 2);
      },
      MUTATION_TIMEOUT_MS,
    );

    it(
      'refuses every one-byte change to the signature',
      () => {
        const r = acceptedMutations(s.signed.signature, (m) =>
          verifyIdentityDocument({ ...s.signed, signature: m }, BUNDLED_AWS_CERTS_DIR, s.at),
        );
        expect(r.accepted).toEqual([]);
        expect(
          [...r.codes].every((c) => c === 'aws_signature_invalid' || c === 'aws_evidence_malformed'),
          [...r.codes].join(),
        ).toBe(true);
      },
      MUTATION_TIMEOUT_MS,
    );
  });
});
