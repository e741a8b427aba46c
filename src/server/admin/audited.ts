/**
 * Admin calls with their audit trail (issue #11 item 6d). Every row an operation writes carries
 * the caller's address (`remote`: the client IP over the admin API, "local" for `sigil ctl
 * --data-dir`); a call over the API that changed nothing still leaves one `admin_call` row, so
 * reads of the audit log and listings are attributable too; and a refused call (bad input,
 * unknown operation, not found) is recorded with its code. Calls with a wrong admin credential
 * never get here: the HTTPS route refuses them through ops/refusal.ts (sampled per source).
 */
import { toSigilError } from '../../errors.js';
import { capMessage, capText } from '../../util/untrusted-text.js';
import type { AuditEvent, AuditStore, Stores, TxStores } from '../store/types.js';
import { runAdminOp, type AdminAuditEnv } from './ops.js';

export interface AdminCaller {
  /** Client address, or "local". */
  remote: string;
  /** Record calls that wrote no row of their own (the admin API does; local ctl does not). */
  auditReads: boolean;
}

export async function runAdminCall(
  stores: Stores,
  op: string,
  args: unknown,
  now: number,
  caller: AdminCaller,
  env: AdminAuditEnv = {},
): Promise<unknown> {
  const remote = capText(caller.remote, 200);
  let wrote = false;
  const onAppend = (): void => {
    wrote = true;
  };
  // The operation sees stores whose audit rows carry the caller, inside its transactions too.
  const scoped = Object.assign(Object.create(stores) as Stores, {
    audit: attributed(stores.audit, remote, onAppend),
    withWriteTx: <T>(fn: (tx: TxStores) => Promise<T>): Promise<T> =>
      stores.withWriteTx((tx) =>
        fn(Object.assign(Object.create(tx) as TxStores, { audit: attributed(tx.audit, remote, onAppend) })),
      ),
  });
  const opName = capText(op, 64);
  try {
    const result = await runAdminOp(scoped, op, args, now, env);
    if (!wrote && caller.auditReads)
      await stores.audit.append(
        { action: 'admin_call', outcome: 'ok', actor: 'admin', remote, details: { op: opName } },
        now,
      );
    return result;
  } catch (err) {
    const e = toSigilError(err);
    try {
      await stores.audit.append(
        {
          action: 'admin',
          outcome: e.code === 'internal' ? 'error' : 'refused',
          code: e.code,
          actor: 'admin',
          remote,
          details: { op: opName, message: capMessage(e.message) },
        },
        now,
      );
    } catch {
      // The refusal stands even when the audit write fails; the caller sees the original error.
    }
    throw e;
  }
}

/** `audit` with every appended row attributed to `remote` (unless it names its own). */
function attributed(audit: AuditStore, remote: string, onAppend: () => void): AuditStore {
  return Object.assign(Object.create(audit) as AuditStore, {
    append: (ev: AuditEvent, at: number) => {
      onAppend();
      return audit.append({ ...ev, remote: ev.remote ?? remote }, at);
    },
  });
}
