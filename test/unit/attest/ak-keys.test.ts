/**
 * attest/ak.ts AkKeys: the issuer's memo of instances' AKs (renewal key proofs and quotes). The
 * parsed, checked and imported AK is kept per exact text; a text that fails the parse or the
 * attribute checks is never kept (refused at every use), and a quote is verified with the key at
 * every use.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AkKeys, signedByAk } from '../../../src/attest/ak.js';
import { akTemplate } from '../../../src/join/tpm/agent.js';
import { TPM_ALG, TPMA_OBJECT } from '../../../src/tpm/constants.js';
import { marshal } from '../../../src/tpm/structures/codec.js';
import { tpm2bPublic, type EccPublic } from '../../../src/tpm/structures/public.js';

function akText(attributes?: number): { text: string; priv: ReturnType<typeof generateKeyPairSync>['privateKey'] } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const t = akTemplate();
  const pub: EccPublic = {
    ...t,
    objectAttributes: attributes ?? t.objectAttributes,
    unique: { x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url') },
  };
  return { text: Buffer.from(marshal(tpm2bPublic, { value: pub })).toString('base64'), priv: privateKey };
}

describe('AkKeys', () => {
  it('imports a key once per exact text, and a different AK gets its own key', () => {
    const aks = new AkKeys(4);
    const a = akText();
    const b = akText();
    const first = aks.checked(a.text, 'the AK', 'internal');
    expect(aks.checked(a.text, 'the AK', 'internal').key).toBe(first.key);
    const other = aks.checked(b.text, 'the AK', 'internal');
    expect(other.key).not.toBe(first.key);
    expect(other.key.equals(first.key)).toBe(false);
  });

  it('checks the attributes at every use: a recorded key that is not a restricted signing key is refused', () => {
    const aks = new AkKeys(4);
    const t = akTemplate();
    const notRestricted = akText(t.objectAttributes & ~TPMA_OBJECT.restricted);
    expect(() => aks.checked(notRestricted.text, 'the AK', 'internal')).toThrow(
      expect.objectContaining({ code: 'ak_attributes_invalid' }),
    );
    // Still refused the second time (nothing about it was kept).
    expect(() => aks.checked(notRestricted.text, 'the AK', 'internal')).toThrow(/lacks restricted/);
    expect(() => aks.checked('AAAA', 'the instance attestation key', 'internal')).toThrow(
      expect.objectContaining({ code: 'internal' }),
    );
  });

  it('the cached key verifies what its AK signed and nothing else', () => {
    const aks = new AkKeys(4);
    const a = akText();
    const ak = aks.checked(a.text, 'the AK', 'internal');
    const bytes = Buffer.from('a TPMS_ATTEST stand-in');
    const rs = sign('sha256', bytes, { key: a.priv, dsaEncoding: 'ieee-p1363' });
    const signature = { sigAlg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256, r: rs.subarray(0, 32), s: rs.subarray(32) };
    const signed = { attest: { value: {} as never, bytes }, signature: signature as never };
    expect(signedByAk(ak.public.value, signed, ak.key)).toBe(true);
    expect(
      signedByAk(ak.public.value, { ...signed, attest: { value: {} as never, bytes: Buffer.from('other') } }, ak.key),
    ).toBe(false);
    // With another AK's key: refused, as without a cached key.
    const other = aks.checked(akText().text, 'the AK', 'internal');
    expect(signedByAk(other.public.value, signed, other.key)).toBe(false);
    expect(signedByAk(ak.public.value, signed)).toBe(true);
  });
});
