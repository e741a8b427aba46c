import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseKeyRef, serializeKeyRef, loadSigner, tss2PemOfRef, type TpmKeyRef } from '../../../src/keystore/index.js';
import { TpmAccess, TpmAccesses } from '../../../src/keystore/tpm-access.js';
import { decodeTss2Key, encodeTss2Key, readTss2Pem, writeTss2Pem } from '../../../src/keystore/tss2-pem.js';
import { identityKeyTemplate, TpmSigner } from '../../../src/keystore/tpm.js';
import { boolean, explicit, integer, octetString, oid, sequence } from '../../../src/pki/der.js';
import { TPM_RH } from '../../../src/tpm/constants.js';
import { publicFromKeyObject, publicKeySpki } from '../../../src/tpm/structures/keys.js';
import { toSized } from '../../../src/tpm/structures/codec.js';
import { tpmtPublic } from '../../../src/tpm/structures/public.js';
import type { KeyBlob } from '../../../src/tpm/tpm.js';

/** A blob shaped like a TPM's: a real P-256 public area with the identity attributes and opaque private bytes. */
function fakeBlob(): KeyBlob {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pub = publicFromKeyObject(publicKey, { objectAttributes: identityKeyTemplate().objectAttributes });
  return { public: toSized(tpmtPublic, pub), private: randomBytes(126) };
}

