/**
 * The TSS2 PRIVATE KEY reader and writer, one input per check with the exact message (issue #20:
 * the survivors of `npm run mutate -- parsers`). The file comes from the operator or another
 * tool; a key Sigil cannot load must be refused here, naming the field, rather than fail later
 * inside the TPM with a TPM_RC nobody can map back to the file.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { identityKeyTemplate } from '../../../src/keystore/tpm.js';
import { decodeTss2Key, encodeTss2Key, readTss2Pem, writeTss2Pem } from '../../../src/keystore/tss2-pem.js';
import { boolean, explicit, integer, octetString, oid, sequence, TAG, tlv, utf8String } from '../../../src/pki/der.js';
import { toPem } from '../../../src/pki/pem.js';
import { TPM_RH } from '../../../src/tpm/constants.js';
import { toSized } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../../src/tpm/structures/keys.js';
import { tpmtPublic } from '../../../src/tpm/structures/public.js';
import type { KeyBlob } from '../../../src/tpm/tpm.js';

function fakeBlob(): KeyBlob {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pub = publicFromKeyObject(publicKey, { objectAttributes: identityKeyTemplate().objectAttributes });
  return { public: toSized(tpmtPublic, pub), private: randomBytes(40) };
}

const BLOB = fakeBlob();
const PUB = octetString(Buffer.concat([Buffer.from([0, BLOB.public.bytes.length]), BLOB.public.bytes]));
const PRIV = octetString(Buffer.concat([Buffer.from([0, 40]), BLOB.private]));
const LOADABLE = oid('2.23.133.10.1.3');

/** `config_invalid` with exactly this message. */
function refused(der: Buffer, message: string): void {
  let err: unknown;
  try {
    decodeTss2Key(der);
  } catch (e) {
    err = e;
  }
  expect(err, message).toBeInstanceOf(SigilError);
  expect((err as SigilError).code).toBe('config_invalid');
  expect((err as SigilError).message).toBe(`TSS2 PRIVATE KEY: ${message}`);
}

