/**
 * The workload identities this agent serves, kept in the agent's SQLite (state/workload.ts) and
 * refreshed from the issuer through {@link WorkloadIssuerPort}:
 * - the registration entries that apply to this node (the issuer decides);
 * - per entry a fresh software key, its CSR signed as the entry's X.509-SVID, replaced at
 *   half-life (new key every time, so a key that leaked stops being useful at the next rotation);
 * - per entry and allowed audience a prefetched JWT-SVID, replaced at half-life, so a JWT-SVID
 *   request is answered from the cache even while the issuer is unreachable;
 * - the trust bundles (X.509 roots, JWKS).
 * Everything served comes from the cache, so an agent restarted during an outage serves what it
 * had. Listeners (the open Workload API and SDS streams) are told after every change.
 */
import { X509Certificate } from 'node:crypto';
import { SigilError, toSigilError } from '../../errors.js';
import { SoftwareSigner } from '../../keystore/software.js';
import { buildCsr } from '../../pki/csr.js';
import { pemToDers, toPem } from '../../pki/pem.js';
import { spiffeIdOf, verifyChain } from '../../pki/chain.js';
import type { Logger } from '../../util/log.js';
import type { CachedWorkloadBundles, CachedWorkloadJwt, CachedWorkloadSvid, WorkloadStore } from '../state/workload.js';
import { audienceKey } from '../state/workload.js';
import type { WorkloadEntry, WorkloadIssuerPort } from './issuer-port.js';

/** Retry a failed sync after this long at first, doubling up to RETRY_MAX_MS. */
const RETRY_MIN_MS = 5_000;
const RETRY_MAX_MS = 300_000;
/** Look at the issuer's entries at least this often, even when nothing is due. */
export const ENTRY_SYNC_MS = 300_000;

export interface WorkloadSnapshot {
  entries: WorkloadEntry[];
  svids: Map<string, CachedWorkloadSvid>;
  bundles: CachedWorkloadBundles | undefined;
}

/** Halfway through the remaining lifetime (SPIFFE practice, and what the agent does for itself). */
export function halfLife(now: number, notAfter: number): number {
  return now + Math.max(0, Math.floor((notAfter - now) / 2));
}

export class WorkloadIdentities {
  readonly #listeners = new Set<() => void>();
  #failures = 0;
  #nextSyncAt = 0;
  #lastEntrySync = 0;
  #syncing: Promise<void> | undefined;
  #port: WorkloadIssuerPort | undefined;
  /** Set by {@link agentIdentityChanged}: run another pass as soon as the current one ends. */
  #again = false;
  /** Ends the run loop's current wait early (set while it waits). */
  #wake: (() => void) | undefined;

  /** `port` may come later ({@link attach}): `sigil agent run` serves the cache before the agent's link exists. */
  constructor(
    port: WorkloadIssuerPort | undefined,
    readonly store: WorkloadStore,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.#port = port;
  }

  attach(port: WorkloadIssuerPort): void {
    this.#port = port;
  }

