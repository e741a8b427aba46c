/**
 * Fuzzing the TPM 2.0 structures the issuer reads from an agent (TPM 2.0 Part 2: §12.2.5
 * TPM2B_PUBLIC, §10.12.12 TPMS_ATTEST, §11.3.4 TPMT_SIGNATURE) and the tpm join's checks that
 * run on them before any TPM has proven anything: EK, AK and identity key checks, MakeCredential
 * to the EK, and quote / certification verification.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { checkAk } from '../../src/attest/ak.js';
import { verifyCertify } from '../../src/attest/certify.js';
import { credentialChallenge } from '../../src/attest/credential.js';
import { checkIdentityKey } from '../../src/attest/key.js';
import { verifyQuote } from '../../src/attest/quote.js';
import { parsePublic, parseSignedAttest } from '../../src/attest/structures.js';
import { readEk } from '../../src/join/ek-trust.js';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from '../../src/tpm/constants.js';
import { TpmReader } from '../../src/tpm/marshal.js';
import { objectName } from '../../src/tpm/name.js';
import { tpm2bAttest, tpmsAttest, type TpmsAttest } from '../../src/tpm/structures/attest.js';
import { marshal, toSized, unmarshal } from '../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../src/tpm/structures/keys.js';
import { tpmlPcrSelection } from '../../src/tpm/structures/pcr.js';
import { tpm2bPublic, tpmtPublic, type TpmtPublic } from '../../src/tpm/structures/public.js';
import { tpmtSignature, type TpmtSignature } from '../../src/tpm/structures/signature.js';
import {
  akTemplateEccP256,
  ekTemplateEccP256,
  ekTemplateRsa2048,
  signingKeyTemplateEccP256,
} from '../../src/tpm/templates.js';
import {
  beLengthFieldsAt,
  fuzzParams,
  fuzzTimeout,
  mustBeCoded,
  mutated,
  randomBytes as randomBytesArb,
  type LengthField,
} from './harness.js';
import { replayRegressions } from './regressions.js';

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

/** u16 and u32 length fields anywhere: TPM2B sizes, TPML counts, sizeofSelect. */
const tpmFields = (b: Buffer): LengthField[] => [...beLengthFieldsAt(2)(b), ...beLengthFieldsAt(4)(b)];
const tpmBytes = (seeds: Buffer[]): fc.Arbitrary<Buffer> =>
  fc.oneof({ weight: 1, arbitrary: randomBytesArb(1024) }, { weight: 4, arbitrary: mutated(seeds, tpmFields) });

/** A public area for `key` shaped like `template` (attributes, scheme, symmetric). */
function areaFor(template: TpmtPublic, key: KeyObject): TpmtPublic {
  const soft = publicFromKeyObject(key);
  return {
    ...template,
    unique: soft.unique,
    ...(template.type === TPM_ALG.RSA ? { parameters: { ...template.parameters, keyBits: 2048 } } : {}),
  } as TpmtPublic;
}
const sizedPublic = (p: TpmtPublic): Buffer => Buffer.from(marshal(tpm2bPublic, toSized(tpmtPublic, p)));

const ak = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const idKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ekEc = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ekRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const akArea = areaFor(akTemplateEccP256(), ak.publicKey);
const keyArea = areaFor(signingKeyTemplateEccP256(), idKey.publicKey);
const publics = [
  sizedPublic(areaFor(ekTemplateEccP256(), ekEc.publicKey)),
  sizedPublic(areaFor(ekTemplateRsa2048(), ekRsa.publicKey)),
  sizedPublic(akArea),
  sizedPublic(keyArea),
];
const idSpki = idKey.publicKey.export({ type: 'spki', format: 'der' });
const nonce = randomBytes(32);
const selection = [{ bank: 'sha256' as const, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }];

function attest(type: number, attested: unknown): Buffer {
  const a = {
    magic: TPM_GENERATED_VALUE,
    type,
    qualifiedSigner: Buffer.concat([Buffer.from([0, 0x0b]), randomBytes(32)]),
    extraData: nonce,
    clockInfo: { clock: 123456n, resetCount: 1, restartCount: 0, safe: true },
    firmwareVersion: 0x2023_0001n,
    attested,
  } as TpmsAttest;
  return Buffer.from(marshal(tpmsAttest, a));
}

