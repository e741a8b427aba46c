/**
 * The issuer's CRL for relying parties (issue #16; docs/crl.md), owned by the IssuerService.
 *
 * The list is never kept beside the locks: each CRL is re-derived from the store
 * (./revoked.ts) and signed by the issuing intermediate (./build.ts). A new CRL is made
 *
 *   - when a lock changes: the publisher follows the audit log (through the issuer's one
 *     AuditWatcher, ../events/audit-watcher.ts, shared with pushed events), where every lock and
 *     unlock is written in the transaction that makes it (server/admin/instance-ops.ts), and where
 *     a `generation_mismatch` refusal follows the lock renewal makes (server/ops/authenticate.ts).
 *     So a lock made by this issuer, by `sigil ctl --data-dir` in another process, or by another
 *     issuer on the same PostgreSQL store is seen the same way, with no hook in those paths. The
 *     tail is looked at every `watchMs` and before every answer to GET /v1/crl, so a CRL fetched
 *     after a lock committed lists it;
 *   - at least every `refreshMs` (`crl_refresh`), even when nothing changed, because nextUpdate
 *     is now + 2×refreshMs: a relying party must stop trusting a CRL an attacker keeps
 *     replaying to it (a stale CRL that still says "not revoked") once that time passes.
 *
 * cRLNumber comes from the store's counter for this CRL issuer (./state.ts takeCrlNumber). One CRL is made at a time; callers
 * that arrive meanwhile get that one.
 */
import { SigilError } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import { AuditWatcher, type AuditBatch } from '../events/audit-watcher.js';
import type { AuditRecord, Stores } from '../store/types.js';
import { signCrl, type CrlIssuer } from './build.js';
import { revokedCertificates, type RevokedEntry } from './revoked.js';
import { nextCrlNumber, recordCrl, takeCrlNumber, type CrlFiles } from './state.js';

/** `crl_refresh` default: a CRL at least every hour, valid for two. */
export const DEFAULT_CRL_REFRESH_MS = 3600_000;
/** Shorter refreshes would sign a CRL every few seconds for nothing; longer ones leave revocations unseen. */
export const MIN_CRL_REFRESH_MS = 60_000;
export const MAX_CRL_REFRESH_MS = 7 * 86400_000;
/** How often the audit log is looked at for lock changes. */
export const DEFAULT_CRL_WATCH_MS = 5_000;
/** GET /v1/crl per source (public and unauthenticated; the answer is cached bytes, the limit guards the store reads). */
export const CRL_FETCH_LIMIT = { ratePerS: 5, burst: 20 } as const;
/**
 * The audit rows after which the revoked set may differ: a lock or unlock (an attestation failure
 * that locks writes a `lock` row), the automatic lock of a stale generation, and an attestation
 * that failed or recovered (server/ops/attestation.ts: the row's details carry the record; a
 * good one after a failure says `attestation_recovered`).
 */
export function changesRevocation(
  row: Pick<AuditRecord, 'action' | 'outcome' | 'code'> & { details?: Record<string, unknown> },
): boolean {
  if ((row.action === 'lock' || row.action === 'unlock') && row.outcome === 'ok') return true;
  if (row.code === 'generation_mismatch') return true;
  const d = row.details;
  if (d === undefined || d['attestation'] === undefined) return false;
  return row.outcome === 'refused' || d['attestation_recovered'] === true;
}

export interface PublishedCrl {
  der: Buffer;
  crlNumber: bigint;
  /** The time the content was derived (the CRL's thisUpdate is back-dated from it: ./build.ts). */
  madeAt: number;
  nextUpdate: number;
  entries: readonly RevokedEntry[];
}

export interface CrlPublisherOptions {
  issuer: CrlIssuer;
  stores: Stores;
  /** Where cRLNumber and the last CRL are kept (./state.ts). */
  files: CrlFiles;
  refreshMs?: number;
  watchMs?: number;
  now?: () => number;
  log?: Logger;
  /** The issuer's audit tail (shared with pushed events); default: one of its own over `stores.audit`. */
  watcher?: AuditWatcher;
}

/** Told of every new CRL whose entries differ from the previous one's (pushed events: certificate_revoked). */
export type CrlChangeListener = (crl: PublishedCrl, previous: PublishedCrl | undefined) => void;

