/**
 * The TPM 2.0 structure codecs the issuer runs on agent-supplied bytes (TPMS_ATTEST, TPMT_PUBLIC,
 * TPMT_SIGNATURE, PCR selections and the generic TPM2B/TPML codecs), where
 * `npm run mutate -- tpm-structures` found behaviour no test held (issue #20): every attestation
 * and signature kind read back as written, each bound at exactly its limit, and truncations named
 * by the field and the structure (the refusal an operator reads when an agent sends garbage).
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST, TPMA_OBJECT } from '../../../src/tpm/constants.js';
import { TpmParseError } from '../../../src/tpm/marshal.js';
import { tpmsAttest, type TpmsAttest } from '../../../src/tpm/structures/attest.js';
import { bytes2b, list, marshal, optionalSized, sized, unmarshal, yesNo } from '../../../src/tpm/structures/codec.js';
import { u16 } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../../src/tpm/structures/keys.js';
import { describeSelection, pcrSelection, selectedPcrs, tpmsPcrSelection } from '../../../src/tpm/structures/pcr.js';
import { hasAttributes, tpmtPublic, type TpmtPublic } from '../../../src/tpm/structures/public.js';
import {
  isEccSignature,
  isRsaSignature,
  tpmtSignature,
  type TpmtSignature,
} from '../../../src/tpm/structures/signature.js';
import { ekTemplateRsa2048 } from '../../../src/tpm/templates.js';

/** The exact parse refusal of `bytes` as `codec`. */
function parseError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TpmParseError);
    return (e as Error).message;
  }
  throw new Error('expected a parse refusal');
}

const name34 = Buffer.concat([Buffer.from([0, 0x0b]), Buffer.alloc(32, 7)]);
const common = {
  magic: TPM_GENERATED_VALUE,
  qualifiedSigner: name34,
  extraData: Buffer.alloc(32, 1),
  clockInfo: { clock: 1000n, resetCount: 1, restartCount: 2, safe: true },
  firmwareVersion: 0x0102030405060708n,
};
const digest = Buffer.alloc(32, 9);
/**
 * Offset of the attested part: magic 4, type 2, qualifiedSigner 2+34, extraData 2+32, clockInfo 17,
 * firmwareVersion 8 (a UINT64 is read as two UINT32s: a cut names the half it stopped in).
 */
const ATTESTED = 101;

const kinds: TpmsAttest[] = [
  {
    ...common,
    type: TPM_ST.ATTEST_QUOTE,
    attested: { pcrSelect: pcrSelection({ hash: TPM_ALG.SHA256, pcrs: [0, 7] }), pcrDigest: digest },
  },
  { ...common, type: TPM_ST.ATTEST_CERTIFY, attested: { name: name34, qualifiedName: name34 } },
  { ...common, type: TPM_ST.ATTEST_CREATION, attested: { objectName: name34, creationHash: digest } },
  {
    ...common,
    type: TPM_ST.ATTEST_TIME,
    attested: { time: { time: 5n, clockInfo: { ...common.clockInfo, safe: false } }, firmwareVersion: 9n },
  },
  { ...common, type: TPM_ST.ATTEST_NV, attested: { indexName: name34, offset: 3, nvContents: Buffer.from('nv') } },
  { ...common, type: TPM_ST.ATTEST_SESSION_AUDIT, attested: { exclusiveSession: true, sessionDigest: digest } },
  { ...common, type: TPM_ST.ATTEST_SESSION_AUDIT, attested: { exclusiveSession: false, sessionDigest: digest } },
  {
    ...common,
    type: TPM_ST.ATTEST_COMMAND_AUDIT,
    attested: { auditCounter: 77n, digestAlg: TPM_ALG.SHA256, auditDigest: digest, commandDigest: digest },
  },
  { ...common, type: TPM_ST.ATTEST_NV_DIGEST, attested: { indexName: name34, nvDigest: digest } },
] as TpmsAttest[];

const plain = (v: unknown): unknown =>
  JSON.parse(
    JSON.stringify(v, (_k, x) =>
      typeof x === 'bigint'
        ? `${x}n`
        : x instanceof Uint8Array
          ? Buffer.from(x).toString('hex')
          : x?.type === 'Buffer'
            ? Buffer.from(x.data).toString('hex')
            : x,
    ),
  );

