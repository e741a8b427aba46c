/**
 * The attestation key of the agent's last tpm join, kept in the agent's settings: the issuer
 * recorded its public area, and every renewal proves its new TPM key with TPM2_Certify by this
 * AK (join/tpm/key-attestation.ts). The AK is a restricted key, not a Signer, so what is kept is
 * its two blobs (TPM2B encodings, base64), usable only inside the TPM that made them.
 */
import type { TpmSigner } from '../../keystore/tpm.js';
import type { KeyBlob } from '../../tpm/tpm.js';
import type { AgentSettings } from '../registry.js';
import { attestRenewalKey } from './key-attestation.js';
import { akText, KeptTpmState, parseAkText, TPM_AK_SETTING } from './kept-state.js';

export function saveAk(settings: AgentSettings, ak: KeyBlob): void {
  settings.setSetting(TPM_AK_SETTING, akText(ak));
}

export function loadAk(settings: AgentSettings): KeyBlob | undefined {
  const s = settings.getSetting(TPM_AK_SETTING);
  return s ? parseAkText(s) : undefined;
}

/**
 * TPM2_Certify of a renewal's new TPM key by the kept AK; undefined when there is no AK.
 * `kept`: the method's memo of the parsed AK (kept-state.ts).
 */
export async function certifyWithAk(
  settings: AgentSettings,
  key: TpmSigner,
  requestId: string,
  kept: KeptTpmState = new KeptTpmState(),
): Promise<Record<string, unknown> | undefined> {
  const ak = kept.ak(settings);
  if (!ak) return undefined;
  return (await attestRenewalKey({ ak, key, requestId })) as unknown as Record<string, unknown>;
}

/** TPM identity keys made for joins in flight, found again by the tpm method by their SPKI. */
export class PendingTpmKeys {
  private readonly keys: TpmSigner[] = [];
  add(k: TpmSigner): void {
    this.keys.push(k);
    if (this.keys.length > 8) this.keys.shift();
  }
  find(spki: Buffer): TpmSigner | undefined {
    return this.keys.find((k) => k.publicKeySpki().equals(spki));
  }
}