describe('TSS2 PRIVATE KEY', () => {
  it('writes TPMKey { loadable-key OID, [0] TRUE, parent 0x40000001, TPM2B_PUBLIC, TPM2B_PRIVATE } and reads it back', () => {
    const blob = fakeBlob();
    const der = encodeTss2Key({ parent: TPM_RH.OWNER, blob });
    const pubBytes = Buffer.concat([
      Buffer.from([blob.public.bytes.length >> 8, blob.public.bytes.length & 0xff]),
      blob.public.bytes,
    ]);
    const privBytes = Buffer.concat([Buffer.from([0, 126]), blob.private]);
    const expected = sequence(
      oid('2.23.133.10.1.3'),
      explicit(0, boolean(true)),
      Buffer.from([0x02, 0x04, 0x40, 0x00, 0x00, 0x01]),
      octetString(pubBytes),
      octetString(privBytes),
    );
    expect(der.equals(expected)).toBe(true);
    const pem = writeTss2Pem({ parent: TPM_RH.OWNER, blob });
    expect(pem.startsWith('-----BEGIN TSS2 PRIVATE KEY-----\n')).toBe(true);
    const back = readTss2Pem(pem);
    expect(back.parent).toBe(TPM_RH.OWNER);
    expect(back.emptyAuth).toBe(true);
    expect(Buffer.from(back.blob.public.bytes).equals(Buffer.from(blob.public.bytes))).toBe(true);
    expect(Buffer.from(back.blob.private).equals(Buffer.from(blob.private))).toBe(true);
  });

  it('encodes a persistent parent as a positive INTEGER (0x81000001 needs a leading zero)', () => {
    const der = encodeTss2Key({ parent: 0x81000001, blob: fakeBlob() });
    expect(der.includes(Buffer.from([0x02, 0x05, 0x00, 0x81, 0x00, 0x00, 0x01]))).toBe(true);
    expect(decodeTss2Key(der).parent).toBe(0x81000001);
  });

  it('reads emptyAuth TRUE encoded as 0x01 (tpm2-pytss, tpm2-tss-engine) and still writes 0xFF', () => {
    const blob = fakeBlob();
    const pub = octetString(Buffer.concat([Buffer.from([0, blob.public.bytes.length]), blob.public.bytes]));
    const priv = octetString(Buffer.concat([Buffer.from([0, 126]), blob.private]));
    // TPMKey as those tools write it: [0] EXPLICIT BOOLEAN with content octet 0x01 (BER TRUE, not DER's 0xFF).
    const berTrue = Buffer.from([0x01, 0x01, 0x01]);
    const theirs = sequence(oid('2.23.133.10.1.3'), explicit(0, berTrue), integer(TPM_RH.OWNER), pub, priv);
    const pem = `-----BEGIN TSS2 PRIVATE KEY-----\n${theirs.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END TSS2 PRIVATE KEY-----\n`;
    const k = readTss2Pem(pem);
    expect(k.emptyAuth).toBe(true);
    expect(k.parent).toBe(TPM_RH.OWNER);
    expect(Buffer.from(k.blob.public.bytes).equals(Buffer.from(blob.public.bytes))).toBe(true);
    // FALSE stays false, and a BOOLEAN that is not one octet is still refused.
    const falseKey = sequence(oid('2.23.133.10.1.3'), explicit(0, boolean(false)), integer(TPM_RH.OWNER), pub, priv);
    expect(decodeTss2Key(falseKey).emptyAuth).toBe(false);
    const twoOctets = sequence(
      oid('2.23.133.10.1.3'),
      explicit(0, Buffer.from([0x01, 0x02, 0xff, 0xff])),
      integer(TPM_RH.OWNER),
      pub,
      priv,
    );
    expect(() => decodeTss2Key(twoOctets)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    // Written back, the key says TRUE the DER way.
    const rewritten = encodeTss2Key({ parent: k.parent, blob: k.blob });
    expect(rewritten.includes(Buffer.from([0xa0, 0x03, 0x01, 0x01, 0xff]))).toBe(true);
    expect(rewritten.includes(Buffer.from([0xa0, 0x03, 0x01, 0x01, 0x01]))).toBe(false);
  });

  it('refuses what it cannot load: a policy, an import secret, sealed data, trailing fields', () => {
    const blob = fakeBlob();
    const pub = octetString(Buffer.concat([Buffer.from([0, blob.public.bytes.length]), blob.public.bytes]));
    const priv = octetString(Buffer.from([0, 2, 1, 2]));
    const cases: Array<[Buffer, RegExp]> = [
      [sequence(oid('2.23.133.10.1.3'), explicit(1, sequence()), integer(TPM_RH.OWNER), pub, priv), /policy/],
      [
        sequence(oid('2.23.133.10.1.3'), explicit(2, octetString(Buffer.alloc(4))), integer(TPM_RH.OWNER), pub, priv),
        /import secret/,
      ],
      [sequence(oid('2.23.133.10.1.5'), integer(TPM_RH.OWNER), pub, priv), /sealed data/],
      [sequence(oid('2.23.133.10.1.4'), integer(TPM_RH.OWNER), pub, priv), /importable/],
      [sequence(oid('2.23.133.10.1.3'), integer(TPM_RH.OWNER), pub, priv, integer(1)), /after privkey/],
      [
        sequence(oid('2.23.133.10.1.3'), integer(TPM_RH.OWNER), octetString(Buffer.from([0, 9, 1])), priv),
        /do not parse/,
      ],
    ];
    for (const [der, msg] of cases)
      expect(() => decodeTss2Key(der)).toThrow(
        expect.objectContaining({ code: 'config_invalid', message: expect.stringMatching(msg) }),
      );
  });
});

describe('TpmSigner key references', () => {
  it('round-trips through the agent database form and keeps the public key', () => {
    const blob = fakeBlob();
    const tpm = new TpmAccesses();
    const signer = TpmSigner.fromBlob(tpm.for('swtpm:host=127.0.0.1,port=2321'), blob);
    expect(signer).toMatchObject({ storage: 'tpm', exportable: false, algorithm: 'ES256' });
    const ref = parseKeyRef(serializeKeyRef(signer.ref));
    expect(ref).toEqual(signer.ref);
    const again = loadSigner(ref, { tpm });
    expect(again.publicKeySpki().equals(publicKeySpki(blob.public.value))).toBe(true);
    // The holder's access to that TPM, not one of its own: its operations queue with the holder's others.
    expect((again as TpmSigner).access).toBe(signer.access);
    expect(readTss2Pem(signer.toTss2Pem()).parent).toBe(TPM_RH.OWNER);
    expect(tss2PemOfRef(ref as TpmKeyRef)).toBe(signer.toTss2Pem());
  });

  it("will not make a TPM signer without the holder's access to the TPM", () => {
    const ref = TpmSigner.fromBlob(new TpmAccess('swtpm:host=127.0.0.1,port=2321'), fakeBlob()).ref;
    expect(() => loadSigner(ref)).toThrow(/a TPM key needs the holder's TpmAccesses/);
    expect(() => TpmSigner.fromRef(ref, new TpmAccess('device:/dev/tpmrm0'))).toThrow(TypeError);
  });

  it('refuses malformed references and keys that are not unrestricted P-256 signing keys', () => {
    expect(() =>
      parseKeyRef(JSON.stringify({ storage: 'tpm', tcti: 'x', parent: 'owner', publicB64: '', privateB64: '' })),
    ).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    const bad: TpmKeyRef = { storage: 'tpm', tcti: 'x', parent: TPM_RH.OWNER, publicB64: 'AAE=', privateB64: 'AAA=' };
    expect(() => TpmSigner.fromRef(bad, new TpmAccess('x'))).toThrow(
      expect.objectContaining({ code: 'config_invalid' }),
    );
    expect(() => tss2PemOfRef(bad)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const p384 = { public: toSized(tpmtPublic, publicFromKeyObject(publicKey)), private: randomBytes(8) };
    expect(() => TpmSigner.fromBlob(new TpmAccess('x'), p384)).toThrow(
      expect.objectContaining({ code: 'unsupported_key' }),
    );
  });
});
