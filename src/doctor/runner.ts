/**
 * Runs doctor checks. Never throws: a check that crashes is reported as
 * `fail <name> internal: <message>`, one that does not finish in time as a failure naming its
 * limit. Checks run concurrently (each network check waits at most 5 s, so a dead issuer costs
 * 5 s in all, not 5 s per check) and are reported in the order given.
 */
import { SigilError } from '../errors.js';
import {
  DEFAULT_CHECK_TIMEOUT_MS,
  type Check,
  type CheckOutcome,
  type CheckResult,
  type DoctorReport,
} from './types.js';

function crashed(e: unknown): CheckOutcome {
  // A coded error is a finding in its own words; anything else is a bug in the check.
  if (e instanceof SigilError)
    return { status: 'fail', detail: `${e.code}: ${e.message}`, fix: 'see docs/errors.md for the code' };
  const msg = e instanceof Error ? e.message : String(e);
  return {
    status: 'fail',
    detail: `internal: ${msg.replace(/\s*\n\s*/g, ' ')}`,
    fix: 'rerun with SIGIL_DEBUG=1 and report the message (this is a bug in the check)',
  };
}

async function runOne<Ctx>(check: Check<Ctx>, ctx: Ctx): Promise<CheckResult> {
  const limit = check.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CheckOutcome>((resolve) => {
    timer = setTimeout(() => {
      ac.abort();
      resolve({
        status: 'fail',
        detail: `did not finish within ${limit / 1000} s`,
        fix: 'something it talks to hangs (network, TPM, disk); rerun with SIGIL_DEBUG=1',
      });
    }, limit);
  });
  let outcome: CheckOutcome;
  try {
    outcome = await Promise.race([Promise.resolve().then(() => check.run(ctx, ac.signal)), timeout]);
  } catch (e) {
    if (process.env.SIGIL_DEBUG && e instanceof Error) process.stderr.write(`${check.name}: ${e.stack}\n`);
    outcome = crashed(e);
  } finally {
    clearTimeout(timer);
  }
  return {
    name: check.name,
    status: outcome.status,
    detail: outcome.detail,
    fix: outcome.status === 'ok' ? null : (outcome.fix ?? null),
  };
}

export async function runChecks<Ctx>(checks: ReadonlyArray<Check<Ctx>>, ctx: Ctx): Promise<DoctorReport> {
  const results = await Promise.all(checks.map((c) => runOne(c, ctx)));
  return { checks: results, ok: results.every((r) => r.status !== 'fail') };
}

/** Messages from below (OpenSSL's error stack, a stack of causes) may span lines; a report line may not. */
const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ').trim();

/** The human form: one line per check, `status  name  detail — fix: …`, columns aligned. */
export function formatReport(report: DoctorReport): string {
  const w = Math.max(0, ...report.checks.map((c) => c.name.length));
  const lines = report.checks.map(
    (c) =>
      `${c.status.padEnd(4)}  ${c.name.padEnd(w)}  ${oneLine(c.detail)}${c.fix ? ` — fix: ${oneLine(c.fix)}` : ''}`,
  );
  const counts = (['fail', 'warn'] as const)
    .map((s) => `${report.checks.filter((c) => c.status === s).length} ${s}`)
    .join(', ');
  return `${lines.join('\n')}\n${report.ok ? 'doctor: no failures' : 'doctor: failures found'} (${report.checks.length} checks, ${counts})\n`;
}
