/**
 * The agent's half of continuous attestation (issue #16; reattest-wire.ts has the wire form,
 * reattest.ts the issuer's checks): a quote by the AK kept from the join over the join's PCR
 * selection, with qualifyingData = the binding of the request it travels in, the PCR values, and
 * the event log when the TPM rebooted since the last attestation the issuer accepted.
 *
 * What is kept, in the agent's settings beside the AK (`tpm.attestation`, JSON, no migration):
 * the selection the join's challenge named, the clock counters of the last accepted quote, and
 * those of the last quote sent (promoted to accepted when its request succeeds:
 * {@link acceptAttestation}). resetCount/restartCount are obfuscated per AK (TPM 2.0 Part 1
 * §36.7), so they compare only between quotes of that AK — as they are here, and on the issuer.
 * The issuer decides anyway: a reboot it sees without a log is refused (`eventlog_required`).
 */
import type { SignedAttestation } from '../../tpm/tpm.js';
import { encodeSignedAttest } from '../../attest/structures.js';
import { OWNER_PARENT } from '../../keystore/tpm-access.js';
import type { AgentSettings } from '../registry.js';
import { quoteWithValues, type JoinAttestation, type TpmJoinAgent } from './agent.js';
import { loadAk } from './ak-store.js';
import { tpmAttestationStateSchema, type TpmAttestationState, type TpmReattest } from './reattest-wire.js';
import { bankName } from './wire.js';

const TPM_ATTESTATION_SETTING = 'tpm.attestation';

function loadState(settings: AgentSettings): TpmAttestationState | undefined {
  const s = settings.getSetting(TPM_ATTESTATION_SETTING);
  if (!s) return undefined;
  const parsed = tpmAttestationStateSchema.safeParse(JSON.parse(s));
  return parsed.success ? parsed.data : undefined;
}

function saveState(settings: AgentSettings, st: TpmAttestationState | undefined): void {
  settings.setSetting(TPM_ATTESTATION_SETTING, st === undefined ? '' : JSON.stringify(st));
}

/** After a join: keep its selection and counters (its quote was accepted), or forget them (no profile). */
export function saveJoinAttestation(settings: AgentSettings, a: JoinAttestation | undefined): void {
  saveState(
    settings,
    a && {
      pcr_selection: a.pcrSelection,
      accepted: { reset_count: a.resetCount, restart_count: a.restartCount },
    },
  );
}

/** The request that carried the last quote succeeded: its counters are the issuer's now. */
export function acceptAttestation(settings: AgentSettings): void {
  const st = loadState(settings);
  if (st?.sent) saveState(settings, { pcr_selection: st.pcr_selection, accepted: st.sent });
}

/**
 * Fresh evidence bound to `binding`, or undefined when the last join's rule named no firmware
 * profile (nothing kept) or no AK was kept.
 */
export async function freshTpmEvidence(
  method: TpmJoinAgent,
  settings: AgentSettings,
  binding: Buffer,
): Promise<Record<string, unknown> | undefined> {
  const st = loadState(settings);
  const akBlob = loadAk(settings);
  if (!st || !akBlob) return undefined;
  const access = method.access;
  const { quote, values } = await access.run(async (tpm) => {
    const ak = await access.withParent(tpm, OWNER_PARENT, (srk) => tpm.load(srk, akBlob));
    return tpm.withTransient(ak, (loaded) => quoteWithValues(tpm, loaded, binding, st.pcr_selection));
  });
  const counters = countersOf(quote);
  const rebooted =
    st.accepted?.reset_count !== counters.reset_count || st.accepted?.restart_count !== counters.restart_count;
  const eventLog = rebooted ? method.eventLog() : undefined;
  saveState(settings, { ...st, sent: counters });
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