export class CrlPublisher {
  readonly refreshMs: number;
  readonly watchMs: number;
  readonly #o: CrlPublisherOptions;
  readonly #now: () => number;
  #current: PublishedCrl | undefined;
  /** The audit head when the current entries were derived: later lock rows make them stale. */
  #derivedAt: number | undefined;
  /** A lock change after #derivedAt was seen: the next check re-derives. */
  #dirty = false;
  readonly #watcher: AuditWatcher;
  readonly #ownWatcher: boolean;
  readonly #listeners: CrlChangeListener[] = [];
  #making: Promise<PublishedCrl> | undefined;
  #checking: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(o: CrlPublisherOptions) {
    const refreshMs = o.refreshMs ?? DEFAULT_CRL_REFRESH_MS;
    if (!(refreshMs >= MIN_CRL_REFRESH_MS && refreshMs <= MAX_CRL_REFRESH_MS))
      throw new SigilError(
        'config_invalid',
        `crl_refresh must be between ${MIN_CRL_REFRESH_MS / 1000} s and ${MAX_CRL_REFRESH_MS / 86400_000} days (got ${refreshMs} ms)`,
      );
    this.#o = o;
    this.refreshMs = refreshMs;
    this.watchMs = o.watchMs ?? DEFAULT_CRL_WATCH_MS;
    this.#now = o.now ?? Date.now;
    this.#ownWatcher = o.watcher === undefined;
    this.#watcher = o.watcher ?? new AuditWatcher({ audit: o.stores.audit, now: this.#now, watchMs: this.watchMs });
    this.#watcher.subscribe((batch) => this.#onAudit(batch));
  }

  /** Be told of each new CRL whose entries changed. */
  onChange(fn: CrlChangeListener): void {
    this.#listeners.push(fn);
  }

  #onAudit(batch: AuditBatch): void {
    const from = this.#derivedAt;
    if (from === undefined) return; // nothing derived yet: the first CRL is made from the store
    if (!batch.reset && !batch.rows.some((r) => r.seq > from && changesRevocation(r))) return;
    this.#dirty = true;
    // Not awaited: this runs inside the watcher's look, which check() itself waits for.
    this.check().catch((err: unknown) => this.#o.log?.warn({ err }, 'CRL refresh failed'));
  }

  /** The CRL to serve: new if a lock changed since the last one or it is due. */
  async current(): Promise<PublishedCrl> {
    // A look already running may have read the audit log before a lock this caller knows of
    // committed: wait for it, then look again (joining only a look that started after this call).
    const running = this.#checking;
    if (running) await running.catch(() => undefined);
    await this.check();
    return this.#current ?? this.publish('first');
  }

  /**
   * Look for lock changes (the audit tail) and whether the CRL is due; make a new one if so.
   * Concurrent callers share one look.
   */
  check(): Promise<void> {
    this.#checking ??= this.#check().finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  async #check(): Promise<void> {
    // The tail first: a lock committed before this call is delivered (and marks #dirty) by then.
    try {
      await this.#watcher.poll();
    } catch (err) {
      // The store cannot vouch for new rows (a failed WAL flush is final until a restart; the
      // issuer's /readyz says so): the CRL already signed is still true for what it lists and
      // valid until its nextUpdate — serve it rather than fail every fetch (review).
      const held = this.#current;
      if (held === undefined || this.#now() >= held.nextUpdate) throw err;
      this.#o.log?.warn({ err }, 'the audit tail cannot be read; serving the CRL made before');
      return;
    }
    const cur = this.#current;
    if (cur === undefined || this.#now() >= cur.madeAt + this.refreshMs) {
      await this.publish(cur === undefined ? 'first' : 'refresh');
      return;
    }
    if (this.#dirty) {
      this.#dirty = false;
      await this.publish('lock change', { unlessSame: true });
    }
  }

  /**
   * Re-derive the revoked set and sign a CRL with the next number. `unlessSame`: keep the current
   * CRL when the set did not change (a lock of an instance without live certificates, a bot lock).
   */
  publish(why: string, opts: { unlessSame?: boolean } = {}): Promise<PublishedCrl> {
    const run = async (): Promise<PublishedCrl> => {
      // The audit position first: a lock committed after it is seen by the next look, not lost.
      const head = await this.#o.stores.audit.head();
      const now = this.#now();
      const entries = await revokedCertificates(this.#o.stores, now);
      this.#derivedAt = head?.seq ?? 0;
      const cur = this.#current;
      if (opts.unlessSame && cur && sameEntries(cur.entries, entries)) return cur;
      // Taken from the store: unique per CRL issuer across workers and issuers (./state.ts).
      const crlNumber = await takeCrlNumber(this.#o.stores, this.#o.issuer.certDer, nextCrlNumber(this.#o.files, now));
      const nextUpdate = now + 2 * this.refreshMs;
      const der = await signCrl(this.#o.issuer, { entries, now, nextUpdate, crlNumber });
      recordCrl(this.#o.files, der, crlNumber, now);
      this.#current = { der, crlNumber, madeAt: now, nextUpdate, entries };
      if (!cur || !sameEntries(cur.entries, entries))
        for (const fn of this.#listeners) {
          try {
            fn(this.#current, cur);
          } catch (err) {
            this.#o.log?.warn({ err }, 'a CRL change listener failed');
          }
        }
      this.#o.log?.info(
        { crl_number: crlNumber.toString(), revoked: entries.length, next_update: new Date(nextUpdate).toISOString() },
        `published a new CRL (${why})`,
      );
      return this.#current;
    };
    // One at a time: a second caller waits for the running one, then makes its own (it may have
    // been asked for because of a lock the running one did not see).
    const next = (this.#making ?? Promise.resolve()).then(run, run);
    this.#making = next.finally(() => {
      if (this.#making === next) this.#making = undefined;
    });
    return next;
  }

  /** Check every watchMs (a failure is logged; the next tick tries again). */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      this.check().catch((err: unknown) => this.#o.log?.warn({ err }, 'CRL refresh failed'));
    }, this.watchMs);
    this.#timer.unref();
  }

  /** Stop the timer and wait for a CRL being made. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#ownWatcher) await this.#watcher.stop();
    await Promise.allSettled([this.#making, this.#checking]);
  }
}

function sameEntries(a: readonly RevokedEntry[], b: readonly RevokedEntry[]): boolean {
  return a.length === b.length && a.every((e, i) => e.serial === b[i]!.serial && e.reason === b[i]!.reason);
}