describe('TPMS_ATTEST', () => {
  it('every attestation kind reads back as written', () => {
    for (const a of kinds) {
      const bytes = marshal(tpmsAttest, a);
      expect(plain(unmarshal(tpmsAttest, bytes)), `type 0x${a.type.toString(16)}`).toEqual(plain(a));
    }
  });

  it('an exclusiveSession other than 0 or 1, and an unknown kind, are refused', () => {
    const audit = Buffer.from(marshal(tpmsAttest, kinds[5]!));
    audit[ATTESTED] = 2;
    expect(parseError(() => unmarshal(tpmsAttest, audit))).toBe(
      `TPMS_ATTEST: exclusiveSession is 2 (at byte ${ATTESTED + 1})`,
    );
    const unknown = Buffer.from(marshal(tpmsAttest, kinds[0]!));
    unknown.writeUInt16BE(0x8099, 4);
    expect(parseError(() => unmarshal(tpmsAttest, unknown))).toBe(
      `TPMS_ATTEST: unknown attestation type 0x8099 (at byte ${ATTESTED})`,
    );
  });

  it('truncations name the field', () => {
    const cut = (a: TpmsAttest, n: number): string =>
      parseError(() => unmarshal(tpmsAttest, marshal(tpmsAttest, a).subarray(0, n)));
    const quote = kinds[0]!;
    expect(cut(quote, 2)).toBe('TPMS_ATTEST: truncated reading magic: need 4 bytes, have 2 (at byte 0)');
    expect(cut(quote, 5)).toBe('TPMS_ATTEST: truncated reading type: need 2 bytes, have 1 (at byte 4)');
    expect(cut(quote, 95)).toBe('TPMS_ATTEST: truncated reading firmwareVersion: need 4 bytes, have 2 (at byte 93)');
    // TIME: time (8) and clockInfo (17), then the attested firmwareVersion.
    expect(cut(kinds[3]!, ATTESTED + 27)).toBe(
      `TPMS_ATTEST: truncated reading firmwareVersion: need 4 bytes, have 2 (at byte ${ATTESTED + 25})`,
    );
    expect(cut(kinds[4]!, ATTESTED + 37)).toBe(
      `TPMS_ATTEST: truncated reading offset: need 2 bytes, have 1 (at byte ${ATTESTED + 36})`,
    );
    expect(cut(kinds[5]!, ATTESTED)).toBe(
      `TPMS_ATTEST: truncated reading exclusiveSession: need 1 bytes, have 0 (at byte ${ATTESTED})`,
    );
    expect(cut(kinds[7]!, ATTESTED + 2)).toBe(
      `TPMS_ATTEST: truncated reading auditCounter: need 4 bytes, have 2 (at byte ${ATTESTED})`,
    );
    expect(cut(kinds[7]!, ATTESTED + 9)).toBe(
      `TPMS_ATTEST: truncated reading digestAlg: need 2 bytes, have 1 (at byte ${ATTESTED + 8})`,
    );
  });
});

describe('TPMT_SIGNATURE', () => {
  const ecc = (sigAlg: number): TpmtSignature =>
    ({ sigAlg, hash: TPM_ALG.SHA256, r: Buffer.alloc(32, 1), s: Buffer.alloc(32, 2) }) as TpmtSignature;
  const rsa = (sigAlg: number): TpmtSignature =>
    ({ sigAlg, hash: TPM_ALG.SHA256, sig: Buffer.alloc(256, 3) }) as TpmtSignature;
  const all: TpmtSignature[] = [
    { sigAlg: TPM_ALG.NULL },
    rsa(TPM_ALG.RSASSA),
    rsa(TPM_ALG.RSAPSS),
    ecc(TPM_ALG.ECDSA),
    ecc(TPM_ALG.ECDAA),
    ecc(TPM_ALG.SM2),
    ecc(TPM_ALG.ECSCHNORR),
    { sigAlg: TPM_ALG.HMAC, hashAlg: TPM_ALG.SHA256, digest } as TpmtSignature,
  ];

  it('every kind reads back as written, and is classified as what it is', () => {
    for (const s of all) expect(plain(unmarshal(tpmtSignature, marshal(tpmtSignature, s)))).toEqual(plain(s));
    expect(all.map(isEccSignature)).toEqual([false, false, false, true, true, true, true, false]);
    expect(all.map(isRsaSignature)).toEqual([false, true, true, false, false, false, false, false]);
  });

  it('an unknown algorithm and truncations are named', () => {
    expect(parseError(() => unmarshal(tpmtSignature, Buffer.from([0x99, 0x99])))).toBe(
      'TPMT_SIGNATURE: unsupported signature algorithm 0x9999 (at byte 2)',
    );
    expect(parseError(() => unmarshal(tpmtSignature, Buffer.from([0x00])))).toBe(
      'TPMT_SIGNATURE: truncated reading TPMT_SIGNATURE.sigAlg: need 2 bytes, have 1 (at byte 0)',
    );
    for (const alg of [TPM_ALG.RSAPSS, TPM_ALG.ECDSA])
      expect(parseError(() => unmarshal(tpmtSignature, Buffer.from([alg >> 8, alg & 0xff, 0])))).toBe(
        'TPMT_SIGNATURE: truncated reading hash: need 2 bytes, have 1 (at byte 2)',
      );
  });
});

