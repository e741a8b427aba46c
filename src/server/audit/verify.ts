/**
 * The full audit verification behind `sigil ctl audit --verify` (issue #11 items 4 and 6c):
 * the hash chain (keyed rows with the audit key), the prune anchor's signed checkpoint, the
 * append-only triggers, and the signed checkpoints of a file — which detect rows cut off the end
 * (a checkpoint beyond the last row) and rewrites (a checkpointed seq whose hash differs).
 *
 * The chain is read in chunks (VERIFY_CHUNK_ROWS) with a macrotask yield between them, so an
 * issuer answering `audit.verify` over the admin API keeps serving: at ~100k rows the old
 * single walk blocked its event loop for about a second.
 */
import type { KeyObject } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { AuditStore } from '../store/types.js';
import { checkpointSignatureOk, readCheckpoints, type Checkpoint } from './checkpoints.js';

export interface AuditVerifyOptions {
  /** Public keys checkpoints may be signed with, by signer id (./signer.ts). */
  verifiers?: ReadonlyMap<string, KeyObject>;
  /** A checkpoint file to compare against. */
  checkpointFile?: string;
  chunkRows?: number;
  /** Called with the seq and hash of each verified row (prune uses it to find its anchor). */
  onRow?: (seq: number, hash: string) => void;
}

export interface AuditVerifyReport {
  ok: boolean;
  rows: number;
  /** First row that does not verify (chain breaks). */
  brokenAt?: number;
  reason?: string;
  first_seq: number | null;
  last_seq: number | null;
  key: { id: string; from_seq: number } | null;
  anchor: { seq: number; pruned: number; at: string; checkpoint_ok: boolean | null } | null;
  triggers_missing: string[];
  checkpoints: {
    file: string;
    lines: number;
    verified: number;
    before_anchor: number;
    latest_seq: number | null;
  } | null;
  /** Every failed check, one sentence each (empty when ok). */
  problems: string[];
}

export async function verifyAuditLog(audit: AuditStore, opts: AuditVerifyOptions = {}): Promise<AuditVerifyReport> {
  const problems: string[] = [];
  const verifiers = opts.verifiers ?? new Map<string, KeyObject>();
  // Independent reads, asked at once.
  const [keyInfo, { missing }, anchor] = await Promise.all([audit.keyInfo(), audit.triggers(), audit.anchor()]);
  if (missing.length)
    problems.push(`append-only triggers dropped: ${missing.join(', ')} (someone wrote to issuer.db outside Sigil)`);

  let anchorOk: boolean | null = null;
  if (anchor) {
    if (verifiers.size === 0) anchorOk = null;
    else {
      // Whatever JSON the column holds (an attacker may have written it): an object or nothing.
      const cp = (typeof anchor.checkpoint === 'object' && anchor.checkpoint !== null
        ? anchor.checkpoint
        : {}) as unknown as Checkpoint;
      anchorOk = checkpointSignatureOk(cp, verifiers) && cp.seq === anchor.seq && cp.hash === anchor.hash;
      if (!anchorOk)
        problems.push(
          `the prune anchor at seq ${anchor.seq} is not backed by a valid signed checkpoint (rows before it may have been deleted outside Sigil)`,
        );
    }
  }

  // Checkpoints from the file, by seq (the latest line wins for a seq written twice).
  const expected = new Map<number, { line: number; hash: string }>();
  let cpSummary: AuditVerifyReport['checkpoints'] = null;
  if (opts.checkpointFile) {
    let lines: ReturnType<typeof readCheckpoints> = [];
    try {
      lines = readCheckpoints(opts.checkpointFile);
    } catch (e) {
      problems.push(
        `cannot read checkpoint file ${opts.checkpointFile}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    let verified = 0;
    let beforeAnchor = 0;
    let latest: number | null = null;
    for (const l of lines) {
      if (!l.cp) {
        problems.push(`checkpoint line ${l.line}: ${l.error}`);
        continue;
      }
      if (!checkpointSignatureOk(l.cp, verifiers)) {
        problems.push(`checkpoint line ${l.line} (seq ${l.cp.seq}): signature does not verify with the issuer's key`);
        continue;
      }
      verified++;
      latest = Math.max(latest ?? 0, l.cp.seq);
      if (keyInfo && l.cp.key_id && l.cp.key_id !== keyInfo.id && l.cp.seq >= keyInfo.fromSeq) {
        problems.push(
          `checkpoint line ${l.line} (seq ${l.cp.seq}) was made with audit key ${l.cp.key_id}, but the key in use is ${keyInfo.id} (audit.key was replaced)`,
        );
      }
      if (anchor && l.cp.seq <= anchor.seq) {
        if (l.cp.seq === anchor.seq && l.cp.hash !== anchor.hash)
          problems.push(
            `checkpoint line ${l.line}: the prune anchor at seq ${anchor.seq} has another hash than checkpointed (rewritten)`,
          );
        beforeAnchor++;
        continue;
      }
      expected.set(l.cp.seq, { line: l.line, hash: l.cp.hash });
    }
    cpSummary = {
      file: opts.checkpointFile,
      lines: lines.length,
      verified,
      before_anchor: beforeAnchor,
      latest_seq: latest,
    };
  }

  let first: number | null = null;
  let last: number | null = null;
  const seen = (seq: number, hash: string): void => {
    first ??= seq;
    last = seq;
    const want = expected.get(seq);
    if (want) {
      if (want.hash !== hash)
        problems.push(`rewritten: row ${seq} has another hash than checkpoint line ${want.line} recorded`);
      expected.delete(seq);
    }
    opts.onRow?.(seq, hash);
  };
  let walk = await audit.startWalk();
  while (!walk.done) {
    walk = await audit.verifyStep(walk, opts.chunkRows, seen);
    if (!walk.done) await yieldToLoop();
  }
  const chainOk = walk.brokenAt === undefined;
  // Checkpoints the walk did not reach: rows after the last one are gone (or the chain broke first).
  if (chainOk) {
    for (const [seq, want] of [...expected].sort((a, b) => a[0] - b[0])) {
      const end = last ?? anchor?.seq ?? 0;
      if (seq > end) {
        problems.push(
          `truncated: checkpoint line ${want.line} covers seq ${seq} but the log ends at seq ${end} (${seq - end} or more rows missing)`,
        );
        break;
      }
    }
  }

  const report: AuditVerifyReport = {
    ok: chainOk && problems.length === 0,
    rows: walk.rows,
    first_seq: first,
    last_seq: last,
    key: keyInfo ? { id: keyInfo.id, from_seq: keyInfo.fromSeq } : null,
    anchor: anchor
      ? { seq: anchor.seq, pruned: anchor.pruned, at: new Date(anchor.at).toISOString(), checkpoint_ok: anchorOk }
      : null,
    triggers_missing: missing,
    checkpoints: cpSummary,
    problems,
  };
  if (!chainOk) {
    report.brokenAt = walk.brokenAt!;
    report.reason = walk.reason!;
    problems.unshift(`chain broken at seq ${walk.brokenAt}: ${walk.reason}`);
  } else if (problems.length) report.reason = problems[0]!;
  return report;
}
