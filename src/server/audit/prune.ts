/**
 * Audit retention (issue #11 item 4): remove the rows older than a time, after proving what
 * they were. The chain is verified first (a broken chain is never pruned: that would destroy
 * the evidence), a signed checkpoint of the last row to go is appended to the checkpoint file,
 * then the anchor and the delete happen in one transaction (SqliteAuditStore.pruneThrough).
 * Verification afterwards starts at the anchor, whose checkpoint it checks.
 */
import { SigilError } from '../../errors.js';
import type { AuditStore } from '../store/types.js';
import type { CheckpointWriter } from './checkpoints.js';
import { verifyAuditLog, type AuditVerifyOptions } from './verify.js';

export interface PruneResult {
  /** Last removed seq (null: nothing older than `before`). */
  through_seq: number | null;
  removed: number;
  before: string;
  checkpoint_file: string;
}

export async function pruneAudit(
  audit: AuditStore,
  writer: CheckpointWriter,
  before: number,
  now: number,
  verify: Omit<AuditVerifyOptions, 'onRow' | 'checkpointFile'> = {},
): Promise<PruneResult> {
  // The newest row older than `before`, found while verifying (rows are in seq and time order).
  let through: { seq: number; hash: string } | undefined;
  // Rows are appended in time order (up to clock steps between processes): everything up to the
  // newest row older than `before` goes.
  const cutoff = await audit.lastSeqBefore(before);
  const report = await verifyAuditLog(audit, {
    ...verify,
    onRow: (seq, hash) => {
      if (cutoff !== undefined && seq <= cutoff) through = { seq, hash };
    },
  });
  if (!report.ok)
    throw new SigilError(
      'audit_chain_broken',
      `not pruning: the audit log does not verify (${report.reason}); investigate first (sigil ctl audit --verify)`,
    );
  const result: PruneResult = {
    through_seq: null,
    removed: 0,
    before: new Date(before).toISOString(),
    checkpoint_file: writer.path,
  };
  if (!through) return result;
  const [anchor, keyInfo] = await Promise.all([audit.anchor(), audit.keyInfo()]);
  const count = through.seq - (anchor?.seq ?? 0);
  const cp = writer.writeAt(through, count, keyInfo?.id ?? null, now);
  result.removed = await audit.pruneThrough(through.seq, JSON.stringify(cp), now);
  result.through_seq = through.seq;
  await audit.append(
    {
      action: 'audit_prune',
      outcome: 'ok',
      actor: 'admin',
      details: { through_seq: through.seq, removed: result.removed, before: result.before },
    },
    now,
  );
  return result;
}
