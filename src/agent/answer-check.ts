/**
 * The agent's last line against a misdirected answer (issue #11, ARCHITECTURE "Answers are bound
 * to their signer"). An answer that verified against the pinned CA and names this request id may
 * still not be *ours* if anything upstream went wrong — an issuer that answered a re-signed copy
 * of our request, a broker replaying another agent's answer under our id. Before an answer is
 * committed, check that it
 *
 *   - certifies the key we asked for: the leaf's SubjectPublicKeyInfo equals the one in the CSR
 *     we sent (and the leaf's serial and SPIFFE ID are the ones the answer states);
 *   - for a renewal, keeps our instance: same instance id, bot and SPIFFE ID as the identity
 *     that signed it (a join may create or re-use an instance; a renewal never changes it).
 *
 * Refused with `answer_mismatch` (retryable: the request stays queued and is resent; the issuer
 * answers the real signer from its idempotency record) and reported in status and logs.
 */
import { SigilError } from '../errors.js';
import type { Jws } from '../protocol/jws.js';
import type { IdentityOp, IdentityResult } from '../protocol/messages.js';
import { parseCsr } from '../pki/csr.js';
import { b64u } from '../protocol/jws.js';
import { readLeaf } from './named-signer.js';
import type { Identity } from './state/index.js';

/** The SubjectPublicKeyInfo of the CSR inside a join or renew envelope we built and sent. */
export function requestedSpki(envelopeJson: string): Buffer {
  const env = JSON.parse(envelopeJson) as Jws;
  const payload = JSON.parse(b64u.decode(env.payload).toString('utf8')) as { csr?: unknown };
  if (typeof payload.csr !== 'string') throw new SigilError('internal', 'a queued request carries no CSR');
  return parseCsr(payload.csr).spkiDer;
}

export function checkIdentityAnswer(
  op: IdentityOp,
  envelopeJson: string,
  r: IdentityResult,
  signer: Identity | undefined,
): void {
  const leaf = readLeaf(r.chain[0] ?? '', 'answer_mismatch');
  if (!leaf.spki.equals(requestedSpki(envelopeJson))) {
    throw new SigilError(
      'answer_mismatch',
      `the ${op} answer certifies another key than the one this agent asked for (serial ${r.serial}); ignoring it`,
    );
  }
  if (leaf.serial !== r.serial || leaf.spiffeId !== r.spiffe_id) {
    throw new SigilError(
      'answer_mismatch',
      `the ${op} answer's certificate (serial ${leaf.serial}, ${leaf.spiffeId ?? 'no SPIFFE ID'}) is not the one it describes (serial ${r.serial}, ${r.spiffe_id})`,
    );
  }
  if (
    op === 'renew' &&
    signer &&
    (r.instance_id !== signer.instanceId || r.spiffe_id !== signer.spiffeId || r.bot !== signer.bot)
  ) {
    throw new SigilError(
      'answer_mismatch',
      `the renewal answer would change this agent's identity from ${signer.spiffeId} to ${r.spiffe_id}; ignoring it`,
    );
  }
}
