/**
 * attest/quote.ts on a quote made in software the way a TPM makes it (TPM2_Quote, Part 3 §18.4):
 * type, nonce, AK signature, selection, and the PCR digest over the reported values.
 */
import { generateKeyPairSync, randomBytes, sign, createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkPcrDigest, verifyQuote, type QuotedPcrs } from '../../../src/attest/quote.js';
import { parseSignedAttest } from '../../../src/attest/structures.js';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from '../../../src/tpm/constants.js';
import { tpmsAttest, type TpmsAttest } from '../../../src/tpm/structures/attest.js';
import { marshal, toSized } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../../src/tpm/structures/keys.js';
import { tpmtPublic, type TpmtPublic } from '../../../src/tpm/structures/public.js';
import { tpmtSignature } from '../../../src/tpm/structures/signature.js';
import { akTemplateEccP256 } from '../../../src/tpm/templates.js';

const ak = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const akPublic = toSized(tpmtPublic, {
  ...akTemplateEccP256(),
  unique: publicFromKeyObject(ak.publicKey).unique,
} as TpmtPublic);
const nonce = randomBytes(32);
const pcrs = new Map([0, 1, 2, 3].map((p) => [p, randomBytes(32)]));
const reported: QuotedPcrs = new Map([['sha256', pcrs]]);
const selection = [{ bank: 'sha256' as const, pcrs: [0, 1, 2, 3] }];
const digestOf = (values: Buffer[]): Buffer => createHash('sha256').update(Buffer.concat(values)).digest();

function quote(o: { extraData?: Buffer; signer?: typeof ak.privateKey; select?: number; digest?: Buffer } = {}) {
  const a = {
    magic: TPM_GENERATED_VALUE,
    type: TPM_ST.ATTEST_QUOTE,
    qualifiedSigner: Buffer.concat([Buffer.from([0, 0x0b]), randomBytes(32)]),
    extraData: o.extraData ?? nonce,
    clockInfo: { clock: 1000n, resetCount: 1, restartCount: 0, safe: true },
    firmwareVersion: 1n,
    attested: {
      pcrSelect: [{ hash: TPM_ALG.SHA256, pcrSelect: Buffer.from([o.select ?? 0x0f, 0, 0]) }],
      pcrDigest: o.digest ?? digestOf([...pcrs.values()]),
    },
  } as TpmsAttest;
  const bytes = Buffer.from(marshal(tpmsAttest, a));
  const rs = sign('sha256', bytes, { key: o.signer ?? ak.privateKey, dsaEncoding: 'ieee-p1363' });
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

const refused = (code: string) => expect.objectContaining({ code });

describe('verifyQuote and checkPcrDigest', () => {
  it('accept a quote by the AK over the asked PCRs whose digest the reported values make', () => {
    const q = quote();
    const info = verifyQuote(q, akPublic, nonce, selection);
    expect(() => checkPcrDigest(q, info, reported)).not.toThrow();
  });

  it('refuse another nonce, another signer, another selection', () => {
    expect(() => verifyQuote(quote({ extraData: randomBytes(32) }), akPublic, nonce, selection)).toThrow(
      refused('quote_nonce_mismatch'),
    );
    expect(() => verifyQuote(quote({ signer: other.privateKey }), akPublic, nonce, selection)).toThrow(
      refused('quote_signature_invalid'),
    );
    expect(() => verifyQuote(quote({ select: 0x07 }), akPublic, nonce, selection)).toThrow(refused('quote_invalid'));
  });

  it('refuse reported values that are not the quoted ones, or miss one: pcr_digest_mismatch', () => {
    const q = quote();
    const info = verifyQuote(q, akPublic, nonce, selection);
    const changed = new Map(pcrs);
    changed.set(2, randomBytes(32));
    expect(() => checkPcrDigest(q, info, new Map([['sha256', changed]]))).toThrow(refused('pcr_digest_mismatch'));
    const missing = new Map(pcrs);
    missing.delete(3);
    expect(() => checkPcrDigest(q, info, new Map([['sha256', missing]]))).toThrow(refused('pcr_digest_mismatch'));
  });
});