function ecdsa(message: Buffer): TpmtSignature {
  const rs = sign('sha256', message, { key: ak.privateKey, dsaEncoding: 'ieee-p1363' });
  return { sigAlg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256, r: rs.subarray(0, 32), s: rs.subarray(32) };
}

const quote = attest(TPM_ST.ATTEST_QUOTE, {
  pcrSelect: [{ hash: TPM_ALG.SHA256, pcrSelect: Buffer.from([0xff, 0, 0]) }],
  pcrDigest: randomBytes(32),
});
const certify = attest(TPM_ST.ATTEST_CERTIFY, {
  name: objectName(keyArea),
  qualifiedName: Buffer.concat([Buffer.from([0, 0x0b]), randomBytes(32)]),
});
const attests = [
  quote,
  certify,
  attest(TPM_ST.ATTEST_TIME, {
    time: { time: 1n, clockInfo: { clock: 2n, resetCount: 0, restartCount: 0, safe: false } },
    firmwareVersion: 3n,
  }),
  attest(TPM_ST.ATTEST_NV, { indexName: Buffer.from([0, 0x0b, 1]), offset: 0, nvContents: Buffer.from('nv') }),
];
const signatures = [
  Buffer.from(marshal(tpmtSignature, ecdsa(quote))),
  Buffer.from(marshal(tpmtSignature, ecdsa(certify))),
  Buffer.from(marshal(tpmtSignature, { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig: randomBytes(256) })),
  Buffer.from(marshal(tpmtSignature, { sigAlg: TPM_ALG.HMAC, hashAlg: TPM_ALG.SHA256, digest: randomBytes(32) })),
  Buffer.from(marshal(tpmtSignature, { sigAlg: TPM_ALG.NULL })),
];

/** The parsers by name, for test/fuzz/regressions/tpm.json. */
export const TPM_TARGETS: Record<string, (b: Buffer) => unknown> = {
  tpm2bPublic: (b) => parsePublic(b64(b), 'key_public'),
  tpmsAttest: (b) => parseSignedAttest({ attest: b64(b), signature: b64(signatures[0]!) }, 'quote', 'quote_invalid'),
  tpmtSignature: (b) => parseSignedAttest({ attest: b64(quote), signature: b64(b) }, 'quote', 'quote_invalid'),
  tpmlPcrSelection: (b) => {
    const r = new TpmReader(b, 'TPML_PCR_SELECTION');
    tpmlPcrSelection.read(r);
    r.assertDone();
  },
  tpm2bAttest: (b) => unmarshal(tpm2bAttest, b),
};

/** What round 1 of the tpm join does with ek_public, ak_public and key_public. */
function round1(ek: Buffer, akPub: Buffer, key: Buffer): void {
  const e = readEk({ ek_public: b64(ek) });
  const a = parsePublic(b64(akPub), 'ak_public');
  checkAk(a);
  checkIdentityKey(parsePublic(b64(key), 'key_public'), idSpki);
  credentialChallenge(e.public, a);
}

