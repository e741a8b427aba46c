/**
 * The Workload API's durable cache (agent/workload/, issue #17): the registration entries the
 * issuer said apply to this node, one key and X.509-SVID per entry, prefetched JWT-SVIDs, and
 * the trust bundles. It is what lets a restarted agent serve workloads while the issuer is
 * unreachable — SPIRE's agent keeps these in memory only and has nothing to serve then.
 *
 * Keys are PKCS#8 PEM in this 0600 database (db.ts): the Workload API must hand the workload
 * its unencrypted private key (X509SVID.x509_svid_key), so a workload key is a software key.
 */
import type { Statement } from 'better-sqlite3';
import type { WorkloadEntry } from '../workload/issuer-port.js';
import type { AgentDb } from './db.js';

export interface CachedWorkloadSvid {
  entryId: string;
  spiffeId: string;
  keyPem: string;
  chainPem: string;
  serial: string;
  notAfter: number;
  /** Half-life (agent/workload/schedule): when a fresh one is fetched. */
  renewAfter: number;
  savedAt: number;
}

export interface CachedWorkloadJwt {
  entryId: string;
  /** Sorted. */
  audience: string[];
  spiffeId: string;
  token: string;
  expiresAt: number;
  renewAfter: number;
}

export interface CachedWorkloadBundles {
  trustDomain: string;
  rootsPem: string;
  jwks: string;
  updatedAt: number;
}

interface SvidRow {
  entry_id: string;
  spiffe_id: string;
  key_pem: string;
  chain_pem: string;
  serial: string;
  not_after: number;
  renew_after: number;
  saved_at: number;
}

interface JwtRow {
  entry_id: string;
  audience: string;
  spiffe_id: string;
  token: string;
  expires_at: number;
  renew_after: number;
}

/** The key a JWT-SVID is cached under: its audiences, sorted, as JSON. */
export function audienceKey(audience: readonly string[]): string {
  return JSON.stringify([...new Set(audience)].sort());
}

export class WorkloadStore {
  readonly #db: AgentDb;
  readonly #entries: Statement<[], { entry: string }>;
  readonly #svids: Statement<[], SvidRow>;
  readonly #putSvid: Statement<[string, string, string, string, string, number, number, number]>;
  readonly #jwts: Statement<[], JwtRow>;
  readonly #putJwt: Statement<[string, string, string, string, number, number]>;
  readonly #bundle: Statement<[], { trust_domain: string; roots_pem: string; jwks: string; updated_at: number }>;
  readonly #putBundle: Statement<[string, string, string, number]>;

  constructor(db: AgentDb) {
    this.#db = db;
    this.#entries = db.prepare('SELECT entry FROM workload_entry ORDER BY id');
    this.#svids = db.prepare('SELECT * FROM workload_svid ORDER BY entry_id');
    this.#putSvid = db.prepare(
      `INSERT OR REPLACE INTO workload_svid (entry_id, spiffe_id, key_pem, chain_pem, serial, not_after, renew_after, saved_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#jwts = db.prepare('SELECT * FROM workload_jwt ORDER BY entry_id, audience');
    this.#putJwt = db.prepare(
      `INSERT OR REPLACE INTO workload_jwt (entry_id, audience, spiffe_id, token, expires_at, renew_after)
       VALUES (?, ?, ?, ?, ?, ?)`,
    );
    this.#bundle = db.prepare('SELECT trust_domain, roots_pem, jwks, updated_at FROM workload_bundle WHERE id = 1');
    this.#putBundle = db.prepare(
      'INSERT OR REPLACE INTO workload_bundle (id, trust_domain, roots_pem, jwks, updated_at) VALUES (1, ?, ?, ?, ?)',
    );
  }

  entries(): WorkloadEntry[] {
    return this.#entries.all().map((r) => JSON.parse(r.entry) as WorkloadEntry);
  }

  /**
   * Replace the entry set with what the issuer just said, in one transaction; the SVIDs and
   * JWT-SVIDs of entries that no longer apply go with them (a workload loses an identity the
   * issuer withdrew as soon as the agent hears of it).
   */
  replaceEntries(entries: readonly WorkloadEntry[], at: number): void {
    this.#db
      .transaction(() => {
        const keep = new Set(entries.map((e) => e.id));
        for (const old of this.entries()) {
          if (keep.has(old.id)) continue;
          this.#db.prepare('DELETE FROM workload_svid WHERE entry_id = ?').run(old.id);
          this.#db.prepare('DELETE FROM workload_jwt WHERE entry_id = ?').run(old.id);
        }
        this.#db.prepare('DELETE FROM workload_entry').run();
        const put = this.#db.prepare('INSERT INTO workload_entry (id, entry, synced_at) VALUES (?, ?, ?)');
        for (const e of entries) put.run(e.id, JSON.stringify(e), at);
        // An entry whose SPIFFE ID changed: its old SVID names the old ID and must not be served.
        for (const s of this.svids()) {
          const e = entries.find((x) => x.id === s.entryId);
          if (e && e.spiffeId !== s.spiffeId) {
            this.#db.prepare('DELETE FROM workload_svid WHERE entry_id = ?').run(s.entryId);
            this.#db.prepare('DELETE FROM workload_jwt WHERE entry_id = ?').run(s.entryId);
          }
        }
      })
      .immediate();
  }

  svids(): CachedWorkloadSvid[] {
    return this.#svids.all().map((r) => ({
      entryId: r.entry_id,
      spiffeId: r.spiffe_id,
      keyPem: r.key_pem,
      chainPem: r.chain_pem,
      serial: r.serial,
      notAfter: r.not_after,
      renewAfter: r.renew_after,
      savedAt: r.saved_at,
    }));
  }

  saveSvid(s: CachedWorkloadSvid): void {
    this.#putSvid.run(s.entryId, s.spiffeId, s.keyPem, s.chainPem, s.serial, s.notAfter, s.renewAfter, s.savedAt);
  }

  jwts(): CachedWorkloadJwt[] {
    return this.#jwts.all().map((r) => ({
      entryId: r.entry_id,
      audience: JSON.parse(r.audience) as string[],
      spiffeId: r.spiffe_id,
      token: r.token,
      expiresAt: r.expires_at,
      renewAfter: r.renew_after,
    }));
  }

  saveJwt(j: CachedWorkloadJwt): void {
    this.#putJwt.run(j.entryId, audienceKey(j.audience), j.spiffeId, j.token, j.expiresAt, j.renewAfter);
  }

  /** Forget expired JWT-SVIDs (one per audience set a workload asked for: without this they would pile up). */
  pruneJwts(now: number): number {
    return this.#db.prepare('DELETE FROM workload_jwt WHERE expires_at <= ?').run(now).changes;
  }

  bundles(): CachedWorkloadBundles | undefined {
    const r = this.#bundle.get();
    return r
      ? { trustDomain: r.trust_domain, rootsPem: r.roots_pem, jwks: r.jwks, updatedAt: r.updated_at }
      : undefined;
  }

  saveBundles(b: CachedWorkloadBundles): void {
    this.#putBundle.run(b.trustDomain, b.rootsPem, b.jwks, b.updatedAt);
  }
}
