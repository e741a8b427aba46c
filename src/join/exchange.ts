/**
 * The agent side of a join, challenge rounds included, written once for every method and
 * every transport (SPIRE's host loop). The exchange is:
 *
 *   round 0   envelope { op: join, request_id: R, csr: CSR(K), evidence: method.evidence({R, K}) }
 *             signed by K  →  the identity (done), or a signed challenge
 *   round n   envelope { same R, same CSR(K), new timestamp, evidence: method.respond(challenge, {R, K}) }
 *             signed by K  →  the identity, or (a method may ask again) another challenge
 *
 * where K is the new identity key (and, when asked, every round also carries the same
 * `transport_csr` for an MQTT transport certificate: agent/transport-cert.ts). Each answer is
 * verified against the pinned issuer root
 * (protocol/verify-response.ts verifyJoinStep) before anything is believed.
 *
 * Crash safety (for the agent's outbox): round 0 changes nothing on the issuer and may simply
 * be sent again (it yields a fresh challenge). The envelope that *completes* the join is the
 * one to persist and resend byte for byte — the issuer answers a resend from its idempotency
 * record. `send` gets `{ requestId, round }` so the caller can persist rounds ≥ 1 before
 * sending. If such a resend is refused with `challenge_expired` (the first attempt never
 * arrived and a minute passed), start a new exchange.
 */
import { SigilError } from '../errors.js';
import type { KeyStorage, Signer } from '../keystore/signer.js';
import { buildCsr } from '../pki/csr.js';
import { toPem } from '../pki/pem.js';
import { signJws, type Jws } from '../protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST, type JoinChallenge } from '../protocol/messages.js';
import type { JoinRequest } from '../protocol/requests.js';
import { requestHash } from '../protocol/request-hash.js';
import { verifyJoinStep, type JoinStep, type ResponseVerifier } from '../protocol/response-verifier.js';
import { newRequestId } from '../util/secret.js';
import type { EvidenceContext, JoinMethodAgent } from './types.js';

export interface JoinExchangeStep {
  requestId: string;
  /** 0 for the first request, n for the answer to the n-th challenge. */
  round: number;
}

export interface JoinExchangeOptions {
  method: JoinMethodAgent;
  /**
   * The new identity key: the CSR is for it and it signs every envelope. A function is called
   * once, inside the first round's {@link JoinMethodAgent.session}, so a TPM key is created on
   * the same connection as the rest of that round.
   */
  identity: Signer | (() => Promise<Signer>);
  /**
   * Send one join envelope and resolve with the issuer's answer body (parsed JSON), e.g.
   * `(env) => transport.post('join', env)`. Refusals are thrown as SigilErrors (HTTPS) or
   * come back as signed refusals (MQTT); both end the exchange with that error.
   */
  send(envelope: Jws, step: JoinExchangeStep): Promise<unknown>;
  /** The pinned issuer root (PEM), e.g. `() => transport.ensureRoot()`. */
  rootPem(): Promise<string> | string;
  /** Verifies the answers, remembering the issuer chains it verified (e.g. the agent's IssuerLink's). */
  verifier?: ResponseVerifier;
  ttlS?: number;
  /** Where the identity key lives, as claimed in the request (default: the signer's storage). */
  keyStorage?: KeyStorage;
  now?: () => number;
  /** Reuse a request id (e.g. one persisted before a crash); default: a new one. */
  requestId?: string;
  /** Challenge rounds allowed before giving up (default 2). */
  maxChallenges?: number;
  /**
   * A software key for an MQTT transport certificate: every round carries its CSR as
   * `transport_csr` (the caller keeps the key with the persisted envelope).
   */
  transportKey?: Signer;
}

export interface JoinExchangeResult {
  requestId: string;
  /** The envelope the identity was issued for (what an outbox would resend). */
  envelope: Jws;
  /** The verified join response. */
  payload: Extract<JoinStep, { kind: 'identity' }>['payload'];
  /** How many challenges were answered. */
  challenges: number;
}

export async function runJoinExchange(o: JoinExchangeOptions): Promise<JoinExchangeResult> {
  const now = o.now ?? Date.now;
  const requestId = o.requestId ?? newRequestId();
  let identity: Signer | undefined;
  let ctx: EvidenceContext | undefined;
  const maxChallenges = o.maxChallenges ?? 2;
  const session = <T>(fn: () => Promise<T>): Promise<T> => (o.method.session ? o.method.session(fn) : fn());
  let csr = '';
  let transportCsr: string | undefined;
  let challenge: JoinChallenge | undefined;
  for (let round = 0; ; round++) {
    const envelope = await session(async () => {
      if (identity === undefined || ctx === undefined) {
        identity = typeof o.identity === 'function' ? await o.identity() : o.identity;
        ctx = { requestId, spkiDer: identity.publicKeySpki() };
        csr = toPem('CERTIFICATE REQUEST', await buildCsr(identity));
        if (o.transportKey) transportCsr = toPem('CERTIFICATE REQUEST', await buildCsr(o.transportKey));
      }
      const evidence = challenge === undefined ? await o.method.evidence(ctx) : await o.method.respond!(challenge, ctx);
      return signJws(identity, TYP_REQUEST, request(identity, evidence));
    });
    const body = await o.send(envelope, { requestId, round });
    const step = verifyJoinStep(body, requestId, await o.rootPem(), {
      requestHash: requestHash(envelope),
      now: new Date(now()),
      ...(o.verifier ? { verifier: o.verifier } : {}),
    });
    if (step.kind === 'identity') return { requestId, envelope, payload: step.payload, challenges: round };
    challenge = step.payload.challenge;
    if (o.method.respond === undefined)
      throw new SigilError(
        'response_invalid',
        `the issuer sent a challenge, but the ${o.method.name} join method has no challenge round`,
      );
    if (challenge.method !== o.method.name)
      throw new SigilError(
        'response_invalid',
        `the issuer sent a ${challenge.method} challenge to a ${o.method.name} join`,
      );
    if (round >= maxChallenges)
      throw new SigilError('response_invalid', `the issuer asked more than ${maxChallenges} challenges; giving up`);
  }

  function request(identity: Signer, evidence: Record<string, unknown>): JoinRequest {
    return {
      v: PROTOCOL_VERSION,
      op: 'join',
      request_id: requestId,
      timestamp: now(),
      method: o.method.name,
      csr,
      evidence,
      key_storage: o.keyStorage ?? identity.storage,
      ...(o.ttlS !== undefined ? { ttl_s: o.ttlS } : {}),
      ...(transportCsr !== undefined ? { transport_csr: transportCsr } : {}),
    };
  }
}
