/**
 * Where the issuer may publish an answer (security review #11, item 3). The Response Topic of an
 * MQTT v5 request (§3.3.2.3.5) is chosen by whoever published it and is not covered by any
 * signature, so the issuer must not take it on trust: otherwise instance A could have signed
 * answers — successes, refusals, replays — published onto instance B's topic by naming it.
 * ARCHITECTURE ("answers are bound to their signer"): an answer goes only where the agent that
 * made the request listens.
 *
 * Each operation declares its rule once, in the operation table (server/ops/table.ts AnswerRule):
 *
 *   bootstrap (join), unknown operations   only a bootstrap topic, sigil/v1/resp/bootstrap/<id>
 *                              (nobody is authenticated yet; bootstrap topics belong to no instance)
 *   any (bundle)               a bootstrap or an instance topic (public, unbound data)
 *   signer (renew, credential) only sigil/v1/resp/<the instance whose chain and signature
 *                              verified>; a request that did not authenticate is not answered
 *
 * Anything else is dropped unanswered and counted. Honest agents always name these topics
 * (agent/transports.ts mqttSession: a join from the bootstrap session, a renewal or credential
 * request from the instance's).
 */
import { operationNamed, type AnswerRule } from '../../server/ops/table.js';
import { responseTarget } from './topics.js';

export type TopicDrop = 'bad_response_topic' | 'unauthenticated';

/** The rule of operation `op` (the table's); an unknown operation is answered (not_found) like a join. */
export const answerRuleOf = (op: string): AnswerRule => operationNamed(op)?.answerTo ?? 'bootstrap';

/** Before the operation runs: can an answer to `op` go to `responseTopic` at all? */
export function answerTopicFits(op: string, responseTopic: string): boolean {
  const rule = answerRuleOf(op);
  const target = responseTarget(responseTopic);
  if (!target) return false;
  if (rule === 'any') return true;
  if (rule === 'signer') return target.kind === 'instance';
  return target.kind === 'bootstrap';
}

/**
 * After a `signer`-rule operation ran: its answer (success or signed refusal) goes only to the
 * topic of the instance that signed it — `signer` as reported by the handler's onAuthenticated
 * hook, unset when the chain or signature did not verify.
 */
export function signerAnswerDrop(responseTopic: string, signer: string | undefined): TopicDrop | undefined {
  if (signer === undefined) return 'unauthenticated';
  const target = responseTarget(responseTopic);
  return target?.kind === 'instance' && target.id === signer ? undefined : 'bad_response_topic';
}
