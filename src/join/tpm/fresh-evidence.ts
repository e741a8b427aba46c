/**
 * The agent's half of continuous attestation (issue #16; reattest-wire.ts has the wire form,
 * reattest.ts the issuer's checks): a quote by the AK kept from the join over the join's PCR
 * selection, with qualifyingData = the binding of the request it travels in, the PCR values, and
 * the event log when the TPM rebooted since the last attestation the issuer accepted.
 *
 * What is kept, in the agent's settings beside the AK (`tpm.attestation`, JSON, no migration):
 * the selection the join's challenge named, the clock counters of the last accepted quote, and
 * those of the last quote sent (promoted to accepted when its request succeeds:
 * {@link acceptAttestation}), read and written through the method's memo (kept-state.ts).
 * resetCount/restartCount are obfuscated per AK (TPM 2.0 Part 1 §36.7), so they compare only
 * between quotes of that AK — as they are here, and on the issuer.
 * The issuer decides anyway: a reboot it sees without a log is refused (`eventlog_required`).
 */
import { renewalQualifyingData } from '../../attest/key-attestation.js';
import { encodePublic, encodeSignedAttest } from '../../attest/structures.js';
import { OWNER_PARENT } from '../../keystore/tpm-access.js';
import type { TpmSigner } from '../../keystore/tpm.js';
import { TPM_ST } from '../../tpm/constants.js';
import { hash } from '../../tpm/crypto/hash.js';
import type { PcrValue, SignedAttestation, Tpm, TpmKey } from '../../tpm/tpm.js';
import type { AgentSettings, RenewalProofs } from '../registry.js';
import { quoteWithValues, type JoinAttestation, type TpmJoinAgent } from './agent.js';
import { KeptTpmState, sameCounters } from './kept-state.js';
import type { TpmAttestationState, TpmReattest } from './reattest-wire.js';
import { bankName, PCR_BANK_ALGS, type PcrSelectionWire } from './wire.js';

/** After a join: keep its selection and counters (its quote was accepted), or forget them (no profile). */
export function saveJoinAttestation(
  settings: AgentSettings,
  a: JoinAttestation | undefined,
  kept: KeptTpmState = new KeptTpmState(),
): void {
  kept.saveAttestation(
    settings,
    a && {
      pcr_selection: a.pcrSelection,
      accepted: { reset_count: a.resetCount, restart_count: a.restartCount },
    },
  );
}

/**
 * The request that carried the last quote succeeded: its counters are the issuer's now. `sent`
 * stays, so that the next quote with the same counters (no reboot) and its acceptance store
 * nothing new.
 */
export function acceptAttestation(settings: AgentSettings, kept: KeptTpmState = new KeptTpmState()): void {
  const st = kept.attestation(settings);
  // Accepted already (the steady state): nothing to store, nothing to serialize.
  if (!st?.sent || sameCounters(st.accepted, st.sent)) return;
  kept.saveAttestation(settings, { pcr_selection: st.pcr_selection, accepted: st.sent, sent: st.sent });
}

/**
 * Fresh evidence bound to `binding`, on a TPM connection of its own (the interval `attest`), or
 * undefined when the last join's rule named no firmware profile (nothing kept) or no AK was kept.
 */
export async function freshTpmEvidence(
  method: TpmJoinAgent,
  settings: AgentSettings,
  binding: Buffer,
): Promise<Record<string, unknown> | undefined> {
  const kept = method.kept;
  const st = kept.attestation(settings);
  const akBlob = kept.ak(settings);
  if (!st || !akBlob) return undefined;
  const access = method.access;
  const quoted = await access.run(async (tpm) => {
    const ak = await access.withParent(tpm, OWNER_PARENT, (srk) => tpm.load(srk, akBlob));
    return tpm.withTransient(ak, (loaded) => quoteKept(tpm, kept, loaded, binding, st.pcr_selection));
  });
  return evidenceOf(method, settings, st, quoted);
}

/**
 * Both proofs of a renewal from one TPM connection: TPM2_Certify of the new key by the kept AK
 * (bound to the request id, attest/key-attestation.ts) and, when the join's rule names firmware
 * profiles, the quote by the same AK while it is loaded (bound to `binding`: the request id and
 * the new key's SPKI). The quote then adds only TPM2_Quote to the renewal ({@link quoteKept}; and
 * TPM2_PCR_Read when the PCRs were not read for the last quote or changed since) — no second
 * connection, SRK, AK load or flush (bench/tpm-renew.ts measures the commands it adds).
 */
