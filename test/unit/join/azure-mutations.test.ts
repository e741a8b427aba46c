/**
 * Every one-byte change to a genuine Azure attested document (the base64-decoded PKCS#7: the
 * SignedData structure, the embedded JSON, the embedded signing certificate and the signature)
 * is refused, verified at the document's own createdOn. Every byte position is changed once
 * (XOR with a bit that rotates with the position) and every 7th also by XOR 0xFF — not all
 * bits of all bytes: each check parses a 3 KB SignedData with a certificate in it (pkijs), and
 * two passes over both samples took minutes on a shared 2-core machine.
 */
import { describe, expect, it } from 'vitest';
import { verifyAttestedDocument } from '../../../src/join/azure/verify.js';
import { acceptedMutations, MUTATION_TIMEOUT_MS } from './aws-fixtures.js';
import { genuineTrust, loadAzureSamples } from './azure-fixtures.js';

const samples = loadAzureSamples();

describe('one-byte changes to genuine Azure attested documents', () => {
  it.each(samples.map((s) => [s.name, s] as const))(
    '%s: every change is refused',
    (_n, s) => {
      const trust = genuineTrust(s.createdOn);
      verifyAttestedDocument(s.der, trust);
      const r = acceptedMutations(s.der, (m) => verifyAttestedDocument(m, trust), 'lean');
      expect(r.accepted).toEqual([]);
      expect(r.tried).toBeGreaterThan(s.der.length);
    },
    MUTATION_TIMEOUT_MS,
  );
});
