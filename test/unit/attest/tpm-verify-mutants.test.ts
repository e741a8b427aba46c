/**
 * The TPM verifier (src/attest/) where `npm run mutate -- tpm-verify` found checks no test held
 * (issue #20), each as the input a hostile agent (or a broken TPM stack) would send:
 *
 * - the PCR selection the quote covers is compared as a set per bank: PCRs 1 and 2 quoted are not
 *   PCR 12 asked for (a join of the list without separators would say they are), while the
 *   issuer's own order, duplicates and empty banks do not matter; the refusal names both sides;
 * - the AK: an RSA AK is an AK; an AK whose public point is not on its curve is refused up front;
 *   a signature of another algorithm family is "not signed by the AK", never an exception;
 * - the EK public area: each refused shape with its exact reason (not RSA/ECC, attributes, SHA-1
 *   name, another block cipher, an unusable key); an EK certificate whose EKU lists other
 *   purposes names them;
 * - the EK memo: parses once per evidence, is bounded (the oldest entry goes first);
 * - choosing among several EK policies: the refusal of the rule that got furthest, the first one
 *   on a tie; a programming error in one rule is not taken as that rule's refusal.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AK_ATTRIBUTES, checkAk, signedByAk } from '../../../src/attest/ak.js';
import { verifyCertify } from '../../../src/attest/certify.js';
import { checkActivation } from '../../../src/attest/credential.js';
import {
  checkEkTrust,
  EkMemo,
  readEk,
  selectEkPolicy,
  type Ek,
  type EkCertView,
  type EkTrustPolicy,
} from '../../../src/attest/ek.js';
import { checkIdentityKey } from '../../../src/attest/key.js';
import { checkPcrDigest, verifyQuote, type PcrSelection } from '../../../src/attest/quote.js';
import { encodePublic, parseSignedAttest, type SignedAttest } from '../../../src/attest/structures.js';
import { SigilError } from '../../../src/errors.js';
import { parseCert, type ParsedCert } from '../../../src/join/x509-cert.js';
import { parsePem } from '../../../src/pki/pem.js';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST, TPMA_OBJECT } from '../../../src/tpm/constants.js';
import { tpmsAttest, type TpmsAttest } from '../../../src/tpm/structures/attest.js';
import { marshal, toSized } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../../src/tpm/structures/keys.js';
import { tpmtPublic, type TpmtPublic } from '../../../src/tpm/structures/public.js';
import { tpmtSignature } from '../../../src/tpm/structures/signature.js';
import { akTemplateEccP256, ekTemplateEccP256, ekTemplateRsa2048 } from '../../../src/tpm/templates.js';
import { OpensslPki } from '../../helpers/openssl-pki.js';

const ak = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const akPublic = toSized(tpmtPublic, {
  ...akTemplateEccP256(),
  unique: publicFromKeyObject(ak.publicKey).unique,
} as TpmtPublic);
const nonce = randomBytes(32);

/** A TPM's PCR bitmap (Part 2 §10.6.1: PCR i is bit i%8 of octet i/8). */
function bitmap(pcrs: number[]): Buffer {
  const b = Buffer.alloc(3);
  for (const p of pcrs) b[p >> 3]! |= 1 << (p & 7);
  return b;
}

