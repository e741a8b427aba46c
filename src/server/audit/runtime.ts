/**
 * The issuer's audit timers, owned by `sigil server start`: flush the refusal sampler's
 * summaries every interval, write a signed checkpoint when the chain head moved, prune rows past
 * the retention (verify → checkpoint → delete, ./prune.ts). Each runs off the request path on
 * its own timer; `stop()` flushes and writes a final checkpoint, so a clean shutdown leaves the
 * newest rows covered. Every store call is awaited: `stop()` resolves once the final rows and
 * checkpoint are written, before the owner closes the stores.
 */
import { SigilError } from '../../errors.js';
import type { IssuerContext } from '../issuer.js';
import { flushRefusalSummaries } from '../ops/refusal.js';
import { CheckpointWriter, type Checkpoint } from './checkpoints.js';
import { pruneAudit } from './prune.js';
import { checkpointSigner } from './signer.js';

export interface AuditRuntimeOptions {
  checkpointFile: string;
  /** Between periodic checkpoints (only written when rows were added). */
  checkpointIntervalMs: number;
  /** Keep rows this long; undefined keeps everything. */
  retentionMs?: number;
  /** How often the retention prune runs. */
  pruneEveryMs?: number;
}

export const DEFAULT_CHECKPOINT_INTERVAL_MS = 10 * 60_000;

export async function startAuditRuntime(
  ctx: IssuerContext,
  opts: AuditRuntimeOptions,
): Promise<{ writer: CheckpointWriter; stop(): Promise<void> }> {
  // Each checkpoint also goes to the log: journald/syslog forwarding ships a copy off the machine.
  const logCheckpoint = (cp: Checkpoint): void => ctx.log.info({ audit_checkpoint: cp }, 'audit checkpoint');
  const writer = new CheckpointWriter(opts.checkpointFile, checkpointSigner(ctx.ca.intermediateKey), logCheckpoint);
  ctx.auditEnv = {
    ...ctx.auditEnv,
    checkpoints: writer,
    verify: { ...ctx.auditEnv.verify, checkpointFile: opts.checkpointFile },
  };
  /** Run one job; a failure is logged (the issuer keeps serving), never thrown. */
  const guard = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      ctx.log.error({ err }, `audit ${what} failed`);
    }
  };
  const checkpoint = (): Promise<void> =>
    guard('checkpoint', () => writer.write(ctx.stores.audit, 'periodic', ctx.now()));
  const timers = [
    setInterval(
      () => void guard('refusal summary', () => flushRefusalSummaries(ctx)),
      ctx.refusalSampler.opts.intervalMs,
    ),
    setInterval(() => void checkpoint(), opts.checkpointIntervalMs),
  ];
  /** The retention prune in progress (one at a time; `stop()` waits for it). */
  let pruning: Promise<void> | undefined;
  if (opts.retentionMs !== undefined) {
    const retention = opts.retentionMs;
    const prune = (): void => {
      pruning ??= guard('prune', async () => {
        const r = await pruneAudit(
          ctx.stores.audit,
          writer,
          ctx.now() - retention,
          ctx.now(),
          ctx.auditEnv.verify ?? {},
        );
        if (r.removed) ctx.log.info({ ...r }, 'audit rows past retention pruned');
      }).finally(() => (pruning = undefined));
    };
    timers.push(setInterval(prune, opts.pruneEveryMs ?? 3600_000));
  }
  for (const t of timers) t.unref();
  // A first checkpoint at start anchors whatever the previous run left, and proves the file is
  // writable: an issuer that cannot checkpoint refuses to start rather than run without evidence.
  try {
    await writer.write(ctx.stores.audit, 'periodic', ctx.now());
  } catch (e) {
    for (const t of timers) clearInterval(t);
    throw new SigilError(
      'config_invalid',
      `cannot append audit checkpoints to ${opts.checkpointFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      { cause: e },
    );
  }
  return {
    writer,
    async stop(): Promise<void> {
      for (const t of timers) clearInterval(t);
      await pruning;
      // Summaries first: the shutdown checkpoint then covers their rows too.
      await guard('refusal summary', () => flushRefusalSummaries(ctx));
      await guard('checkpoint', () => writer.write(ctx.stores.audit, 'shutdown', ctx.now()));
    },
  };
}
