/**
 * What the fleet view shows of how an agent talks to the issuer (issue #18): the carrier its last
 * join or renewal came on (`facts.transport`) and the version it says it runs
 * (`facts.agent_version`). Both are recorded in the instance's facts by the join and renew
 * handlers, inside their write transaction.
 *
 * `agent_version` is the agent's claim (anyone holding the identity key can send any string the
 * protocol schema admits): shown as such, never used for a decision. `transport` is what the
 * issuer itself saw: the adapter that handed the request over (server/ops/table.ts OpRequest).
 */

/** The carriers an operation arrives on (transport/https/server.ts, transport/mqtt/responder.ts). */
export type Carrier = 'https' | 'mqtt';

/**
 * The facts to merge so that `facts` records this request's carrier and agent version, or
 * undefined when they already do. Renewal is the hot path (issue #14 counts its statements): a
 * steady-state renewal, same carrier and same version as the last one, must not rewrite the
 * facts, so the caller merges only what this returns (renew.ts: by the issue's own update). An unknown carrier (a handler called directly, not
 * through an adapter) or an agent that sends no version leaves the recorded value as it was.
 */
export function agentFactsUpdate(
  facts: Readonly<Record<string, unknown>>,
  seen: { carrier?: Carrier | undefined; agentVersion?: string | undefined },
): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  if (seen.carrier !== undefined && facts['transport'] !== seen.carrier) out['transport'] = seen.carrier;
  if (seen.agentVersion !== undefined && facts['agent_version'] !== seen.agentVersion)
    out['agent_version'] = seen.agentVersion;
  return Object.keys(out).length === 0 ? undefined : out;
}