/** A quote by the AK over `nonce` covering `banks` (alg, PCRs). */
function quote(banks: Array<[number, number[]]>, extraData: Buffer = nonce): SignedAttest {
  const a = {
    magic: TPM_GENERATED_VALUE,
    type: TPM_ST.ATTEST_QUOTE,
    qualifiedSigner: Buffer.concat([Buffer.from([0, 0x0b]), randomBytes(32)]),
    extraData,
    clockInfo: { clock: 1000n, resetCount: 1, restartCount: 0, safe: true },
    firmwareVersion: 1n,
    attested: {
      pcrSelect: banks.map(([hash, pcrs]) => ({ hash, pcrSelect: bitmap(pcrs) })),
      pcrDigest: randomBytes(32),
    },
  } as TpmsAttest;
  const bytes = Buffer.from(marshal(tpmsAttest, a));
  const rs = sign('sha256', bytes, { key: ak.privateKey, dsaEncoding: 'ieee-p1363' });
  const sig = marshal(tpmtSignature, {
    sigAlg: TPM_ALG.ECDSA,
    hash: TPM_ALG.SHA256,
    r: rs.subarray(0, 32),
    s: rs.subarray(32),
  });
  return parseSignedAttest(
    { attest: bytes.toString('base64'), signature: Buffer.from(sig).toString('base64') },
    'quote',
    'quote_invalid',
  );
}

function refusal(fn: () => unknown): SigilError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('quote: the PCR selection is compared as a set per bank', () => {
  it('attack: PCRs 1 and 2 quoted are not PCR 12 asked for (nor 21)', () => {
    const q = quote([[TPM_ALG.SHA256, [1, 2]]]);
    for (const asked of [[12], [21]]) {
      const e = refusal(() => verifyQuote(q, akPublic, nonce, [{ bank: 'sha256', pcrs: asked }]));
      expect(e.code).toBe('quote_invalid');
      expect(e.message).toBe(
        `the quote covers sha256:1,2, the issuer asked for sha256:${asked[0]} (is that PCR bank allocated in this TPM?)`,
      );
    }
  });

  it('the issuer’s order, duplicates and empty banks do not matter; the TPM’s order is ascending', () => {
    const q = quote([
      [TPM_ALG.SHA1, [0]],
      [TPM_ALG.SHA256, [0, 3, 7, 10]],
    ]);
    const asked: PcrSelection = [
      { bank: 'sha384', pcrs: [] },
      { bank: 'sha256', pcrs: [10, 7, 0, 3, 7] },
      { bank: 'sha1', pcrs: [0] },
    ];
    expect(verifyQuote(q, akPublic, nonce, asked).type).toBe(TPM_ST.ATTEST_QUOTE);
  });

  it('a quote of another selection names both, bank by bank; an empty one says "no PCRs"', () => {
    const two = quote([
      [TPM_ALG.SHA1, [0, 1]],
      [TPM_ALG.SHA256, [7]],
    ]);
    expect(refusal(() => verifyQuote(two, akPublic, nonce, [{ bank: 'sha256', pcrs: [7, 0] }])).message).toBe(
      'the quote covers sha1:0,1 sha256:7, the issuer asked for sha256:7,0 (is that PCR bank allocated in this TPM?)',
    );
    const none = quote([]);
    expect(refusal(() => verifyQuote(none, akPublic, nonce, [{ bank: 'sha256', pcrs: [0] }])).message).toBe(
      'the quote covers no PCRs, the issuer asked for sha256:0 (is that PCR bank allocated in this TPM?)',
    );
  });

  it('a stale nonce and another signer are refused with messages that say so', () => {
    const stale = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const e = refusal(() => verifyQuote(quote([[TPM_ALG.SHA256, [0]]], stale), akPublic, nonce, []));
    expect(e.code).toBe('quote_nonce_mismatch');
    expect(e.message).toBe(
      "the quote's qualifying data (0011223344556677…) is not this challenge's nonce: a replayed or stale quote",
    );
    const other = toSized(tpmtPublic, {
      ...akTemplateEccP256(),
      unique: publicFromKeyObject(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey).unique,
    } as TpmtPublic);
    const s = refusal(() => verifyQuote(quote([[TPM_ALG.SHA256, [0]]]), other, nonce, []));
    expect(s).toMatchObject({
      code: 'quote_signature_invalid',
      message: 'the quote signature does not verify with the attestation key (signed by another key, or altered)',
    });
    const q = quote([[TPM_ALG.SHA256, [0]]]);
    const info = verifyQuote(q, akPublic, nonce, [{ bank: 'sha256', pcrs: [0] }]);
    expect(
      refusal(() => checkPcrDigest(q, info, new Map([['sha256', new Map([[0, Buffer.alloc(32)]])]]))),
    ).toMatchObject({
      code: 'pcr_digest_mismatch',
      message:
        'the reported PCR values do not hash to the digest the TPM quoted (they were changed, or read at another time than the quote)',
    });
  });
});