describe('TPMT_PUBLIC', () => {
  const rsaPub = publicFromKeyObject(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey) as TpmtPublic;
  const eccPub = publicFromKeyObject(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey) as TpmtPublic;
  const keyed = {
    type: TPM_ALG.KEYEDHASH,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: TPMA_OBJECT.sign,
    authPolicy: Buffer.alloc(0),
    parameters: { scheme: { scheme: TPM_ALG.HMAC, hashAlg: TPM_ALG.SHA256 } },
    unique: Buffer.alloc(32, 1),
  } as TpmtPublic;
  const symcipher = {
    type: TPM_ALG.SYMCIPHER,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: TPMA_OBJECT.decrypt,
    authPolicy: Buffer.alloc(0),
    parameters: { symmetric: { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB } },
    unique: Buffer.alloc(32, 2),
  } as TpmtPublic;

  it('RSA, ECC, keyed-hash and symmetric objects read back as written', () => {
    for (const p of [rsaPub, eccPub, keyed, symcipher, ekTemplateRsa2048() as TpmtPublic])
      expect(plain(unmarshal(tpmtPublic, marshal(tpmtPublic, p)))).toEqual(plain(p));
  });

  it('truncations name the field', () => {
    const cut = (p: TpmtPublic, n: number): string =>
      parseError(() => unmarshal(tpmtPublic, marshal(tpmtPublic, p).subarray(0, n)));
    expect(cut(rsaPub, 1)).toBe('TPMT_PUBLIC: truncated reading TPMT_PUBLIC.type: need 2 bytes, have 1 (at byte 0)');
    expect(cut(rsaPub, 3)).toBe('TPMT_PUBLIC: truncated reading TPMT_PUBLIC.nameAlg: need 2 bytes, have 1 (at byte 2)');
    expect(cut(rsaPub, 6)).toBe(
      'TPMT_PUBLIC: truncated reading TPMT_PUBLIC.objectAttributes: need 4 bytes, have 2 (at byte 4)',
    );
    // type 2, nameAlg 2, attributes 4, authPolicy 2 + 0, symmetric NULL 2, scheme NULL 2: keyBits at 14.
    expect(cut(rsaPub, 15)).toBe('TPMT_PUBLIC: truncated reading keyBits: need 2 bytes, have 1 (at byte 14)');
    expect(cut(rsaPub, 17)).toBe('TPMT_PUBLIC: truncated reading exponent: need 4 bytes, have 1 (at byte 16)');
    expect(cut(eccPub, 15)).toBe('TPMT_PUBLIC: truncated reading curveID: need 2 bytes, have 1 (at byte 14)');
  });

  it('hasAttributes: all of the bits, not some', () => {
    const p = { ...eccPub, objectAttributes: TPMA_OBJECT.sign | TPMA_OBJECT.fixedTPM } as TpmtPublic;
    expect(hasAttributes(p, TPMA_OBJECT.sign | TPMA_OBJECT.fixedTPM)).toBe(true);
    expect(hasAttributes(p, TPMA_OBJECT.sign | TPMA_OBJECT.fixedParent)).toBe(false);
  });
});

