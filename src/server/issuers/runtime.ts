/**
 * Keeping `ctx.intermediates` (./registry.ts) current while the issuer serves: read once before it
 * listens (a retired or revoked issuer refuses to start), then again every REFRESH_MS and at once
 * when the change feed (PostgreSQL LISTEN/NOTIFY) says another issuer changed the registry or
 * resynced. What a refresh changes is put into the context: the CAs renewals accept
 * (ctx.issuingCas) and the codec that replays stored answers (ctx.storedAnswers); the bundle reads
 * the registry directly (ops/bundle.ts).
 */
import { readFileSync } from 'node:fs';
import { checkpointVerifiers, signerId } from '../audit/checkpoints.js';
import { paths } from '../data-dir.js';
import { SigilError } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import type { IssuerContext } from '../issuer.js';
import type { Stores } from '../store/types.js';
import type { IntermediateRegistry } from './registry.js';
import { rootCrlFile } from './root-crl-file.js';

/** Without a change feed (SQLite, or a lost listener), a revocation reaches this issuer within this. */
export const REFRESH_MS = 5_000;

export interface RegistryRuntime {
  stop(): void;
}

/** Put the registry's current view into the context. */
export function applyRegistry(ctx: IssuerContext, registry: IntermediateRegistry): void {
  ctx.issuingCas = registry.issuingCas();
  ctx.storedAnswers = registry.answerCodec();
  // Audit checkpoints (and a prune's anchor) may be signed by any issuer of the store: each signs
  // with its own intermediate. Verified against this issuer's alone, a peer's prune read as
  // tampering and stopped this issuer's own pruning (review of issue #16). Every live
  // intermediate counts; a revoked one does not (its key may be in other hands now).
  const verifiers = new Map([
    // This directory's own earlier intermediates (rotate-intermediate), revoked ones included:
    // the checkpoints they signed before the rotation are this issuer's history, and the thief of
    // such a key held audit.key too (docs/runbook.md "After a compromise").
    ...checkpointVerifiers(registry.keptPems),
    ...registry.live.map((l) => {
      const key = l.ca.publicKey;
      return [signerId(key), key] as const;
    }),
  ]);
  ctx.auditEnv = { ...ctx.auditEnv, verify: { ...ctx.auditEnv.verify, verifiers } };
}

/**
 * Whether this data directory now holds another intermediate than the one the running issuer
 * loaded (`intermediatePem`): `rotate-intermediate` replaced it in place, and a restart serves
 * with the new one — unlike a retirement with no replacement, where a start is refused. A
 * directory that cannot be read counts as not rotated (the issuer then stays down).
 */
export function rotatedInPlace(dataDir: string, intermediatePem: string): boolean {
  try {
    const now = readFileSync(paths(dataDir).intCert, 'utf8');
    return now.trim() !== intermediatePem.trim();
  } catch {
    return false;
  }
}

export function retiredError(registry: IntermediateRegistry): SigilError {
  return new SigilError(
    'issuer_retired',
    `this issuer${registry.ownName ? ` ("${registry.ownName}")` : ''} is ${registry.ownStatus} in the issuer registry; it does not serve any more (docs/issuers.md)`,
  );
}

export async function startRegistry(
  ctx: IssuerContext,
  o: { log: Logger; refreshMs?: number; dataDir?: string },
): Promise<RegistryRuntime> {
  const registry = ctx.intermediates;
  if (!registry) return { stop: () => undefined };
  if (o.dataDir !== undefined) registry.useRootCrl(rootCrlFile(o.dataDir));
  await registry.refresh();
  if (registry.ownStatus !== 'active') throw retiredError(registry);
  applyRegistry(ctx, registry);
  let running: Promise<void> | undefined;
  const refresh = (why: string): Promise<void> =>
    (running ??= registry
      .refresh()
      .then((changed) => {
        if (!changed) return;
        applyRegistry(ctx, registry);
        o.log.info(
          {
            live: registry.live.map((l) => l.name ?? '(own)'),
            revoked: registry.revoked.map((r) => r.name),
            own_status: registry.ownStatus,
          },
          `issuer registry changed (${why})`,
        );
      })
      .catch((err: unknown) => o.log.warn({ err }, 'reading the issuer registry failed'))
      .finally(() => (running = undefined)));
  const timer = setInterval(() => void refresh('timer'), o.refreshMs ?? REFRESH_MS);
  timer.unref();
  // A registry change NOTIFYs a topic the feed does not cache; it arrives as 'all' (a resync too).
  const feed = (ctx.stores as Stores & { changes?: { subscribe(fn: (event: string) => void): void } }).changes;
  let stopped = false;
  feed?.subscribe((event) => {
    if (!stopped && event === 'all') void refresh('change feed');
  });
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
