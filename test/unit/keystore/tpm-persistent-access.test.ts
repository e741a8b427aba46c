/**
 * keystore/tpm-persistent.ts: a TPM persistent key is used through its holder's access to the
 * TPM that holds it — never through an access for another TCTI (its operations would queue
 * with the wrong TPM's and miss the ones they must wait for).
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TpmAccess } from '../../../src/keystore/tpm-access.js';
import { TpmPersistentSigner } from '../../../src/keystore/tpm-persistent.js';

const TCTI = 'swtpm:host=127.0.0.1,port=2321';
const spki = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });

describe('TpmPersistentSigner and its TpmAccess', () => {
  it("keeps the holder's access for the key's TCTI", () => {
    const access = new TpmAccess(TCTI);
    expect(
      TpmPersistentSigner.forCertificateKey({ tcti: TCTI, handle: 0x81000100 }, spki, 'ES256', access).access,
    ).toBe(access);
  });

  it('refuses an access for another TCTI', async () => {
    const other = new TpmAccess('device:/dev/tpmrm0');
    expect(() =>
      TpmPersistentSigner.forCertificateKey({ tcti: TCTI, handle: 0x81000100 }, spki, 'ES256', other),
    ).toThrow(TypeError);
    // open() checks before it connects: nothing listens at TCTI.
    await expect(TpmPersistentSigner.open({ tcti: TCTI, handle: 0x81000100 }, other)).rejects.toThrow(TypeError);
  });
});
