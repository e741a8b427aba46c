/**
 * The agent's half of renewal-time key attestation (attest/key-attestation.ts is the issuer's,
 * with the wire form and what it proves): the AK the agent kept from its tpm join certifies
 * the renewal's new key, with qualifyingData = SHA-256(request_id).
 */
import { renewalQualifyingData, type KeyAttestation } from '../../attest/key-attestation.js';
import { encodePublic, encodeSignedAttest } from '../../attest/structures.js';
import type { TpmSigner } from '../../keystore/tpm.js';
import { OWNER_PARENT } from '../../keystore/tpm-access.js';
import type { KeyBlob } from '../../tpm/tpm.js';

export type { KeyAttestation };

/**
 * Agent side: the AK (a blob under the SRK, kept from the join) certifies the renewal's new key.
 * Both live in the key's TPM, reached through the key's own access — the agent's, so the
 * certification waits for whatever else the agent runs on that TPM.
 */
export async function attestRenewalKey(o: { ak: KeyBlob; key: TpmSigner; requestId: string }): Promise<KeyAttestation> {
  const access = o.key.access;
  const certify = await access.run(async (tpm) => {
    const ak = await access.withParent(tpm, OWNER_PARENT, (srk) => tpm.load(srk, o.ak));
    return tpm.withTransient(ak, (loaded) =>
      o.key.loadWith(tpm, (key) => tpm.certify(key, loaded, renewalQualifyingData(o.requestId))),
    );
  });
  return { key_public: encodePublic(o.key.blob.public), certify: encodeSignedAttest(certify) };
}
