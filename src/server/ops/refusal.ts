import { isErrorCode, type SigilError } from '../../errors.js';
import { OPS } from '../../protocol/messages.js';
import { refusalSource, type RefusalSummary } from '../audit/refusal-sampler.js';
import { capMessage, capOptional } from '../../util/untrusted-text.js';
import type { IssuerContext } from '../issuer.js';
import type { AuditEvent } from '../store/types.js';

/** Codes that mean "who you claim to be did not check out" — the auth-failure alert counts these. */
const AUTH_STATUSES = new Set([401, 403]);

/** Operations a refusal is counted under (the protocol's and the admin API); anything else is `other` (a label is a fixed set). */
const REFUSAL_OPS: ReadonlySet<string> = new Set([...OPS, 'admin']);

export interface RefusalWho {
  method?: string | null;
  bot?: string | null;
  instanceId?: string | null;
  remote: string | null;
  requestId?: string | undefined;
}

/**
 * Every refusal is counted and audited with the code that names the failed check. Refusals of
 * an authenticated caller get a row and a log line each; unauthenticated ones go through the
 * context's RefusalSampler (../audit/refusal-sampler.ts) so a flood of garbage becomes a few
 * rows plus one summary per source and code. Internal errors are logged with their cause (never
 * sent to the client) and always recorded. Client-chosen text is capped first
 * (util/untrusted-text.ts). Callers await it before answering: the row is written first.
 */
export async function auditRefusal(ctx: IssuerContext, op: string, e: SigilError, who: RefusalWho): Promise<void> {
  const labels = {
    op: REFUSAL_OPS.has(op) ? op : 'other',
    method: methodLabel(ctx, who.method),
    code: isErrorCode(e.code) ? e.code : 'other',
  };
  ctx.metrics.refusals.inc(labels);
  if (AUTH_STATUSES.has(e.status)) ctx.metrics.authFailure();
  const message = capMessage(e.message);
  // A rate-limited flood is sampled even from an authenticated caller: a row per refused
  // request would be the flood the limit is there to stop.
  if (!authenticated(e, who) || e.code === 'rate_limited') {
    const { record, due } = ctx.refusalSampler.admit(
      { source: refusalSource(who.remote), op: labels.op, code: labels.code },
      message,
      ctx.now(),
    );
    for (const s of due) await recordSummary(ctx, s);
    if (!record) return;
  }
  const remote = capOptional(who.remote);
  const method = capOptional(who.method, 64);
  const requestId = capOptional(who.requestId, 128);
  const fields = { op, code: e.code, method, bot: who.bot, instance: who.instanceId, remote, request_id: requestId };
  if (e.code === 'internal') ctx.log.error({ ...fields, err: e.cause ?? e }, 'internal error');
  else ctx.log.warn(fields, `${op} refused: ${message}`);
  await append(ctx, {
    action: op,
    outcome: e.code === 'internal' ? 'error' : 'refused',
    code: e.code,
    bot: who.bot ?? null,
    instanceId: who.instanceId ?? null,
    method,
    actor: 'agent',
    remote,
    details: { message, ...(requestId ? { request_id: requestId } : {}) },
  });
}

/** Write the summaries of the current interval (the owner's timer, and at shutdown). */
export async function flushRefusalSummaries(ctx: IssuerContext): Promise<number> {
  const due = ctx.refusalSampler.flush();
  for (const s of due) await recordSummary(ctx, s);
  return due.length;
}

/**
 * A refusal counts as authenticated when the caller proved an identity (a bot or an instance
 * is known) and the failure is not itself an authentication failure (401): a presented but
 * unverified certificate names an instance, yet anyone holding that public certificate can
 * replay it. Internal errors are always recorded one by one.
 */
function authenticated(e: SigilError, who: RefusalWho): boolean {
  if (e.code === 'internal') return true;
  if (e.status === 401) return false;
  return Boolean(who.bot || who.instanceId);
}

/** Only join methods this issuer registered become label values: the payload names the method. */
function methodLabel(ctx: IssuerContext, method: string | null | undefined): string {
  if (method === null || method === undefined) return 'none';
  return ctx.methods.has(method) ? method : 'other';
}

function recordSummary(ctx: IssuerContext, s: RefusalSummary): Promise<void> {
  const details = {
    op: s.op,
    count: s.count,
    recorded: s.recorded,
    first_at: new Date(s.firstAt).toISOString(),
    last_at: new Date(s.lastAt).toISOString(),
    interval_s: Math.round(s.intervalMs / 1000),
    sample: s.sample,
  };
  ctx.log.warn(
    { source: s.source, code: s.code, ...details },
    `${s.op} refused ${s.count} more times from ${s.source} (summarised)`,
  );
  return append(ctx, {
    action: 'refusal_summary',
    outcome: 'refused',
    code: s.code,
    actor: 'agent',
    remote: s.source,
    details,
  });
}

async function append(ctx: IssuerContext, ev: AuditEvent): Promise<void> {
  try {
    await ctx.stores.audit.append(ev, ctx.now());
  } catch (auditErr) {
    // The refusal itself stands; a failing audit write is an operator problem we must surface.
    ctx.log.error({ err: auditErr }, 'could not append refusal to the audit log');
  }
}