describe('PCR selections', () => {
  it('a selection bitmap of at most 32 octets (256 PCRs); its fields named when cut', () => {
    const sel = (size: number): Buffer => Buffer.concat([Buffer.from([0, 0x0b, size]), Buffer.alloc(size, 0xff)]);
    expect(selectedPcrs(unmarshal(tpmsPcrSelection, sel(32)))).toHaveLength(256);
    expect(parseError(() => unmarshal(tpmsPcrSelection, sel(33)))).toBe(
      'TPMS_PCR_SELECTION: sizeofSelect 33 is too large (at byte 3)',
    );
    expect(parseError(() => unmarshal(tpmsPcrSelection, Buffer.from([0])))).toBe(
      'TPMS_PCR_SELECTION: truncated reading TPMS_PCR_SELECTION.hash: need 2 bytes, have 1 (at byte 0)',
    );
    expect(parseError(() => unmarshal(tpmsPcrSelection, Buffer.from([0, 0x0b])))).toBe(
      'TPMS_PCR_SELECTION: truncated reading sizeofSelect: need 1 bytes, have 0 (at byte 2)',
    );
    expect(parseError(() => unmarshal(tpmsPcrSelection, Buffer.from([0, 0x0b, 3, 1])))).toBe(
      'TPMS_PCR_SELECTION: truncated reading pcrSelect: need 3 bytes, have 1 (at byte 3)',
    );
  });

  it('pcrSelection: at least 3 octets, as many as the highest PCR needs, every PCR kept', () => {
    const one = (pcrs: number[]) => pcrSelection({ hash: TPM_ALG.SHA256, pcrs })[0]!;
    expect(Array.from(one([]).pcrSelect)).toEqual([0, 0, 0]);
    expect(one([23]).pcrSelect).toHaveLength(3);
    expect(one([24]).pcrSelect).toHaveLength(4);
    expect(one([255]).pcrSelect).toHaveLength(32);
    expect(selectedPcrs(one([30, 0]))).toEqual([0, 30]);
    expect(describeSelection([one([7, 1])])).toEqual([{ hash: TPM_ALG.SHA256, pcrs: [1, 7] }]);
    for (const p of [-1, 1.5, 256]) expect(() => one([p])).toThrow(new TypeError(`bad PCR index ${p}`));
  });
});

describe('generic codecs at their limits', () => {
  it('TPMI_YES_NO is 0 or 1', () => {
    expect(unmarshal(yesNo, Buffer.from([0]))).toBe(false);
    expect(unmarshal(yesNo, Buffer.from([1]))).toBe(true);
    expect(parseError(() => unmarshal(yesNo, Buffer.from([2])))).toBe('TPMI_YES_NO: TPMI_YES_NO is 2 (at byte 1)');
    expect(parseError(() => unmarshal(yesNo, Buffer.alloc(0)))).toBe(
      'TPMI_YES_NO: truncated reading TPMI_YES_NO: need 1 bytes, have 0 (at byte 0)',
    );
  });

  it('a bounded TPM2B reads its bytes and writes exactly max', () => {
    const b = bytes2b('TPM2B_FOUR', 4);
    expect(Array.from(unmarshal(b, Buffer.from([0, 2, 5, 6])))).toEqual([5, 6]);
    expect(Buffer.from(marshal(b, Buffer.alloc(4, 1))).toString('hex')).toBe('000401010101');
  });

  it('sized: a value without bytes is encoded; optionalSized names where its content failed', () => {
    expect(Buffer.from(marshal(sized('TPM2B_U16', u16), { value: 7 })).toString('hex')).toBe('00020007');
    const o = optionalSized('TPM2B_OPT', u16);
    expect(Buffer.from(marshal(o, { value: 7 })).toString('hex')).toBe('00020007');
    expect(parseError(() => unmarshal(o, Buffer.from([0, 3, 0, 7, 9])))).toBe(
      'TPM2B_OPT.TPM2B_OPT: 1 trailing bytes (at byte 2)',
    );
  });

  it('a TPML: exactly max entries is fine; its count is named when cut', () => {
    const l = list('TPML_U16', u16, 2);
    expect(unmarshal(l, Buffer.from('0000000200010002', 'hex'))).toEqual([1, 2]);
    expect(parseError(() => unmarshal(l, Buffer.from([0, 0])))).toBe(
      'TPML_U16: truncated reading TPML_U16.count: need 4 bytes, have 2 (at byte 0)',
    );
  });
});
