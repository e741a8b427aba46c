/**
 * The prologue of an operation signed by an agent's CURRENT identity (`credential`, `workload`,
 * `attest`), written once: authenticateRequest (chain to our CA, signature by the leaf) → the
 * protocol version → the payload's shape (bad_request) → the payload names that signer
 * (signer_mismatch) → the request as stored for idempotency, bound to its signer. What comes
 * next — the idempotent replay, then checkCurrentIdentity — each operation orders itself, since
 * some read them inside their write transaction.
 *
 * `seen` is filled as soon as each part is known, so that the operation's refusal path can audit
 * who asked and under which request id even when a later check throws.
 */
import type { z } from 'zod';
import type { Jws, VerifiedJws } from '../../protocol/jws.js';
import { checkVersion, parseWith } from '../../protocol/messages.js';
import type { IssuerContext } from '../issuer.js';
import { authenticateRequest, checkNamedSigner, type OpHooks, type Presented } from './authenticate.js';
import { signedRequest, type SignedRequest } from './respond.js';

/** What the refusal path may name: the signer once its chain verified, the request once parsed. */
export interface SeenRequest<T> {
  who?: Presented;
  req?: T;
}

export interface IdentityRequest<T> {
  who: Presented;
  req: T;
  jws: Jws;
  verified: VerifiedJws;
  signed: SignedRequest;
}

export function openIdentityRequest<S extends z.ZodType<{ request_id: string; instance_id: string; serial: string }>>(
  ctx: IssuerContext,
  body: unknown,
  o: { what: string; schema: S; seen: SeenRequest<z.infer<S>>; hooks?: OpHooks | undefined },
): IdentityRequest<z.infer<S>> {
  const auth = authenticateRequest(ctx, body, `a ${o.what}`, (w) => (o.seen.who = w), o.hooks);
  checkVersion(auth.verified.payload);
  const req = parseWith(o.schema, auth.verified.payload, 'bad_request', o.what) as z.infer<S>;
  o.seen.req = req;
  checkNamedSigner(auth.who, req);
  const signed = signedRequest(auth.jws, auth.verified.payloadBytes, req.request_id, {
    keyHash: auth.who.leaf.spkiHash,
    instanceId: auth.who.instanceId,
  });
  return { who: auth.who, req, jws: auth.jws, verified: auth.verified, signed };
}