describe('the attestation key', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const rsaAk = toSized(tpmtPublic, publicFromKeyObject(rsa.publicKey, { objectAttributes: AK_ATTRIBUTES }));

  it('an RSA restricted signing key is an AK', () => {
    expect(() => checkAk(rsaAk)).not.toThrow();
  });

  it('attack: an AK whose point is not on its curve is refused before any signature is checked', () => {
    const { x } = publicFromKeyObject(ak.publicKey).unique as { x: Uint8Array; y: Uint8Array };
    const offCurve = toSized(tpmtPublic, { ...akTemplateEccP256(), unique: { x, y: x } } as TpmtPublic);
    const e = refusal(() => checkAk(offCurve));
    expect(e.code).toBe('ak_attributes_invalid');
    expect(e.message).toMatch(/^the attestation key \(attributes 0x00050072\) has no usable public key: ./);
  });

  it('lacking several attributes, it names each (and the attributes in 8 hex digits)', () => {
    const weak = toSized(tpmtPublic, {
      ...akPublic.value,
      objectAttributes: TPMA_OBJECT.sign | TPMA_OBJECT.restricted | TPMA_OBJECT.userWithAuth,
    } as TpmtPublic);
    expect(refusal(() => checkAk(weak)).message).toBe(
      'the attestation key (attributes 0x00050040) lacks fixedTPM, fixedParent, sensitiveDataOrigin: it must be a restricted signing key generated in and bound to the TPM',
    );
  });

  it('a signature of another algorithm family is "not signed by the AK" (false), not an exception', () => {
    const q = quote([[TPM_ALG.SHA256, [0]]]);
    // The ECDSA quote checked against the RSA AK: the verifier cannot even try.
    expect(signedByAk(rsaAk.value, q)).toBe(false);
  });
});

describe('the identity key, its certification and the credential', () => {
  it('an identity key lacking two attributes names both', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const key = toSized(
      tpmtPublic,
      publicFromKeyObject(publicKey, { objectAttributes: TPMA_OBJECT.sign | TPMA_OBJECT.fixedTPM }),
    );
    expect(refusal(() => checkIdentityKey(key, Buffer.alloc(0)))).toMatchObject({
      code: 'key_not_tpm_resident',
      message:
        'the identity key (attributes 0x00040002) lacks fixedParent, sensitiveDataOrigin: it was not generated in the TPM or can be duplicated out of it (exportable)',
    });
  });

  it('a certification is called one in its refusals unless the caller names it otherwise', () => {
    const q = quote([[TPM_ALG.SHA256, [0]]]);
    expect(refusal(() => verifyCertify(q, akPublic, akPublic, nonce)).message).toBe(
      'the certification of the identity key is an attestation of type 0x8018, not TPM_ST_ATTEST_CERTIFY',
    );
  });

  it('a wrong activation answer says the AK is not in the EK’s TPM', () => {
    const secret = randomBytes(32).toString('base64');
    expect(refusal(() => checkActivation(secret, randomBytes(32).toString('base64')))).toMatchObject({
      code: 'credential_mismatch',
      message:
        'the credential activation answer is not the secret the issuer wrapped to the EK for this AK: the AK is not loaded in the TPM that holds the EK',
    });
  });
});

