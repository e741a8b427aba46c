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
 *   - chains to the pinned root: the leaf through the answer's intermediates to the root whose
 *     key is `ca_pin`, and the answer's `bundle` (what the agent writes for workloads as the
 *     trust bundle) is that root and nothing else. The envelope is signed by the issuer, but
 *     the issuer replays a stored answer byte for byte from its database: whoever can write the
 *     database could otherwise have it sign a leaf of a CA of their own and a bundle with their
 *     root (review of issue #16, "database writer").
 *
 * Refused with `answer_mismatch` (retryable: the request stays queued and is resent; the issuer
 * answers the real signer from its idempotency record) and reported in status and logs.
 */
import { X509Certificate } from 'node:crypto';
import { SigilError } from '../errors.js';
import { spkiPin, verifyChain } from '../pki/chain.js';
import { fromPem } from '../pki/pem.js';
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
  trust?: { rootPem: string; caPin: string; at: Date },
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
  if (trust) checkTrust(op, r, trust);
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

/** The answer's chain ends at the pinned root, and its bundle is that root (see the module comment). */
function checkTrust(op: IdentityOp, r: IdentityResult, trust: { rootPem: string; caPin: string; at: Date }): void {
  const root = new X509Certificate(trust.rootPem);
  if (spkiPin(root) !== trust.caPin)
    throw new SigilError('pin_mismatch', `the issuer root in use does not match ca_pin ${trust.caPin}`);
  try {
    const leaf = new X509Certificate(r.chain[0]!);
    // Who signed it, not whether it is still current: a renewal's answer resent after the
    // identity expired may carry a leaf that expired meanwhile (agent.ts resendExpiredRenewal),
    // and that is judged elsewhere. So the path is checked within the leaf's own validity.
    const from = Date.parse(leaf.validFrom);
    const to = Date.parse(leaf.validTo);
    const at = new Date(Math.min(Math.max(trust.at.getTime(), from), to));
    verifyChain({
      leaf: leaf.raw,
      intermediates: r.chain.slice(1).map((c) => fromPem(c, 'CERTIFICATE')),
      roots: [root.raw],
      at,
    });
  } catch (err) {
    const why = err instanceof SigilError ? err.message : String(err);
    throw new SigilError('answer_mismatch', `the ${op} answer's certificate does not chain to the pinned root: ${why}`);
  }
  for (const [i, pem] of r.bundle.entries()) {
    let pin: string;
    try {
      pin = spkiPin(new X509Certificate(pem));
    } catch {
      pin = '(not a certificate)';
    }
    if (pin !== trust.caPin)
      throw new SigilError(
        'answer_mismatch',
        `the ${op} answer's trust bundle holds a root other than the pinned one (entry ${i}: ${pin}); ignoring it`,
      );
  }
}
