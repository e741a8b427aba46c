/**
 * The agent half of the x509 join: send the device's certificate chain, then answer the
 * issuer's challenge with a signature by the device key (wire.ts defines the message). The
 * device key is any {@link DeviceSigner}: a PEM file (PemKeySigner), a PKCS#11 token
 * (Pkcs11Signer), a TPM persistent key (TpmPersistentSigner) — the method never sees where it
 * lives. A TPM-resident key may come with its {@link DeviceTpmBinding}: the EK/AK evidence and
 * certification that rules with `require_tpm` ask for (tpm-agent.ts).
 */
import { randomBytes } from 'node:crypto';
import { SigilError } from '../../errors.js';
import type { DeviceSigner } from '../../keystore/signer.js';
import { readCertificate } from '../../pki/cert-reader.js';
import { pemToDers } from '../../pki/pem.js';
import type { JoinChallenge } from '../../protocol/messages.js';
import type { EvidenceContext, JoinMethodAgent } from '../types.js';
import type { DeviceTpmBinding } from './tpm-agent.js';
import { MAX_CHAIN_CERTS, parseChallengeData, proofMessage } from './wire.js';

export interface X509JoinAgentOptions {
  /** DER certificates, the device certificate first, then intermediates (no root needed). */
  chain: readonly Buffer[];
  /** The device certificate's private key. */
  key: DeviceSigner;
  /** For a TPM-resident key: prove it sits in the TPM of a trusted EK when the rule asks. */
  tpm?: DeviceTpmBinding;
}

export class X509JoinAgent implements JoinMethodAgent {
  readonly name = 'x509';
  /** The device key outlives any identity: the agent re-attests by itself after expiry. */
  readonly canReattest = true;
  readonly #chain: readonly Buffer[];
  readonly #key: DeviceSigner;
  readonly #tpm: DeviceTpmBinding | undefined;

  constructor(opts: X509JoinAgentOptions) {
    if (opts.chain.length === 0 || opts.chain.length > MAX_CHAIN_CERTS)
      throw new SigilError(
        'config_invalid',
        `the x509 chain needs 1..${MAX_CHAIN_CERTS} certificates (device certificate first)`,
      );
    const leaf = readCertificate(opts.chain[0]!, 'config_invalid', 'device certificate');
    if (!leaf.spki.equals(opts.key.publicKeySpki()))
      throw new SigilError(
        'config_invalid',
        'the device key does not belong to the device certificate (their public keys differ)',
      );
    this.#chain = opts.chain;
    this.#key = opts.key;
    this.#tpm = opts.tpm;
  }

  /** From PEM text: the device certificate first, optionally followed by intermediates; `extraChainPem` appends more. */
  static fromPem(certPem: string, key: DeviceSigner, extraChainPem?: string, tpm?: DeviceTpmBinding): X509JoinAgent {
    const chain = [
      ...pemToDers(certPem, 'CERTIFICATE', 'config_invalid'),
      ...(extraChainPem ? pemToDers(extraChainPem, 'CERTIFICATE', 'config_invalid') : []),
    ];
    return new X509JoinAgent({ chain, key, ...(tpm ? { tpm } : {}) });
  }

  async evidence(ctx: EvidenceContext): Promise<Record<string, unknown>> {
    const chain = this.#chain.map((c) => c.toString('base64'));
    return this.#tpm ? { chain, tpm: await this.#tpm.evidence(ctx.requestId) } : { chain };
  }

  async respond(challenge: JoinChallenge, ctx: EvidenceContext): Promise<Record<string, unknown>> {
    if (challenge.method !== this.name)
      throw new SigilError('response_invalid', `the issuer sent a ${challenge.method} challenge to an x509 join`);
    const agentNonce = randomBytes(32);
    const message = proofMessage({
      challengeNonce: Buffer.from(challenge.nonce, 'base64url'),
      agentNonce,
      requestId: ctx.requestId,
      spkiDer: ctx.spkiDer,
    });
    const signature = await this.#key.sign(message);
    const data = parseChallengeData(challenge.data);
    let tpm: Record<string, unknown> | undefined;
    if (data.tpm !== undefined) {
      if (!this.#tpm)
        throw new SigilError(
          'response_invalid',
          'the issuer asks for the TPM binding of the device key (require_tpm), but this device key is not in a TPM',
        );
      tpm = { ...(await this.#tpm.respond(ctx.requestId, Buffer.from(challenge.nonce, 'base64url'), data.tpm)) };
    }
    return {
      challenge_id: challenge.challenge_id,
      agent_nonce: agentNonce.toString('base64url'),
      alg: this.#key.algorithm,
      signature: signature.toString('base64url'),
      ...(tpm ? { tpm } : {}),
    };
  }

  /** Release the device key (a PKCS#11 session). */
  close(): void {
    this.#key.close?.();
  }
}
