import type { SigilError } from '../../errors.js';
import type { IssuerContext } from '../issuer.js';

/** Codes that mean "who you claim to be did not check out" — the auth-failure alert counts these. */
const AUTH_STATUSES = new Set([401, 403]);

/**
 * Every refusal is audited with the code that names the failed check, counted, and logged.
 * Internal errors are logged with their cause (never sent to the client).
 */
export function auditRefusal(
  ctx: IssuerContext,
  op: string,
  e: SigilError,
  who: { method?: string | null; bot?: string | null; instanceId?: string | null; remote: string | null; requestId?: string | undefined },
): void {
  const labels = { op, method: who.method ?? 'none', code: e.code };
  ctx.metrics.refusals.inc(labels);
  if (AUTH_STATUSES.has(e.status)) ctx.metrics.authFailure();
  const fields = { op, code: e.code, method: who.method, bot: who.bot, instance: who.instanceId, remote: who.remote, request_id: who.requestId };
  if (e.code === 'internal') ctx.log.error({ ...fields, err: e.cause ?? e }, 'internal error');
  else ctx.log.warn(fields, `${op} refused: ${e.message}`);
  try {
    ctx.stores.audit.append(
      {
        action: op,
        outcome: e.code === 'internal' ? 'error' : 'refused',
        code: e.code,
        bot: who.bot ?? null,
        instanceId: who.instanceId ?? null,
        method: who.method ?? null,
        actor: 'agent',
        remote: who.remote,
        details: { message: e.message, ...(who.requestId ? { request_id: who.requestId } : {}) },
      },
      ctx.now(),
    );
  } catch (auditErr) {
    // The refusal itself stands; a failing audit write is an operator problem we must surface.
    ctx.log.error({ err: auditErr }, 'could not append refusal to the audit log');
  }
}
