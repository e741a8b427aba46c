/**
 * The agent half of the x509 join: send the device's certificate chain, then answer the
 * issuer's challenge with a signature by the device key (wire.ts defines the message). The
 * device key is any {@link DeviceSigner}: a PEM file (PemKeySigner), a PKCS#11 token
 * (Pkcs11Signer), later a TPM key — the method never sees where it lives.
 */
import { randomBytes } from 'node:crypto';
import { SigilError } from '../../errors.js';
import type { DeviceSigner } from '../../keystore/signer.js';
import { readCertificate } from '../../pki/cert-reader.js';
import { pemToDers } from '../../pki/pem.js';
import type { JoinChallenge } from '../../protocol/messages.js';
import type { EvidenceContext, JoinMethodAgent } from '../types.js';
import { MAX_CHAIN_CERTS, proofMessage } from './wire.js';

export interface X509JoinAgentOptions {
  /** DER certificates, the device certificate first, then intermediates (no root needed). */
  chain: readonly Buffer[];
  /** The device certificate's private key. */
  key: DeviceSigner;
}

export class X509JoinAgent implements JoinMethodAgent {
  readonly name = 'x509';
  /** The device key outlives any identity: the agent re-attests by itself after expiry. */
  readonly canReattest = true;
  readonly #chain: readonly Buffer[];
  readonly #key: DeviceSigner;

  constructor(opts: X509JoinAgentOptions) {
    if (opts.chain.length === 0 || opts.chain.length > MAX_CHAIN_CERTS) throw new SigilError('config_invalid', `the x509 chain needs 1..${MAX_CHAIN_CERTS} certificates (device certificate first)`);
    const leaf = readCertificate(opts.chain[0]!, 'config_invalid', 'device certificate');
    if (!leaf.spki.equals(opts.key.publicKeySpki())) throw new SigilError('config_invalid', 'the device key does not belong to the device certificate (their public keys differ)');
    this.#chain = opts.chain;
    this.#key = opts.key;
  }

  /** From PEM text: the device certificate first, optionally followed by intermediates; `extraChainPem` appends more. */
  static fromPem(certPem: string, key: DeviceSigner, extraChainPem?: string): X509JoinAgent {
    const chain = [...pemToDers(certPem, 'CERTIFICATE', 'config_invalid'), ...(extraChainPem ? pemToDers(extraChainPem, 'CERTIFICATE', 'config_invalid') : [])];
    return new X509JoinAgent({ chain, key });
  }

  evidence(_ctx: EvidenceContext): Promise<Record<string, unknown>> {
    return Promise.resolve({ chain: this.#chain.map((c) => c.toString('base64')) });
  }

  async respond(challenge: JoinChallenge, ctx: EvidenceContext): Promise<Record<string, unknown>> {
    if (challenge.method !== this.name) throw new SigilError('response_invalid', `the issuer sent a ${challenge.method} challenge to an x509 join`);
    const agentNonce = randomBytes(32);
    const message = proofMessage({ challengeNonce: Buffer.from(challenge.nonce, 'base64url'), agentNonce, requestId: ctx.requestId, spkiDer: ctx.spkiDer });
    const signature = await this.#key.sign(message);
    return { challenge_id: challenge.challenge_id, agent_nonce: agentNonce.toString('base64url'), alg: this.#key.algorithm, signature: signature.toString('base64url') };
  }

  /** Release the device key (a PKCS#11 session). */
  close(): void {
    this.#key.close?.();
  }
}
