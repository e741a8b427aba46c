/**
 * Verify an issuer response envelope (./response-verifier.ts) knowing every operation's answer
 * schema from the start: the front for the issuer's tools, the doctor and the tests. The agent
 * uses ./response-verifier.ts directly and hands over the schemas of what it sends (issue #19).
 *
 * Two entry points: {@link verifyResponse} accepts only a success; {@link verifyResponseOrError}
 * also accepts a signed refusal (MQTT) and throws it as the SigilError it carries — after the
 * signature and the binding to this exact request (id and payload hash) have been checked.
 */
import { attestResponseSchema } from './attest-messages.js';
import { credentialResponseSchema } from './credential-messages.js';
import { identityResponseSchemas } from './messages.js';
import { ResponseVerifier, type Op, type Success } from './response-verifier.js';
import { workloadResponseSchema } from './workload-messages.js';

export {
  pinnedRootFromBundle,
  ResponseVerifier,
  verifyJoinStep,
  type JoinStep,
  type Op,
  type Success,
} from './response-verifier.js';
/** What the issuer keys idempotency on and binds refusals to (./request-hash.ts). */
export { requestHash } from './request-hash.js';

function everythingKnown(): ResponseVerifier {
  return new ResponseVerifier({
    ...identityResponseSchemas(),
    credential: credentialResponseSchema,
    workload: workloadResponseSchema,
    attest: attestResponseSchema,
  });
}

/**
 * A success for this request, verified by a one-off verifier (no cache). Callers that verify
 * many answers hold a {@link ResponseVerifier} instead (the agent's IssuerLink does).
 */
export function verifyResponse<O extends Op>(
  body: unknown,
  op: O,
  requestId: string | null,
  rootPem: string,
  now: Date = new Date(),
): Success<O> {
  return everythingKnown().response(body, op, requestId, rootPem, now);
}

/**
 * Like {@link verifyResponse}, but a signed refusal for this request is thrown as its
 * SigilError. `requestHash` ({@link requestHash} of what was sent) must match the
 * refusal's; it is null only for `bundle`, whose request carries no payload worth binding
 * (a replayed bundle refusal can only delay an agent, which a broker can do anyway).
 */
export function verifyResponseOrError<O extends Op>(
  body: unknown,
  op: O,
  requestId: string | null,
  requestHash: string | null,
  rootPem: string,
  now: Date = new Date(),
): Success<O> {
  return everythingKnown().responseOrError(body, op, requestId, requestHash, rootPem, now);
}