export async function tpmRenewalProofs(
  method: TpmJoinAgent,
  settings: AgentSettings,
  key: TpmSigner,
  requestId: string,
  binding: Buffer,
): Promise<RenewalProofs> {
  const kept = method.kept;
  const akBlob = kept.ak(settings);
  if (!akBlob) return {};
  const st = kept.attestation(settings);
  const access = key.access;
  const made = await access.run(async (tpm) => {
    const ak = await access.withParent(tpm, OWNER_PARENT, (srk) => tpm.load(srk, akBlob));
    return tpm.withTransient(ak, async (loaded) => {
      const certify = await key.loadWith(tpm, (k) => tpm.certify(k, loaded, renewalQualifyingData(requestId)));
      const quoted = st ? await quoteKept(tpm, kept, loaded, binding, st.pcr_selection) : undefined;
      return { certify, quoted };
    });
  });
  const keyProof = { key_public: encodePublic(key.blob.public), certify: encodeSignedAttest(made.certify) };
  return {
    keyProof,
    ...(st && made.quoted ? { evidence: evidenceOf(method, settings, st, made.quoted) } : {}),
  };
}

/**
 * TPM2_Quote over `selection` with the PCR values it covers. The values are those of the last
 * quote when the new quote's digest is theirs — the steady state, since a profile's PCRs change
 * only at boot — so a renewal's quote adds TPM2_Quote alone, not TPM2_PCR_Read too (on swtpm
 * PCR_Read and the turnaround before the quote were ~0.1 ms of the ~0.4 ms a quote added,
 * bench/tpm-renew.ts). The issuer believes no value for being kept: it checks the digest the TPM
 * signed against the values sent, exactly as when they were just read. With nothing kept (the
 * first quote of this process, another selection), the values are read and quoted afresh
 * (quoteWithValues: PCR_Read then Quote, compared). When a kept value is stale (a PCR extended since),
 * the values read just after the quote serve when they hash to its digest: PCR_Read and Quote, as
 * before, in the other order.
 */
export async function quoteKept(
  tpm: Tpm,
  kept: KeptTpmState,
  ak: TpmKey,
  binding: Uint8Array,
  selection: PcrSelectionWire,
): Promise<{ quote: SignedAttestation; values: PcrValue[] }> {
  const last = kept.lastPcrValues(selection);
  if (last !== undefined) {
    const banks = selection.map((s) => ({ hash: PCR_BANK_ALGS[s.bank], pcrs: s.pcrs }));
    const quote = await tpm.quote(ak, binding, banks);
    if (quotedDigestIs(quote, last)) return { quote, values: [...last] };
    // Values read after the quote that hash to its digest are the quoted ones too: no second Quote.
    const read = inQuoteOrder((await tpm.pcrRead(banks)).values, banks);
    if (quotedDigestIs(quote, read)) {
      kept.keepPcrValues(selection, read);
      return { quote, values: read };
    }
  }
  const fresh = await quoteWithValues(tpm, ak, binding, selection);
  kept.keepPcrValues(selection, fresh.values);
  return fresh;
}

/** PCR values in the order the quote hashes them: bank by bank in selection order, PCRs ascending (Part 3 §18.4). */
function inQuoteOrder(values: readonly PcrValue[], banks: ReadonlyArray<{ hash: number }>): PcrValue[] {
  const rank = (v: PcrValue): number => banks.findIndex((b) => b.hash === v.hash) * 256 + v.pcr;
  return [...values].sort((x, y) => rank(x) - rank(y));
}

/** The quote is a signed TPMS_QUOTE_INFO whose pcrDigest is the hash of `values`, in order (Part 3 §18.4). */
function quotedDigestIs(quote: SignedAttestation, values: readonly PcrValue[]): boolean {
  const a = quote.attest.value;
  const sigHash = (quote.signature as { hash?: number }).hash;
  if (a.type !== TPM_ST.ATTEST_QUOTE || sigHash === undefined) return false;
  return hash(sigHash, ...values.map((v) => v.digest)).equals(Buffer.from(a.attested.pcrDigest));
}

/** The wire form of a quote; the event log when the counters say the TPM rebooted since the last accepted quote. */
function evidenceOf(
  method: TpmJoinAgent,
  settings: AgentSettings,
  st: TpmAttestationState,
  { quote, values }: { quote: SignedAttestation; values: PcrValue[] },
): Record<string, unknown> {
  const counters = countersOf(quote);
  const rebooted =
    st.accepted?.reset_count !== counters.reset_count || st.accepted?.restart_count !== counters.restart_count;
  const eventLog = rebooted ? method.eventLog() : undefined;
  method.kept.markSent(settings, st, counters);
  const ev: TpmReattest = {
    quote: encodeSignedAttest(quote),
    pcr_values: values.map((v) => ({
      bank: bankName(v.hash)!,
      pcr: v.pcr,
      digest: Buffer.from(v.digest).toString('hex'),
    })),
    ...(eventLog !== undefined ? { event_log: eventLog } : {}),
  };
  return ev as unknown as Record<string, unknown>;
}

function countersOf(q: SignedAttestation): { reset_count: number; restart_count: number } {
  const c = q.attest.value.clockInfo;
  return { reset_count: c.resetCount, restart_count: c.restartCount };
}
