/**
 * The device side of the DevID-in-TPM binding (tpm-check.ts has the issuer side): for an
 * x509 device key at a TPM persistent handle, round 1 adds the EK, a fresh AK under the SRK
 * and the device key's public area; round 2 — when the issuer asks, i.e. the rule has
 * `require_tpm` — activates the credential with the EK and the AK, and has the AK certify the
 * device key with the challenge nonce.
 *
 * The TPM steps are the tpm join's (join/tpm-activation.ts: readAgentEk, akTemplate,
 * keystore/tpm-access.ts): one connection per round, every transient object flushed, through
 * the device key's own TpmAccess — the agent's, shared with all it runs on that TPM.
 */
import { encodePublic, encodeSignedAttest } from '../../attest/structures.js';
import { SigilError } from '../../errors.js';
import { OWNER_PARENT } from '../../keystore/tpm-access.js';
import type { TpmPersistentSigner } from '../../keystore/tpm-persistent.js';
import type { EkKind } from '../../tpm/ek.js';
import type { KeyBlob } from '../../tpm/tpm.js';
import { activateCredential, akTemplate, readAgentEk } from '../tpm-activation.js';
import type { X509ChallengeData, X509TpmAnswer, X509TpmEvidence } from './wire.js';

export interface DeviceTpmBindingOptions {
  /** Which EK to present; `auto` (default): the first with a certificate, as the factory records it. */
  ek?: EkKind | 'auto';
  endorsementAuth?: Uint8Array;
}

/** Round-1 AKs kept for round 2, by request id; a few joins at most are ever in flight. */
const MAX_PENDING = 8;

export class DeviceTpmBinding {
  readonly #key: TpmPersistentSigner;
  readonly #opts: DeviceTpmBindingOptions;
  readonly #pending = new Map<string, { ak: KeyBlob; ekKind: EkKind }>();

  constructor(key: TpmPersistentSigner, opts: DeviceTpmBindingOptions = {}) {
    this.#key = key;
    this.#opts = opts;
  }

  private auth(): { endorsementAuth?: Uint8Array } {
    return this.#opts.endorsementAuth ? { endorsementAuth: this.#opts.endorsementAuth } : {};
  }

  async evidence(requestId: string): Promise<X509TpmEvidence> {
    const access = this.#key.access;
    return access.run(async (tpm) => {
      const ek = await readAgentEk(tpm, this.#opts.ek ?? 'auto', this.auth());
      const ak = await access.withParent(tpm, OWNER_PARENT, (srk) => tpm.create(srk, akTemplate()));
      const devid = await this.#key.key(tpm);
      this.#pending.delete(requestId);
      this.#pending.set(requestId, { ak, ekKind: ek.kind });
      while (this.#pending.size > MAX_PENDING) this.#pending.delete(this.#pending.keys().next().value!);
      return {
        ...(ek.cert ? { ek_cert: Buffer.from(ek.cert.der).toString('base64') } : {}),
        ek_public: encodePublic(ek.public),
        ak_public: encodePublic(ak.public),
        devid_public: encodePublic(devid.public),
      };
    });
  }

  async respond(requestId: string, nonce: Buffer, data: NonNullable<X509ChallengeData['tpm']>): Promise<X509TpmAnswer> {
    const pending = this.#pending.get(requestId);
    if (!pending)
      throw new SigilError(
        'response_invalid',
        'a TPM challenge arrived for a join this agent did not start (no attestation key for its request id)',
      );
    const access = this.#key.access;
    return access.run(async (tpm) => {
      const loaded = await access.withParent(tpm, OWNER_PARENT, (srk) => tpm.load(srk, pending.ak));
      const answer = await tpm.withTransient(loaded, async (ak) => {
        const activated = await activateCredential(tpm, ak, pending.ekKind, data.credential, this.auth());
        const certify = await tpm.certify(await this.#key.key(tpm), ak, nonce);
        return { activated: Buffer.from(activated).toString('base64'), certify: encodeSignedAttest(certify) };
      });
      this.#pending.delete(requestId);
      return answer;
    });
  }
}
