/**
 * Where the issuer may publish an answer (security review #11, item 3). The Response Topic of an
 * MQTT v5 request (§3.3.2.3.5) is chosen by whoever published it and is not covered by any
 * signature, so the issuer must not take it on trust: otherwise instance A could have signed
 * answers — successes, refusals, replays — published onto instance B's topic by naming it.
 * ARCHITECTURE ("answers are bound to their signer"): an answer goes only where the agent that
 * made the request listens.
 *
 *   join, unknown operations   only a bootstrap topic, sigil/v1/resp/bootstrap/<id> (nobody is
 *                              authenticated yet; bootstrap topics belong to no instance)
 *   bundle                     a bootstrap or an instance topic (public, unbound data)
 *   renew                      only sigil/v1/resp/<the instance whose chain and signature
 *                              verified>; a renewal that did not authenticate is not answered
 *
 * Anything else is dropped unanswered and counted. Honest agents always name these topics
 * (agent/transports.ts mqttSession: a join from the bootstrap session, a renewal from the
 * instance's).
 */
import { responseTarget } from './topics.js';

export type TopicDrop = 'bad_response_topic' | 'unauthenticated';

/** Before the operation runs: can an answer to `op` go to `responseTopic` at all? */
export function answerTopicFits(op: string, responseTopic: string): boolean {
  const target = responseTarget(responseTopic);
  if (!target) return false;
  if (op === 'bundle') return true;
  if (op === 'renew') return target.kind === 'instance';
  return target.kind === 'bootstrap';
}

/**
 * After a renewal ran: its answer (success or signed refusal) goes only to the topic of the
 * instance that signed it — `signer` as reported by handleRenew's onAuthenticated hook, unset
 * when the chain or signature did not verify.
 */
export function renewalAnswerDrop(responseTopic: string, signer: string | undefined): TopicDrop | undefined {
  if (signer === undefined) return 'unauthenticated';
  const target = responseTarget(responseTopic);
  return target?.kind === 'instance' && target.id === signer ? undefined : 'bad_response_topic';
}
