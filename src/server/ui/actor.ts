/**
 * Who changed what, from the fleet view: the admin operations (server/admin/) write their own
 * audit rows with actor 'admin'. Run from a fleet-view session they must say which session
 * (`ui:<user>`, its role) and, for unlock, the reason the operator typed — so the operation runs
 * on stores whose audit rows are re-attributed, in its transactions too (as server/admin/
 * audited.ts does for the caller's address). One row per change, nothing written twice.
 */
import type { AuditStore, Stores, TxStores } from '../store/types.js';

export interface UiActor {
  /** `ui:<user>`. */
  actor: string;
  /** Merged into the details of every row the operation writes. */
  details: Record<string, unknown>;
}

function attributedAudit(audit: AuditStore, who: UiActor): AuditStore {
  return Object.assign(Object.create(audit) as AuditStore, {
    append: (ev: Parameters<AuditStore['append']>[0], at: number) =>
      audit.append({ ...ev, actor: who.actor, details: { ...(ev.details ?? {}), ...who.details } }, at),
  });
}

export function storesActingAs(stores: Stores, who: UiActor): Stores {
  return Object.assign(Object.create(stores) as Stores, {
    audit: attributedAudit(stores.audit, who),
    withWriteTx: <T>(fn: (tx: TxStores) => Promise<T>): Promise<T> =>
      stores.withWriteTx((tx) =>
        fn(Object.assign(Object.create(tx) as TxStores, { audit: attributedAudit(tx.audit, who) })),
      ),
  });
}
