/** Instance and bot operations: list instances, lock and unlock, forget a cleared TPM's clock. */
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import type { Stores } from '../store/types.js';
import { attestationView } from './attestation-view.js';
import { workloadSvidIds } from './workload-svid-view.js';
import { adminOperation, type AdminCall } from './operation.js';

async function resolveLockTarget(
  stores: Stores,
  target: string,
): Promise<{ kind: 'bot'; id: string } | { kind: 'instance'; id: string; bot: string }> {
  if (await stores.resources.get('bot', target)) return { kind: 'bot', id: target };
  const inst = await stores.instances.get(target);
  if (inst) return { kind: 'instance', id: target, bot: inst.bot };
  throw new SigilError(
    'not_found',
    `"${target}" is neither a bot nor an instance id (see: sigil ctl bots ls, sigil ctl instances ls)`,
  );
}

async function setLock(
  { stores, now }: AdminCall<unknown>,
  target: string,
  lock: { locked: true; reason: string } | { locked: false },
): Promise<Record<string, unknown>> {
  const t = await resolveLockTarget(stores, target);
  const reason = lock.locked ? lock.reason : null;
  await stores.withWriteTx(async (tx) => {
    if (t.kind === 'bot') await tx.botLocks.setLocked(t.id, lock.locked, reason, now);
    else await tx.instances.setLocked(t.id, lock.locked, reason, now);
    const action = lock.locked ? 'lock' : 'unlock';
    await tx.audit.append(
      {
        action,
        outcome: 'ok',
        actor: 'admin',
        // An instance's bot too: the audit listing and the instance_locked event name it.
        bot: t.kind === 'bot' ? t.id : t.bot,
        instanceId: t.kind === 'instance' ? t.id : null,
        details: { kind: t.kind, reason },
      },
      now,
    );
  });
  return { [t.kind]: t.id, locked: lock.locked };
}

export const INSTANCE_OPERATIONS = {
  'instances.ls': adminOperation(z.strictObject({ bot: z.string().optional() }), async ({ stores, args }) =>
    (await stores.instances.list(args.bot ? { bot: args.bot } : undefined)).map((i) => ({
      id: i.id,
      bot: i.bot,
      spiffe_id: i.spiffeId,
      join_method: i.joinMethod,
      generation: i.generation,
      serial: i.currentSerial,
      not_after: i.currentNotAfter ? new Date(i.currentNotAfter).toISOString() : null,
      key_storage: i.keyStorage,
      exportable: i.exportable,
      locked: i.locked,
      lock_reason: i.lockReason,
      last_seen: new Date(i.lastSeenAt).toISOString(),
      facts: i.facts,
    })),
  ),

  /**
   * One instance and every certificate issued to it, newest last: its identities, its credentials
   * and its workload SVIDs (kind `workload-x509-svid`, `workload-jwt-svid`; issue #17); and its
   * last boot-state attestation (./attestation-view.ts).
   */
  'instances.show': adminOperation(
    z.strictObject({ instance: z.string().min(1).max(128) }),
    async ({ stores, args }) => {
      const inst = await stores.instances.get(args.instance);
      if (!inst) throw new SigilError('not_found', `no instance "${args.instance}" (see: sigil ctl instances ls)`);
      const certs = await stores.certificates.listByInstance(inst.id);
      // A workload SVID's SPIFFE ID, from its issuance's audit row (./workload-svid-view.ts).
      const workload = new Set(certs.filter((c) => c.kind.startsWith('workload-')).map((c) => c.serial));
      const ids = workload.size > 0 ? await workloadSvidIds(stores, inst.id, workload) : undefined;
      return {
        id: inst.id,
        bot: inst.bot,
        spiffe_id: inst.spiffeId,
        join_method: inst.joinMethod,
        generation: inst.generation,
        locked: inst.locked,
        lock_reason: inst.lockReason,
        // The last boot-state attestation, its failed check and PCR diff (issue #16), or null.
        attestation: attestationView(inst.facts),
        facts: inst.facts,
        certificates: certs.map((c) => ({
          serial: c.serial,
          kind: c.kind,
          generation: c.generation,
          not_before: new Date(c.notBefore).toISOString(),
          not_after: new Date(c.notAfter).toISOString(),
          issued_at: new Date(c.issuedAt).toISOString(),
          request_id: c.requestId,
          // null: a workload SVID whose audit row was pruned.
          ...(workload.has(c.serial) ? { spiffe_id: ids?.get(c.serial)?.spiffe_id ?? null } : {}),
          ...(workload.has(c.serial) ? { entry: ids?.get(c.serial)?.entry ?? null } : {}),
        })),
      };
    },
  ),

  lock: adminOperation(
    z.strictObject({ target: z.string().min(1).max(128), reason: z.string().max(500).optional() }),
    (call) =>
      setLock(call, call.args.target, { locked: true, reason: call.args.reason ?? 'locked by an administrator' }),
  ),

  unlock: adminOperation(z.strictObject({ target: z.string().min(1).max(128) }), (call) =>
    setLock(call, call.args.target, { locked: false }),
  ),

  'instances.tpm-clock-reset': adminOperation(
    z.strictObject({ instance: z.string().min(1).max(128), reason: z.string().max(500).optional() }),
    async ({ stores, args, now }) => {
      // A deliberately cleared TPM (TPM2_Clear resets its Clock) keeps its EK, so it is the same
      // instance — but its clock is now behind the one recorded, which the tpm join refuses as a
      // rollback. Forgetting the recorded clock accepts the next join's reading as the new
      // baseline; audited with the value forgotten.
      const id = args.instance;
      const inst = await stores.instances.get(id);
      if (!inst) throw new SigilError('not_found', `no instance "${id}" (see: sigil ctl instances ls)`);
      const was = inst.facts.tpm_clock_ms;
      if (typeof was !== 'number')
        throw new SigilError(
          'bad_request',
          `instance "${id}" has no recorded TPM clock (it did not join with the tpm method, or its clock was already reset)`,
        );
      const reason = args.reason ?? null;
      await stores.withWriteTx(async (tx) => {
        await tx.instances.updateFacts(
          id,
          { tpm_clock_ms: null, tpm_clock_reset_at: new Date(now).toISOString() },
          now,
        );
        await tx.audit.append(
          {
            action: 'tpm_clock_reset',
            outcome: 'ok',
            actor: 'admin',
            bot: inst.bot,
            instanceId: id,
            details: { forgotten_clock_ms: was, reason },
          },
          now,
        );
      });
      return { instance: id, forgotten_clock_ms: was, reset: true };
    },
  ),
};
