/**
 * What the tpm agent keeps in its settings between requests — the AK blob (`tpm.ak`,
 * ak-store.ts) and the attestation state (`tpm.attestation`, fresh-evidence.ts) — read through a
 * memo the join method owns (one per agent; no module state). Each setting is parsed once per
 * distinct stored text instead of at every renewal (JSON, the zod check of the state, the unmarshal
 * of the AK blob: a few µs each, measured). What counts more: a write that would store the text
 * already there is skipped. In steady state a renewal's quote has the counters of the one before
 * it, and each write is a committed transaction on the agent's SQLite state (~0.57 ms wall, 80 µs
 * CPU on the dev machine) — before, a renewal with a quote wrote the state twice (the quote's
 * counters as `sent`, then as `accepted`).
 *
 * The stored text stays the source of truth: a memo entry is used only while the setting holds
 * exactly the text it was parsed from, so another writer (a join, a test) is seen at once.
 */
import { marshal, tpm2bPublic, unmarshal } from '../../tpm/index.js';
import { tpm2bPrivate } from '../../tpm/structures/basic.js';
import type { KeyBlob, PcrValue } from '../../tpm/tpm.js';
import type { AgentSettings } from '../registry.js';
import { tpmAttestationStateSchema, type TpmAttestationState } from './reattest-wire.js';
import type { PcrSelectionWire } from './wire.js';

export type TpmCounters = NonNullable<TpmAttestationState['sent']>;

/** The same reset and restart counters (undefined: none recorded, equal only to none). */
export function sameCounters(a: TpmCounters | undefined, b: TpmCounters | undefined): boolean {
  return (
    a === b ||
    (a !== undefined && b !== undefined && a.reset_count === b.reset_count && a.restart_count === b.restart_count)
  );
}

export const TPM_AK_SETTING = 'tpm.ak';
export const TPM_ATTESTATION_SETTING = 'tpm.attestation';

export function akText(ak: KeyBlob): string {
  return JSON.stringify({
    public: Buffer.from(marshal(tpm2bPublic, ak.public)).toString('base64'),
    private: Buffer.from(marshal(tpm2bPrivate, ak.private)).toString('base64'),
  });
}

export function parseAkText(s: string): KeyBlob {
  const o = JSON.parse(s) as { public: string; private: string };
  return {
    public: unmarshal(tpm2bPublic, Buffer.from(o.public, 'base64')),
    private: unmarshal(tpm2bPrivate, Buffer.from(o.private, 'base64')),
  };
}

/** A stored attestation state, or undefined when absent, emptied (no profile) or not one. */
export function parseAttestationText(s: string | undefined): TpmAttestationState | undefined {
  if (!s) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(s);
  } catch {
    return undefined;
  }
  const parsed = tpmAttestationStateSchema.safeParse(raw);
  return parsed.success ? parsed.data : undefined;
}

export class KeptTpmState {
  #ak: { text: string; blob: KeyBlob } | undefined;
  #attestation: { text: string; state: TpmAttestationState | undefined } | undefined;
  /** The PCR values of the last quote made, for exactly this selection (memory only; fresh-evidence.ts). */
  #pcrValues: { selection: string; values: readonly PcrValue[] } | undefined;

  /** The PCR values the last quote over `selection` covered, or undefined (none yet, another selection). */
  lastPcrValues(selection: PcrSelectionWire): readonly PcrValue[] | undefined {
    const kept = this.#pcrValues;
    return kept !== undefined && kept.selection === JSON.stringify(selection) ? kept.values : undefined;
  }

  /** Keep the values a quote over `selection` covered (their digest was checked against it). */
  keepPcrValues(selection: PcrSelectionWire, values: readonly PcrValue[]): void {
    this.#pcrValues = { selection: JSON.stringify(selection), values };
  }

  /** The AK kept from the last join, or undefined. */
  ak(settings: AgentSettings): KeyBlob | undefined {
    const text = settings.getSetting(TPM_AK_SETTING);
    if (!text) return undefined;
    if (this.#ak?.text !== text) this.#ak = { text, blob: parseAkText(text) };
    return this.#ak.blob;
  }

  /** The attestation state (selection, counters), or undefined when the last join's rule named no profile. */
  attestation(settings: AgentSettings): TpmAttestationState | undefined {
    const text = settings.getSetting(TPM_ATTESTATION_SETTING) ?? '';
    if (this.#attestation?.text !== text) this.#attestation = { text, state: parseAttestationText(text) };
    return this.#attestation.state;
  }

  /**
   * The counters of the quote just made become the state's `sent`, unless the stored state has
   * them already — the steady state, no reboot since the last renewal — which the memo tells
   * without serializing anything: `st` is the state the setting's current text parsed to.
   */
  markSent(settings: AgentSettings, st: TpmAttestationState, sent: TpmCounters): void {
    const memo = this.#attestation;
    if (
      memo !== undefined &&
      memo.state === st &&
      sameCounters(st.sent, sent) &&
      (settings.getSetting(TPM_ATTESTATION_SETTING) ?? '') === memo.text
    )
      return;
    this.saveAttestation(settings, { ...st, sent });
  }

  /** Store the state (undefined: none), unless the setting already holds exactly that. */
  saveAttestation(settings: AgentSettings, state: TpmAttestationState | undefined): void {
    const text = state === undefined ? '' : JSON.stringify(state);
    if ((settings.getSetting(TPM_ATTESTATION_SETTING) ?? '') === text) return;
    settings.setSetting(TPM_ATTESTATION_SETTING, text);
    this.#attestation = { text, state };
  }
}
