/**
 * The audit row of a lock the issuer decided by itself — an attestation failure under
 * `on_attestation_failure: lock` (./attestation.ts), a device certificate revoked since
 * enrolment (./renew.ts) — written in the transaction that locks. It is what the CRL publisher
 * (../crl/publisher.ts changesRevocation) and the `instance_locked` event (../events/derive.ts)
 * follow, exactly as for an administrator's lock.
 */
import type { InstanceRecord, TxStores } from '../store/types.js';

export async function auditSystemLock(
  tx: Pick<TxStores, 'audit'>,
  inst: Pick<InstanceRecord, 'id' | 'bot' | 'joinMethod'>,
  details: { reason: string; cause: string; op: string } & Record<string, unknown>,
  now: number,
): Promise<void> {
  await tx.audit.append(
    {
      action: 'lock',
      outcome: 'ok',
      actor: 'system',
      bot: inst.bot,
      instanceId: inst.id,
      method: inst.joinMethod,
      details: { kind: 'instance', ...details },
    },
    now,
  );
}
