import type { Jws } from '../../protocol/jws.js';
import { PROTOCOL_VERSION, type BundleResult, type ResponsePayload } from '../../protocol/messages.js';
import type { IssuerContext } from '../issuer.js';
import { keysChangedAt, publishedJwks } from '../credentials/authorities.js';
import { signResponse } from './respond.js';

/**
 * `bundle`: the trust anchors agents and workloads should trust, signed like every response.
 * `intermediates` lists this issuer's own intermediate first, then every other live (active or
 * retired, never revoked) intermediate of the same root that this issuer verified against the
 * root (server/issuers/registry.ts, docs/issuers.md): what a workload needs to build a path for a
 * peer's leaf issued at another issuer.
 * `jwt_jwks` carries the JWT-SVID signing key (and retired keys still trusted, after a
 * `sigil server rotate-key jwt`) as a JWK Set whose keys carry `kid` (JWT-SVID §6)
 * and `alg`, without `use` — the form the Workload API's JWT bundles take (SPIRE's agent marshals
 * them so); a `use: jwt-svid` (the federation bundle's, credentials/discovery.ts) makes generic
 * JOSE libraries skip the key. The agent's Workload API serves the JWT bundle and validates
 * JWT-SVIDs from this same signed answer, offline (issue #17).
 * `trust_sequence`: as in identity answers — the agent daemon's trust check between renewals
 * (agent/trust-check.ts) reads it here.
 * `nonce`: the requester's (MQTT), echoed in the signed payload — a bundle answer is otherwise the
 * same for everyone, so a broker could replay an old one (with an intermediate or JWT key since
 * replaced) for as long as the issuer's serving certificate lasts (review of issue #16).
 */
export function handleBundle(ctx: IssuerContext, nonce?: string): Jws {
  const now = ctx.now();
  const result: BundleResult = {
    trust_domain: ctx.ca.trustDomain,
    roots: [ctx.ca.rootPem.trim() + '\n'],
    intermediates: ctx.intermediates ? ctx.intermediates.livePems() : [ctx.ca.intermediatePem.trim() + '\n'],
    jwt_jwks: { keys: publishedJwks(ctx.credentials, now).map(({ use: _use, ...k }) => ({ ...k })) },
  };
  // As in identity answers (ops/issue.ts): only once a key was ever rotated.
  const trustSequence = keysChangedAt(ctx.credentials, now);
  if (trustSequence > 0) result.trust_sequence = trustSequence;
  const rootCrl = ctx.intermediates?.rootCrlDer;
  if (rootCrl) result.root_crl = rootCrl.toString('base64');
  const payload: ResponsePayload<BundleResult> = {
    v: PROTOCOL_VERSION,
    op: 'bundle',
    request_id: null,
    ...(nonce !== undefined ? { nonce } : {}),
    issued_at: now,
    result,
  };
  return signResponse(ctx, JSON.stringify(payload));
}