describe('the EK public area: each refused shape, with its reason', () => {
  const ecEk = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const area = (over: Partial<TpmtPublic>): string =>
    encodePublic(
      toSized(tpmtPublic, {
        ...ekTemplateEccP256(),
        unique: publicFromKeyObject(ecEk.publicKey).unique,
        ...over,
      } as TpmtPublic),
    );
  const refusedEk = (ek_public: string): SigilError => refusal(() => readEk({ ek_public }, () => ({}) as never));
  const NOT_STORAGE = 'the EK public area is not a TPM storage EK: ';

  it('the template itself is an EK', () => {
    expect(readEk({ ek_public: area({}) }, () => ({}) as never).public.value.type).toBe(TPM_ALG.ECC);
  });

  it('ek_public that does not parse is named', () => {
    expect(refusedEk('AAAA').message).toMatch(/^ek_public does not parse: /);
  });

  it('a keyed-hash object', () => {
    const hmac = encodePublic(
      toSized(tpmtPublic, {
        type: TPM_ALG.KEYEDHASH,
        nameAlg: TPM_ALG.SHA256,
        objectAttributes: ekTemplateEccP256().objectAttributes,
        authPolicy: Buffer.alloc(0),
        parameters: { scheme: { scheme: TPM_ALG.NULL } },
        unique: Buffer.alloc(32, 1),
      } as TpmtPublic),
    );
    expect(refusedEk(hmac)).toMatchObject({
      code: 'ek_invalid',
      message: `${NOT_STORAGE}it is neither an RSA nor an ECC key`,
    });
  });

  it('a signing EK, with its attributes in 8 hex digits', () => {
    const attrs = ekTemplateEccP256().objectAttributes | TPMA_OBJECT.sign;
    expect(refusedEk(area({ objectAttributes: attrs })).message).toBe(
      `${NOT_STORAGE}its attributes 0x${attrs.toString(16).padStart(8, '0')} are not those of a restricted decryption key bound to the TPM (restricted|decrypt|fixedTPM|fixedParent|sensitiveDataOrigin, not sign)`,
    );
    expect(attrs.toString(16).length).toBeLessThan(8); // the padding is what is checked
  });

  it('a SHA-1 name, another block cipher in CFB, a point off the curve', () => {
    expect(refusedEk(area({ nameAlg: TPM_ALG.SHA1 })).message).toBe(
      `${NOT_STORAGE}its name algorithm 0x4 is not SHA-256, SHA-384 or SHA-512`,
    );
    const t = ekTemplateEccP256();
    const camellia = { ...t.parameters, symmetric: { algorithm: TPM_ALG.CAMELLIA, keyBits: 128, mode: TPM_ALG.CFB } };
    expect(refusedEk(area({ parameters: camellia } as Partial<TpmtPublic>)).message).toBe(
      `${NOT_STORAGE}it is not a storage key with AES-CFB`,
    );
    const { x } = publicFromKeyObject(ecEk.publicKey).unique as { x: Uint8Array };
    const e = refusedEk(area({ unique: { x, y: x } } as Partial<TpmtPublic>));
    expect(e.code).toBe('ek_invalid');
    expect(e.message).toMatch(/^the EK public key is not usable: ./);
  });
});

