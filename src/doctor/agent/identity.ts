/**
 * The agent's identity as its state records it: joined or not, expired, renewal overdue, the
 * next renewal, failures since the last success, and whether the CA pinned at first contact is
 * still the config's `ca_pin` (the agent refuses to start otherwise).
 */
import { formatDuration } from '../../util/duration.js';
import { fail, ok, warn, type Check, type CheckOutcome } from '../types.js';
import type { AgentDoctorContext } from './context.js';

/** Join methods that prove themselves again without a person (ARCHITECTURE principle 5). */
const REATTESTS = new Set(['tpm', 'x509', 'aws_iid', 'gcp', 'azure', 'oidc']);

export const identityCheck: Check<AgentDoctorContext> = {
  name: 'identity',
  async run(ctx): Promise<CheckOutcome> {
    const runOnce = `sigil agent run --once --config ${ctx.configPath}`;
    const state = await ctx.state();
    if (!state) return warn(`not joined: no agent state in ${ctx.cfg.dataDir}`, runOnce);
    const pinned = state.getIssuerPin();
    if (pinned && pinned.pin !== ctx.cfg.caPin) {
      return fail(
        `pin_mismatch: ${ctx.cfg.dataDir} was pinned to ${pinned.pin} but ca_pin is ${ctx.cfg.caPin}; the agent refuses to start`,
        `put back ca_pin: ${pinned.pin} in ${ctx.configPath}, or, if the issuer CA really changed, remove ${ctx.cfg.dataDir}/agent.db and join again`,
      );
    }
    const { agentStatus } = await import('../../agent/status.js');
    const now = ctx.now();
    const s = agentStatus(state, now);
    const failing =
      s.consecutive_failures > 0 ? `; ${s.consecutive_failures} failed attempts, last: ${s.last_error ?? '?'}` : '';
    switch (s.state) {
      case 'not_joined':
        return s.pending_request
          ? warn(`not joined yet: ${s.pending_request} is waiting for the issuer${failing}`, runOnce)
          : warn(`not joined${failing}`, runOnce);
      case 'expired': {
        const self = REATTESTS.has(ctx.cfg.join.method);
        return fail(
          `expired at ${s.not_after} (${s.spiffe_id})${failing}`,
          self
            ? `${runOnce} (the ${ctx.cfg.join.method} join re-attests by itself once the issuer is reachable)`
            : `create a new join token on the issuer (sigil ctl --data-dir <issuer-data-dir> token create --bot ${s.bot ?? '<bot>'}), put it in join.token_file, then: ${runOnce}`,
        );
      }
      case 'renewal_overdue':
        return warn(
          `${s.spiffe_id}: renewal overdue, expires ${s.not_after} (in ${formatDuration(Math.max(0, s.time_left_s ?? 0))})${failing}`,
          `sigil agent renew --config ${ctx.configPath}`,
        );
      default:
        if (failing)
          return warn(
            `${s.spiffe_id}: valid until ${s.not_after}${failing}`,
            `check the issuer checks above, then: sigil agent renew --config ${ctx.configPath}`,
          );
        return ok(
          `${s.spiffe_id}: generation ${s.generation}, valid until ${s.not_after} (${formatDuration(s.time_left_s ?? 0)} left), next renewal ${s.next_renewal ?? '-'}`,
        );
    }
  },
};