describe('TPM structure fuzzing', () => {
  it('the seeds are valid (a round 1 and the quote/certify checks pass)', () => {
    round1(publics[0]!, publics[2]!, publics[3]!);
    round1(publics[1]!, publics[2]!, publics[3]!);
    const akPub = parsePublic(b64(publics[2]!), 'ak_public');
    verifyQuote(
      parseSignedAttest({ attest: b64(quote), signature: b64(signatures[0]!) }, 'quote', 'quote_invalid'),
      akPub,
      nonce,
      selection,
    );
    verifyCertify(
      parseSignedAttest({ attest: b64(certify), signature: b64(signatures[1]!) }, 'certification', 'certify_invalid'),
      akPub,
      parsePublic(b64(publics[3]!), 'key_public'),
      nonce,
    );
  });

  for (const [name, parse] of Object.entries(TPM_TARGETS)) {
    const seeds =
      name === 'tpm2bPublic'
        ? publics
        : name === 'tpmtSignature'
          ? signatures
          : name === 'tpmlPcrSelection'
            ? [
                Buffer.from(
                  marshal(tpmlPcrSelection, [
                    { hash: 0x0b, pcrSelect: Buffer.from([0xff, 0, 0]) },
                    { hash: 4, pcrSelect: Buffer.from([1, 2, 3]) },
                  ]),
                ),
              ]
            : name === 'tpm2bAttest'
              ? attests.map((a) => Buffer.concat([Buffer.from([a.length >> 8, a.length & 0xff]), a]))
              : attests;
    it(
      `${name}: coded errors only`,
      () => {
        fc.assert(
          fc.property(tpmBytes(seeds), (b) => mustBeCoded(name, b, parse)),
          fuzzParams(),
        );
      },
      fuzzTimeout(),
    );
  }

  it(
    'round 1: EK, AK and identity key checks and MakeCredential on mutated public areas',
    () => {
      const arb = fc.tuple(fc.nat(2), tpmBytes(publics)).map(([slot, b]) => {
        const args = [publics[slot === 0 ? 0 : 1]!, publics[2]!, publics[3]!] as [Buffer, Buffer, Buffer];
        args[slot] = b;
        return args;
      });
      fc.assert(
        fc.property(arb, (args) => mustBeCoded('tpm round 1', args, (x) => round1(...x))),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'round 2: quote and certification verification on mutated attestations and signatures',
    () => {
      const akPub = parsePublic(b64(publics[2]!), 'ak_public');
      const keyPub = parsePublic(b64(publics[3]!), 'key_public');
      const arb = fc.tuple(fc.boolean(), fc.boolean(), tpmBytes(attests), tpmBytes(signatures));
      fc.assert(
        fc.property(arb, ([isQuote, mutateSig, a, s]) => {
          const base = isQuote ? quote : certify;
          const input = {
            attest: b64(mutateSig ? base : a),
            signature: b64(mutateSig ? s : signatures[isQuote ? 0 : 1]!),
          };
          mustBeCoded('verify quote/certify', input, (w) => {
            const code = isQuote ? 'quote_invalid' : 'certify_invalid';
            const sa = parseSignedAttest(w, isQuote ? 'quote' : 'certification', code);
            if (isQuote) verifyQuote(sa, akPub, nonce, selection);
            else verifyCertify(sa, akPub, keyPub, nonce);
          });
        }),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );
});

describe('TPM: claimed sizes are never allocated', () => {
  const cases: Array<[string, Buffer]> = [
    ['TPM2B_PUBLIC size 0xffff with 2 bytes behind it', Buffer.from([0xff, 0xff, 0x00, 0x23])],
    [
      'TPMT_PUBLIC whose authPolicy claims 0xffff',
      Buffer.concat([Buffer.from([0, 10, 0, 0x23, 0, 0x0b, 0, 0, 0, 0x72, 0xff, 0xff]), Buffer.alloc(4)]),
    ],
    [
      'TPMS_ATTEST whose qualifiedSigner claims 0x8000',
      Buffer.from([0xff, 0x54, 0x43, 0x47, 0x80, 0x18, 0x80, 0x00, 0x00]),
    ],
    ['TPML_PCR_SELECTION count 0xffffffff', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x0b, 0x03])],
    ['TPML_PCR_SELECTION count 0x80000000', Buffer.from([0x80, 0x00, 0x00, 0x00])],
    ['TPMT_SIGNATURE RSASSA with sig size 0xffff', Buffer.from([0x00, 0x14, 0x00, 0x0b, 0xff, 0xff, 0x01])],
  ];
  const targets: Record<string, (b: Buffer) => unknown> = {
    tpm2bPublic: TPM_TARGETS.tpm2bPublic!,
    tpmtPublic: (b) => unmarshal(tpmtPublic, b),
    tpmsAttest: TPM_TARGETS.tpmsAttest!,
    tpmlPcrSelection: TPM_TARGETS.tpmlPcrSelection!,
    tpmtSignature: TPM_TARGETS.tpmtSignature!,
  };
  for (const [what, b] of cases) {
    it(what, () => {
      for (const [name, parse] of Object.entries(targets)) {
        mustBeCoded(`${name}: ${what}`, b, parse, { maxMs: 50 });
        expect(() => parse(b), name).toThrow(SigilError);
      }
    });
  }
  it('a TPMT_PUBLIC round-trips (the codec under test is the real one)', () => {
    expect(Buffer.from(marshal(tpmtPublic, unmarshal(tpmtPublic, publics[3]!.subarray(2))))).toEqual(
      publics[3]!.subarray(2),
    );
    expect(createPublicKey({ key: idSpki, format: 'der', type: 'spki' }).equals(idKey.publicKey)).toBe(true);
  });
});

replayRegressions('tpm', { ...TPM_TARGETS, round1Ek: (b: Buffer) => round1(b, publics[2]!, publics[3]!) });