describe('TSS2 PRIVATE KEY reader: every field checked, and named', () => {
  it('TPMKey must be a SEQUENCE starting with the loadable-key type', () => {
    refused(octetString(Buffer.alloc(2)), 'TPMKey: expected tag 0x30, found 0x4 at offset 0');
    refused(sequence(integer(1), integer(TPM_RH.OWNER), PUB, PRIV), 'type: expected tag 0x6, found 0x2 at offset 3');
    // Another OID (here id-ecPublicKey): not a TPM key at all.
    refused(
      sequence(oid('1.2.840.10045.2.1'), integer(TPM_RH.OWNER), PUB, PRIV),
      'type 1.2.840.10045.2.1 is not a loadable key (2.23.133.10.1.3)',
    );
  });

  it('emptyAuth: one BOOLEAN of one octet inside [0]; absent means the key has a password', () => {
    refused(
      sequence(LOADABLE, explicit(0, boolean(true), boolean(true)), integer(TPM_RH.OWNER), PUB, PRIV),
      'emptyAuth must wrap one BOOLEAN',
    );
    refused(
      sequence(LOADABLE, explicit(0, integer(1)), integer(TPM_RH.OWNER), PUB, PRIV),
      'emptyAuth: expected tag 0x1, found 0x2 at offset 13',
    );
    refused(
      sequence(LOADABLE, explicit(0, tlv(TAG.BOOLEAN, Buffer.from([1, 1]))), integer(TPM_RH.OWNER), PUB, PRIV),
      'emptyAuth: a BOOLEAN is one octet',
    );
    const noFlag = decodeTss2Key(sequence(LOADABLE, integer(TPM_RH.OWNER), PUB, PRIV));
    expect(noFlag.emptyAuth).toBe(false);
    expect(noFlag.parent).toBe(TPM_RH.OWNER);
  });

  it('a policy in [1] or an authPolicy in [3] is refused: Sigil would not satisfy it', () => {
    for (const n of [1, 3])
      refused(
        sequence(LOADABLE, explicit(n, sequence()), integer(TPM_RH.OWNER), PUB, PRIV),
        'the key is bound to a TPM policy, which Sigil does not satisfy',
      );
  });

  it('a [4] description (informational) is read past, not taken for an import secret', () => {
    const k = decodeTss2Key(
      sequence(
        LOADABLE,
        explicit(0, boolean(true)),
        explicit(4, utf8String('web key')),
        integer(TPM_RH.OWNER),
        PUB,
        PRIV,
      ),
    );
    expect(k).toMatchObject({ parent: TPM_RH.OWNER, emptyAuth: true });
  });

  it('parent: present, an INTEGER, a non-negative 32-bit handle', () => {
    refused(sequence(LOADABLE), 'missing parent');
    refused(sequence(LOADABLE, explicit(0, boolean(true))), 'missing parent');
    refused(
      sequence(LOADABLE, octetString(Buffer.alloc(4)), PUB, PRIV),
      'parent: expected tag 0x2, found 0x4 at offset 11',
    );
    refused(sequence(LOADABLE, tlv(TAG.INTEGER, Buffer.alloc(0)), PUB, PRIV), 'parent: empty INTEGER');
    // Negative (-1), 33 bits (0x1_00000000), 41 bits: not a TPM handle, whatever readUIntBE would make of them.
    for (const bytes of [[0xff], [0x01, 0x00, 0x00, 0x00, 0x00], [0x01, 0x00, 0x00, 0x00, 0x00, 0x00]])
      refused(sequence(LOADABLE, tlv(TAG.INTEGER, Buffer.from(bytes)), PUB, PRIV), 'parent is not a TPM handle');
    // 0xFFFFFFFF needs five octets with a leading zero, and is a handle.
    const top = decodeTss2Key(
      sequence(LOADABLE, tlv(TAG.INTEGER, Buffer.from([0, 0xff, 0xff, 0xff, 0xff])), PUB, PRIV),
    );
    expect(top.parent).toBe(0xffffffff);
  });

  it('pubkey and privkey: both present, both OCTET STRINGs', () => {
    refused(sequence(LOADABLE, integer(TPM_RH.OWNER)), 'missing pubkey');
    refused(sequence(LOADABLE, integer(TPM_RH.OWNER), PUB), 'missing privkey');
    refused(
      sequence(LOADABLE, integer(TPM_RH.OWNER), integer(1), PRIV),
      'pubkey: expected tag 0x4, found 0x2 at offset 16',
    );
  });

  it('blobs that do not parse keep the parser error as the cause', () => {
    let err: unknown;
    try {
      decodeTss2Key(sequence(LOADABLE, integer(TPM_RH.OWNER), octetString(Buffer.from([0, 9, 1])), PRIV));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SigilError);
    expect((err as SigilError).message).toMatch(/^TSS2 PRIVATE KEY: the TPM blobs do not parse: ./);
    expect((err as SigilError).cause).toBeInstanceOf(Error);
  });
});

describe('TSS2 PRIVATE KEY PEM', () => {
  it('finds the TSS2 block among others, and says when there is none', () => {
    const pem = writeTss2Pem({ parent: TPM_RH.OWNER, blob: BLOB });
    const other = toPem('CERTIFICATE', Buffer.from([0x30, 0x00]));
    const k = readTss2Pem(other + pem);
    expect(Buffer.from(k.blob.private).equals(Buffer.from(BLOB.private))).toBe(true);
    expect(() => readTss2Pem(other)).toThrow(
      new SigilError('config_invalid', 'no "TSS2 PRIVATE KEY" block in the PEM text'),
    );
    expect(() => readTss2Pem(other)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    // Not PEM at all: the PEM reader's refusal, with this reader's code.
    expect(() => readTss2Pem('not pem')).toThrow(expect.objectContaining({ code: 'config_invalid' }));
  });
});

describe('TSS2 PRIVATE KEY writer', () => {
  it('writes any 32-bit handle, 0 and 0xFFFFFFFF included, and nothing else', () => {
    for (const parent of [0, 0xffffffff])
      expect(decodeTss2Key(encodeTss2Key({ parent, blob: BLOB })).parent).toBe(parent);
    for (const parent of [-1, 1.5, 0x100000000])
      expect(() => encodeTss2Key({ parent, blob: BLOB })).toThrow(
        new TypeError(`TSS2 key parent ${parent} is not a TPM handle`),
      );
  });
});