describe('EK certificates whose EKU lists other purposes, and the EK memo', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-ek-mutants-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const pki = new OpensslPki(dir);
  const mfr = pki.root('mfr', '/CN=TPM Manufacturer CA', 'rsa');
  const ekKey = pki.key('ek', 'rsa');
  const tls = pki.sign(
    'ek-tls',
    mfr,
    '/CN=ek',
    ['basicConstraints = critical,CA:FALSE', 'extendedKeyUsage = serverAuth,clientAuth'],
    {
      key: ekKey,
      days: 1,
    },
  );
  const der = (file: string): Buffer => parsePem(readFileSync(file, 'utf8'), 'internal')[0]!.der;
  const parse = (d: Buffer): ParsedCert => parseCert(d, 'EK certificate', 'tpm_evidence_malformed');
  const ekPublic = encodePublic(
    toSized(tpmtPublic, {
      ...ekTemplateRsa2048(),
      unique: publicFromKeyObject(createPublicKey(createPrivateKey(readFileSync(ekKey)))).unique,
    } as TpmtPublic),
  );

  it('names every purpose the certificate has, none of them tcg-kp-EKCertificate', async () => {
    const ek = readEk({ ek_public: ekPublic, ek_cert: der(tls.cert).toString('base64') }, parse);
    await expect(
      checkEkTrust(ek, { rule: 'racks', anchors: () => [parse(der(mfr.cert))] }, new Date()),
    ).rejects.toThrow(
      "the EK certificate's extendedKeyUsage (1.3.6.1.5.5.7.3.1, 1.3.6.1.5.5.7.3.2) lacks tcg-kp-EKCertificate (2.23.133.8.1): it was not issued as an EK certificate",
    );
  });

  it('parses each evidence once, keyed by the EK area AND the certificate', () => {
    const memo = new EkMemo();
    let parses = 0;
    const parseOnce = (): Ek<EkCertView> => {
      parses++;
      return { hash: `h${parses}` } as Ek<EkCertView>;
    };
    const a = memo.ek({ ek_public: ekPublic }, parseOnce);
    expect(memo.ek({ ek_public: ekPublic }, parseOnce)).toBe(a);
    expect(parses).toBe(1);
    // The same area with a certificate (or another one) is other evidence.
    const withCert = memo.ek({ ek_public: ekPublic, ek_cert: 'AAAA' }, parseOnce);
    expect(withCert).not.toBe(a);
    expect(memo.ek({ ek_public: ekPublic, ek_cert: 'BBBB' }, parseOnce)).not.toBe(withCert);
    expect(parses).toBe(3);
  });

  it('is bounded: the 257th chain pushes out the oldest, and only it', () => {
    const memo = new EkMemo();
    const at = new Date(1_000_000);
    const until = new Date(2_000_000);
    for (let i = 0; i < EkMemo.SIZE; i++) memo.rememberChain(`k${i}`, at, until, `a${i}`);
    expect(memo.chainAnchor('k0', at)).toBe('a0');
    memo.rememberChain('k256', at, until, 'a256');
    expect(memo.chainAnchor('k0', at)).toBeUndefined();
    expect(memo.chainAnchor('k1', at)).toBe('a1');
    expect(memo.chainAnchor('k256', at)).toBe('a256');
  });
});

describe('choosing among EK policies', () => {
  const ek = { hash: 'sha256:ek', cert: { fingerprint: 'fp' } } as unknown as Ek<EkCertView>;
  const at = new Date();
  const notAllowed = (rule: string): EkTrustPolicy => ({ rule, allow: ['sha256:someone-else'] });
  const throwing = (rule: string, e: Error): EkTrustPolicy => ({
    rule,
    anchors: () => {
      throw e;
    },
  });

  it('on a tie the first rule’s refusal is reported', async () => {
    await expect(selectEkPolicy([notAllowed('first'), notAllowed('second')], ek, at)).rejects.toThrow(
      "the EK sha256:ek is not on join_rule first's allow list",
    );
  });

  it('the rule that got furthest is reported, whatever the order', async () => {
    const untrusted = throwing('b', new SigilError('ek_untrusted', 'b: untrusted'));
    await expect(selectEkPolicy([notAllowed('a'), untrusted], ek, at)).rejects.toThrow(
      "the EK sha256:ek is not on join_rule a's allow list",
    );
    // A code outside the ranking ranks below every EK refusal.
    const odd = throwing('c', new SigilError('internal', 'c: odd'));
    await expect(selectEkPolicy([odd, untrusted], ek, at)).rejects.toThrow('b: untrusted');
  });

  it('a programming error in one rule is thrown, not taken as its refusal (the next rule would let the TPM in)', async () => {
    const bug = throwing('a', new TypeError('boom'));
    await expect(selectEkPolicy([bug, { rule: 'b', allow: ['sha256:ek'] }], ek, at)).rejects.toThrow(TypeError);
  });
});