  /**
   * The agent's own identity changed. Every request for a workload SVID is signed with it
   * (./issuer-client.ts), so what could not be done without it — everything before the join,
   * everything while it was expired — is done now, not at the next retry of the backoff (up to
   * RETRY_MAX_MS away). A join may have made this another node (another bot), whose entries
   * differ: they are read again. A renewal while the sync is healthy changes nothing for it.
   */
  agentIdentityChanged(how: 'joined' | 'renewed'): void {
    if (how === 'joined') this.#lastEntrySync = 0;
    else if (this.#failures === 0) return;
    this.log.info(
      { agent_identity: how },
      'workload API: the agent has a new identity; syncing the workload SVIDs now',
    );
    // A pass in flight may have failed for want of the identity just made: it must not set the next pass to its backoff.
    this.#again = true;
    this.#nextSyncAt = 0;
    this.#wake?.();
  }

  private get port(): WorkloadIssuerPort {
    if (!this.#port) throw new SigilError('issuer_unreachable', 'the agent has not connected to the issuer yet');
    return this.#port;
  }

  /** Ready to answer: the bundles are known (from the issuer now, or from the cache). */
  ready(): boolean {
    return this.store.bundles() !== undefined;
  }

  snapshot(): WorkloadSnapshot {
    const now = this.now();
    return {
      entries: this.store.entries(),
      // An expired SVID is never served: a workload must not present it, and its key is stale.
      svids: new Map(
        this.store
          .svids()
          .filter((s) => s.notAfter > now)
          .map((s) => [s.entryId, s]),
      ),
      bundles: this.store.bundles(),
    };
  }

  /** Call `fn` after every change of what is served; returns the unsubscribe function. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  private changed(): void {
    for (const fn of [...this.#listeners]) {
      try {
        fn();
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'workload API: a stream listener failed');
      }
    }
  }

  /** When {@link sync} should run next. */
  nextSyncAt(): number {
    return this.#nextSyncAt;
  }

  /** One pass (never throws; concurrent callers share it): entries, bundles, then whatever is due. */
  sync(opts: { force?: boolean } = {}): Promise<void> {
    this.#syncing ??= this.syncOnce(opts.force === true).finally(() => (this.#syncing = undefined));
    return this.#syncing;
  }

  private async syncOnce(force: boolean): Promise<void> {
    this.#again = false;
    let changed = false;
    let failed: SigilError | undefined;
    const now = this.now();
    const fail = (e: unknown, what: string): void => {
      const err = toSigilError(e);
      failed ??= err;
      this.log.warn({ code: err.code }, `workload API: ${what}: ${err.message}`);
    };
    try {
      const b = await this.port.fetchBundles();
      const old = this.store.bundles();
      if (!old || old.rootsPem !== b.x509RootsPem || old.jwks !== b.jwtJwks || old.trustDomain !== b.trustDomain) {
        this.store.saveBundles({
          trustDomain: b.trustDomain,
          rootsPem: b.x509RootsPem,
          jwks: b.jwtJwks,
          updatedAt: now,
        });
        changed = true;
      }
    } catch (e) {
      fail(e, 'fetching the trust bundles failed');
    }
    if (force || now - this.#lastEntrySync >= ENTRY_SYNC_MS || this.store.entries().length === 0) {
      try {
        const entries = await this.port.fetchEntries();
        const before = JSON.stringify(this.store.entries());
        this.store.replaceEntries(entries, now);
        this.#lastEntrySync = now;
        if (JSON.stringify(this.store.entries()) !== before) changed = true;
      } catch (e) {
        fail(e, 'fetching the registration entries failed');
      }
    }
    this.store.pruneJwts(now);
    const bundles = this.store.bundles();
    for (const entry of this.store.entries()) {
      const svid = this.store.svids().find((s) => s.entryId === entry.id);
      if (bundles && (force || !svid || now >= svid.renewAfter)) {
        try {
          this.store.saveSvid(await this.newSvid(entry, bundles));
          changed = true;
        } catch (e) {
          fail(e, `the X.509-SVID for ${entry.spiffeId} (entry ${entry.id}) could not be renewed`);
        }
      }
      for (const audience of entry.jwtAudiences) {
        const jwt = this.cachedJwt(entry.id, [audience]);
        if (!jwt || now >= jwt.renewAfter) {
          try {
            await this.fetchJwt(entry, [audience]);
          } catch (e) {
            fail(e, `the JWT-SVID for ${entry.spiffeId}, audience ${audience}, could not be fetched`);
          }
        }
      }
    }
    this.#failures = failed ? this.#failures + 1 : 0;
    this.#nextSyncAt = this.#again ? this.now() : this.plan(failed !== undefined);
    if (changed) this.changed();
  }

  /**
   * The next thing due: an SVID's or a JWT's half-life, the periodic entry sync — or, for what is
   * overdue (what this pass failed to do), the retry after the backoff. Overdue items must not
   * count as "due now": an issuer down for longer than the entry period would otherwise be asked
   * every second by every agent, instead of backing off to RETRY_MAX_MS.
   */
  private plan(failed: boolean): number {
    const now = this.now();
    // Only the JWT-SVIDs this loop renews (one per entry and allowed audience): one cached for a
    // caller's audience combination (jwtFor) is renewed when asked for again, not by polling.
    const renewed = new Set(
      this.store.entries().flatMap((e) => e.jwtAudiences.map((a) => `${e.id}\n${audienceKey([a])}`)),
    );
    const due = [
      this.#lastEntrySync + ENTRY_SYNC_MS,
      ...this.store.svids().map((s) => s.renewAfter),
      ...this.store
        .jwts()
        .filter((j) => renewed.has(`${j.entryId}\n${audienceKey(j.audience)}`))
        .map((j) => j.renewAfter),
    ];
    const retryAt = now + Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.max(0, this.#failures - 1));
    let next = Math.min(now + ENTRY_SYNC_MS, ...due.filter((d) => d > now));
    if (failed || due.some((d) => d <= now)) next = Math.min(next, retryAt);
    return Math.max(next, now + 1_000);
  }

  /**
   * A new key and its X.509-SVID. The answer is checked before it is stored: it names the
   * entry's SPIFFE ID, certifies this key (not another), and chains to the cached roots — a
   * wrong answer must never replace a working SVID.
   */
  private async newSvid(entry: WorkloadEntry, bundles: CachedWorkloadBundles): Promise<CachedWorkloadSvid> {
    const key = SoftwareSigner.generate();
    const csrPem = toPem('CERTIFICATE REQUEST', await buildCsr(key));
    const svid = await this.port.signX509(entry.id, csrPem);
    const chain = pemToDers(svid.chainPem, 'CERTIFICATE', 'response_invalid');
    if (chain.length === 0)
      throw new SigilError('response_invalid', `the issuer's SVID for ${entry.id} has no certificate`);
    const leaf = new X509Certificate(chain[0]!);
    const id = spiffeIdOf(leaf);
    if (id !== entry.spiffeId)
      throw new SigilError(
        'answer_mismatch',
        `the issuer's SVID for entry ${entry.id} names ${id ?? 'no SPIFFE ID'}, not ${entry.spiffeId}`,
      );
    if (!leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(key.publicKeySpki()))
      throw new SigilError('answer_mismatch', `the issuer's SVID for entry ${entry.id} certifies another key`);
    verifyChain({
      leaf: chain[0]!,
      intermediates: chain.slice(1),
      roots: pemToDers(bundles.rootsPem, 'CERTIFICATE', 'response_invalid'),
      at: new Date(this.now()),
    });
    const notAfter = new Date(leaf.validTo).getTime();
    const now = this.now();
    this.log.info({ spiffe_id: entry.spiffeId, serial: svid.serial }, 'workload X.509-SVID issued');
    return {
      entryId: entry.id,
      spiffeId: entry.spiffeId,
      keyPem: key.toPkcs8Pem(),
      chainPem: chain.map((d) => toPem('CERTIFICATE', d)).join(''),
      serial: svid.serial,
      notAfter,
      renewAfter: halfLife(now, notAfter),
      savedAt: now,
    };
  }

  private cachedJwt(entryId: string, audience: readonly string[]): CachedWorkloadJwt | undefined {
    const key = audienceKey(audience);
    return this.store.jwts().find((j) => j.entryId === entryId && audienceKey(j.audience) === key);
  }

  private async fetchJwt(entry: WorkloadEntry, audience: string[]): Promise<CachedWorkloadJwt> {
    const answer = await this.port.signJwt(entry.id, audience);
    // jose is loaded when first needed: not on the path of a restarted agent's first answer (bench/workload-offline-start.ts).
    const { decodeJwt } = await import('jose');
    const claims = decodeJwt(answer.token);
    const aud = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
    if (claims.sub !== entry.spiffeId || !audience.every((a) => aud.includes(a)))
      throw new SigilError(
        'answer_mismatch',
        `the issuer's JWT-SVID for entry ${entry.id} is for ${String(claims.sub)} / ${aud.join(',')}, not ${entry.spiffeId} / ${audience.join(',')}`,
      );
    const now = this.now();
    const jwt: CachedWorkloadJwt = {
      entryId: entry.id,
      audience: [...new Set(audience)].sort(),
      spiffeId: entry.spiffeId,
      token: answer.token,
      expiresAt: answer.expiresAt,
      renewAfter: halfLife(now, answer.expiresAt),
    };
    this.store.saveJwt(jwt);
    return jwt;
  }

  /**
   * A JWT-SVID for `entry` and `audience` (all allowed by the entry, checked by the caller):
   * the cached one while it is before its half-life; else a fresh one from the issuer; if the
   * issuer is unreachable, the cached one while it has not expired.
   */
  async jwtFor(entry: WorkloadEntry, audience: string[]): Promise<CachedWorkloadJwt> {
    const now = this.now();
    const cached = this.cachedJwt(entry.id, audience);
    if (cached && now < cached.renewAfter) return cached;
    try {
      return await this.fetchJwt(entry, audience);
    } catch (e) {
      if (cached && now < cached.expiresAt) return cached;
      throw e;
    }
  }

  /** The sync loop until `signal` aborts: at once, then whenever something is due or {@link agentIdentityChanged} says. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (this.now() >= this.#nextSyncAt) await this.sync();
      const wait = this.#nextSyncAt - this.now();
      if (wait > 0) await this.pause(Math.min(Math.max(250, wait), 60_000), signal);
    }
  }

  /** Wait `ms`, or until `signal` aborts or the loop is woken. */
  private pause(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }
}
