/**
 * The tpm join in the agent's configuration (agent.yaml, snake_case):
 *
 *   join:
 *     method: tpm
 *     tpm:
 *       tcti: "swtpm:host=127.0.0.1,port=2321"   # default device:/dev/tpmrm0
 *       ek: auto                                 # auto | rsa-2048 | ecc-p256 | ecc-p384
 *       event_log: /sys/kernel/security/tpm0/binary_bios_measurements   # default; false: never send
 *   key_storage: tpm                             # the identity key lives in the same TPM
 *
 * The schema is exported for the agent's config loader; {@link tpmJoinAgentFromConfig} turns a
 * parsed block into the method. The identity key must be a TPM key (key_storage: tpm), since
 * the issuer requires TPM2_Certify of it by the AK.
 */
import type { TpmAccesses } from '../../keystore/tpm-access.js';
import type { TpmSigner } from '../../keystore/tpm.js';
import type { KeyBlob } from '../../tpm/tpm.js';
import { SigilError } from '../../errors.js';
import type { AgentJoinMethodCode } from '../registry.js';
import { TpmJoinAgent } from './agent.js';
import { certifyWithAk, PendingTpmKeys, saveAk } from './ak-store.js';
import { acceptAttestation, freshTpmEvidence, saveJoinAttestation, tpmRenewalProofs } from './fresh-evidence.js';
import { tpmTcti, type TpmAgentConfig } from './schema.js';
export { DEFAULT_TCTI, tpmAgentConfigSchema, tpmTcti, type TpmAgentConfig } from './schema.js';

/**
 * The join method for a config block. `tpm` gives the agent's access to the TPM at a TCTI (the
 * block's); `identityKey` finds the TPM key of a join's CSR (the agent's pending key); `ak`,
 * when the agent kept one, is reused instead of creating an AK per join.
 */
export function tpmJoinAgentFromConfig(
  cfg: TpmAgentConfig | undefined,
  tpm: TpmAccesses,
  identityKey: (spkiDer: Buffer) => TpmSigner | undefined,
  ak?: KeyBlob,
): TpmJoinAgent {
  return new TpmJoinAgent({
    tpm: tpm.for(tpmTcti(cfg)),
    identityKey,
    ...(cfg?.ek !== undefined ? { ek: cfg.ek } : {}),
    ...(cfg?.event_log !== undefined ? { eventLog: cfg.event_log } : {}),
    ...(ak ? { ak } : {}),
  });
}

/**
 * The agent side of the tpm join (its registry entry in join/agent-methods.ts loads this file). Its hooks are what the agent core
 * used to special-case: the join certifies the identity key, so each key the agent makes is
 * kept where the method finds it by its SPKI; the AK of a completed join is kept; renewals prove
 * their new key with TPM2_Certify by that AK, and their boot state with a quote by it when the
 * join's rule names firmware profiles (fresh-evidence.ts, issue #16).
 */
export const tpmAgentCode: AgentJoinMethodCode<TpmAgentConfig> = {
  create(settings, ctx) {
    if (ctx.keyStorage !== 'tpm')
      throw new SigilError(
        'config_invalid',
        `${ctx.where}: the tpm join certifies a TPM-resident identity key; set key_storage: tpm`,
      );
    const pending = new PendingTpmKeys();
    // ctx.tpm: the same access the agent's identity keys in this TPM use (one queue per TPM).
    const method = tpmJoinAgentFromConfig(settings, ctx.tpm, (spki) => pending.find(spki));
    return {
      method,
      singleUseCredential: undefined,
      onKeyCreated: (key) => {
        if (key.storage === 'tpm') pending.add(key as TpmSigner);
      },
      onJoined: (requestId, state) => {
        const ak = method.attestationKey(requestId);
        if (ak) saveAk(state, ak);
        // The selection and counters later quotes are judged by (issue #16), or none.
        saveJoinAttestation(state, method.joinAttestation(requestId), method.kept);
      },
      renewalKeyProof: (key, requestId, state) =>
        key.storage === 'tpm'
          ? certifyWithAk(state, key as TpmSigner, requestId, method.kept)
          : Promise.resolve(undefined),
      freshEvidence: (binding, state) => freshTpmEvidence(method, state, binding),
      // A renewal's certification and quote on one connection, by the AK loaded once.
      renewalProofs: async (key, requestId, binding, state) =>
        key.storage === 'tpm' && (key as TpmSigner).access.tcti === method.tcti
          ? tpmRenewalProofs(method, state, key as TpmSigner, requestId, binding)
          : { evidence: await freshTpmEvidence(method, state, binding) },
      onAttestationAccepted: (state) => acceptAttestation(state, method.kept),
    };
  },
};
