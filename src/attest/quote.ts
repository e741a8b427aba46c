/**
 * TPM2_Quote (Part 3 §18.4): the AK signs a TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE holding the
 * issuer's nonce (extraData), the PCR selection and a digest over those PCRs' values. Checked,
 * each with its code:
 *
 *   quote_invalid            not a TPMS_ATTEST of type ATTEST_QUOTE, or another PCR selection
 *                            than the issuer asked for
 *   quote_nonce_mismatch     extraData is not the issuer's nonce (a replayed or stale quote)
 *   quote_signature_invalid  the AK's signature over the exact TPMS_ATTEST bytes does not verify
 *   pcr_digest_mismatch      the PCR values the agent reports do not hash to the quoted
 *                            pcrDigest (Part 2 §10.12.1 TPMS_QUOTE_INFO): only values that do
 *                            are the TPM's, and only they may be replayed or judged
 */
import type { KeyObject } from 'node:crypto';
import { SigilError } from '../errors.js';
import { TPM_ST } from '../tpm/constants.js';
import { hash } from '../tpm/crypto/hash.js';
import { hashAlgById, isPcrBank, type PcrBank } from '../tpm/eventlog/index.js';
import type { TpmsAttest, TpmsQuoteInfo } from '../tpm/structures/attest.js';
import { describeSelection, selectedPcrs } from '../tpm/structures/pcr.js';
import type { Tpm2bPublic } from '../tpm/structures/public.js';
import { signedByAk } from './ak.js';
import type { SignedAttest } from './structures.js';

/** PCRs by bank, as the issuer asks for them and the quote covers them. */
export type PcrSelection = ReadonlyArray<{ bank: PcrBank; pcrs: readonly number[] }>;

/** Quoted PCR values by bank: only values whose digest the quote's signature covers (checkPcrDigest). */
export type QuotedPcrs = ReadonlyMap<PcrBank, ReadonlyMap<number, Buffer>>;

/** The PCR bank of a TPM_ALG_ID, or undefined for a bank Sigil does not replay. */
export function bankOf(alg: number): PcrBank | undefined {
  const name = hashAlgById(alg);
  return isPcrBank(name) ? name : undefined;
}

/** A selection as comparable text: empty banks dropped, PCRs sorted and unique, banks sorted. */
export function selectionKey(s: ReadonlyArray<{ bank: string; pcrs: readonly number[] }>): string {
  return s
    .filter((b) => b.pcrs.length > 0)
    .map((b) => `${b.bank}:${[...new Set(b.pcrs)].sort((x, y) => x - y).join(',')}`)
    .sort()
    .join(' ');
}

/**
 * Whether two selections name the same PCRs. Two lists with the same entries in the same order
 * name the same PCRs whatever their form, and that is the usual case (the TPM's bitmaps come
 * out ascending, as selectionFor writes them), so only other pairs are compared as text.
 */
function sameSelection(got: PcrSelection, want: PcrSelection): boolean {
  const identical =
    got.length === want.length &&
    got.every((g, i) => {
      const w = want[i]!;
      return g.bank === w.bank && g.pcrs.length === w.pcrs.length && g.pcrs.every((p, j) => p === w.pcrs[j]);
    });
  return identical || selectionKey(got) === selectionKey(want);
}

export function selectionText(s: PcrSelection): string {
  return s.map((b) => `${b.bank}:${b.pcrs.join(',')}`).join(' ');
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

export type QuoteAttest = TpmsAttest & { attested: TpmsQuoteInfo };

/**
 * Verify a quote: type, nonce, signature by the AK, selection. Returns its attest structure.
 * `akKey`: the AK's public key when the caller holds it already (checkAk, AkKeys).
 */
export function verifyQuote(
  q: SignedAttest,
  ak: Tpm2bPublic,
  nonce: Buffer,
  selection: PcrSelection,
  akKey?: KeyObject,
): QuoteAttest {
  const a = q.attest.value;
  if (a.type !== TPM_ST.ATTEST_QUOTE)
    throw new SigilError(
      'quote_invalid',
      `the quote is an attestation of type 0x${a.type.toString(16)}, not TPM_ST_ATTEST_QUOTE`,
    );
  if (!nonce.equals(Buffer.from(a.extraData))) {
    throw new SigilError(
      'quote_nonce_mismatch',
      `the quote's qualifying data (${hex(a.extraData).slice(0, 16)}…) is not this challenge's nonce: a replayed or stale quote`,
    );
  }
  if (!signedByAk(ak.value, q, akKey))
    throw new SigilError(
      'quote_signature_invalid',
      'the quote signature does not verify with the attestation key (signed by another key, or altered)',
    );
  const got = describeSelection(a.attested.pcrSelect).map((b) => ({
    bank: bankOf(b.hash) ?? (`0x${b.hash.toString(16)}` as never),
    pcrs: [...b.pcrs],
  }));
  if (!sameSelection(got, selection)) {
    throw new SigilError(
      'quote_invalid',
      `the quote covers ${selectionText(got) || 'no PCRs'}, the issuer asked for ${selectionText(selection)} (is that PCR bank allocated in this TPM?)`,
    );
  }
  return a as QuoteAttest;
}

/** The hash a quote's PCR digest uses: the signing scheme's (Part 3 §18.4). */
export function quoteHashAlg(q: SignedAttest): number {
  return (q.signature as { hash: number }).hash;
}

/**
 * The reported PCR values (which must hold every PCR of the verified quote's selection) hash,
 * in selection order, to the quote's pcrDigest (`pcr_digest_mismatch`).
 */
export function checkPcrDigest(quote: SignedAttest, info: QuoteAttest, reported: QuotedPcrs): void {
  const values = info.attested.pcrSelect.flatMap((sel) =>
    selectedPcrs(sel).map((pcr) => reported.get(bankOf(sel.hash)!)?.get(pcr)),
  );
  const digest = values.every((v) => v !== undefined) ? hash(quoteHashAlg(quote), ...(values as Buffer[])) : undefined;
  if (digest === undefined || !Buffer.from(digest).equals(Buffer.from(info.attested.pcrDigest))) {
    throw new SigilError(
      'pcr_digest_mismatch',
      'the reported PCR values do not hash to the digest the TPM quoted (they were changed, or read at another time than the quote)',
    );
  }
}
