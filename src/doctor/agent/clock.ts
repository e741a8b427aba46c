/**
 * Clock skew against the issuer, from the `issued_at` of a signed bundle response (ms
 * resolution; the HTTP Date header has only seconds) compared with the middle of our request's
 * round trip. The issuer refuses a renewal more than ±5 min off its clock as `stale_request`
 * (server/ops/authenticate.ts), so: warn beyond 30 s (drift that NTP should be fixing), fail
 * beyond 5 min. The uncertainty is half the round trip, which the detail states.
 */
import { fail, ok, warn, NETWORK_TIMEOUT_MS, type Check, type CheckOutcome } from '../types.js';
import type { AgentDoctorContext } from './context.js';

export const SKEW_WARN_MS = 30_000;
export const SKEW_FAIL_MS = 5 * 60_000;
const NTP_FIX =
  'enable time sync and check it: timedatectl set-ntp true; timedatectl status (System clock synchronized: yes); chronyc tracking';

/** `skewMs` > 0: this machine is behind the issuer. */
export function judgeSkew(skewMs: number, rttMs: number, via: string): CheckOutcome {
  const abs = Math.abs(skewMs);
  const s = (abs / 1000).toFixed(abs < 10_000 ? 1 : 0);
  const detail = `this machine is ${s} s ${skewMs > 0 ? 'behind' : 'ahead of'} the issuer (±${Math.ceil(rttMs / 2)} ms, via ${via})`;
  if (abs > SKEW_FAIL_MS)
    return fail(`${detail}: the issuer refuses renewals more than 5 min off (stale_request)`, NTP_FIX);
  if (abs > SKEW_WARN_MS) return warn(`${detail}: more than 30 s`, NTP_FIX);
  return ok(detail);
}

export const clockCheck: Check<AgentDoctorContext> = {
  name: 'clock',
  timeoutMs: NETWORK_TIMEOUT_MS,
  async run(ctx) {
    // The first transport that reached the issuer; their failures are reported by their own checks.
    for (let i = 0; i < ctx.cfg.transports.length; i++) {
      const p = await ctx.probe(i).catch(() => undefined);
      if (!p) continue;
      return judgeSkew(p.issuedAt - (p.sentAt + p.receivedAt) / 2, p.receivedAt - p.sentAt, ctx.cfg.transports[i]!.url);
    }
    return warn(
      'not measured: no transport reached the issuer (see the issuer checks)',
      'fix the issuer checks, or compare by hand: date -u here and on the issuer',
    );
  },
};
