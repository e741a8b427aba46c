/**
 * attest/quote.ts, the cases mutation testing (docs/testing.md, area tpm-verify) found untested:
 *   - a TPM2_Certify attestation, signed by the AK over the challenge nonce, presented as the
 *     quote: it carries no PCR digest at all, and must be refused for its type;
 *   - reported values that lack a whole quoted bank: pcr_digest_mismatch, not a crash.
 */
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkPcrDigest, verifyQuote, type QuoteAttest } from '../../../src/attest/quote.js';
import { parseSignedAttest } from '../../../src/attest/structures.js';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from '../../../src/tpm/constants.js';
import { tpmsAttest, type TpmsAttest } from '../../../src/tpm/structures/attest.js';
import { marshal, toSized } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../../src/tpm/structures/keys.js';
import { tpmtPublic, type TpmtPublic } from '../../../src/tpm/structures/public.js';
import { tpmtSignature } from '../../../src/tpm/structures/signature.js';
import { akTemplateEccP256 } from '../../../src/tpm/templates.js';

const ak = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const akPublic = toSized(tpmtPublic, {
  ...akTemplateEccP256(),
  unique: publicFromKeyObject(ak.publicKey).unique,
} as TpmtPublic);
const nonce = randomBytes(32);
const selection = [{ bank: 'sha256' as const, pcrs: [0, 1] }];

function signed(a: TpmsAttest) {
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

const common = {
  magic: TPM_GENERATED_VALUE,
  qualifiedSigner: Buffer.concat([Buffer.from([0, 0x0b]), randomBytes(32)]),
  extraData: nonce,
  clockInfo: { clock: 1000n, resetCount: 1, restartCount: 0, safe: true },
  firmwareVersion: 1n,
};

describe('attack: other attestations in place of a quote', () => {
  it('a TPM2_Certify by the AK over the nonce, sent as the quote, is quote_invalid for its type', () => {
    const certify = signed({
      ...common,
      type: TPM_ST.ATTEST_CERTIFY,
      attested: { name: randomBytes(34), qualifiedName: randomBytes(34) },
    } as TpmsAttest);
    expect(() => verifyQuote(certify, akPublic, nonce, selection)).toThrow(
      expect.objectContaining({ code: 'quote_invalid', message: expect.stringMatching(/not TPM_ST_ATTEST_QUOTE/) }),
    );
  });

  it('reported values without the quoted bank are pcr_digest_mismatch', () => {
    const q = signed({
      ...common,
      type: TPM_ST.ATTEST_QUOTE,
      attested: {
        pcrSelect: [{ hash: TPM_ALG.SHA256, pcrSelect: Buffer.from([0x03, 0, 0]) }],
        pcrDigest: randomBytes(32),
      },
    } as TpmsAttest);
    const info = verifyQuote(q, akPublic, nonce, selection) as QuoteAttest;
    expect(() => checkPcrDigest(q, info, new Map())).toThrow(expect.objectContaining({ code: 'pcr_digest_mismatch' }));
  });
});
