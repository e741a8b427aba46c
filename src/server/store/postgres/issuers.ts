/**
 * The issuer registry and cRLNumber counters (../issuer-registry-types.ts) on PostgreSQL
 * (migration 3). Every method is one statement on any pooled connection (autocommit).
 *
 * - `setStatus` also NOTIFYs `sigil_changes` with the payload `issuers` in the same statement (a
 *   CTE over the updated row), so the other issuers re-read the registry as soon as it commits
 *   (../../issuers/registry.ts); an unchanged status sends nothing.
 * - `nextCrlNumber` is one `INSERT … ON CONFLICT DO UPDATE … RETURNING`: concurrent callers wait
 *   for the row lock and each gets the value after the previous one's (READ COMMITTED re-reads
 *   the committed row), so two issuers or workers never get the same number.
 */
import {
  checkCrlNumberArgs,
  STATUS_RANK,
  type IssuerRecord,
  type IssuerRegistryStore,
  type IssuerStatus,
} from '../issuer-registry-types.js';
import type { Db } from './db.js';
import type { Enter } from './fleet.js';

/** The change-feed payload for registry changes (not a cached topic: issuers re-read the table). */
export const ISSUERS_TOPIC = 'issuers';

interface Row {
  name: string;
  cert_pem: string;
  status: IssuerStatus;
  reason: string | null;
  created_at: string | number;
  updated_at: string | number;
}

const toRecord = (r: Row): IssuerRecord => ({
  name: r.name,
  certPem: r.cert_pem,
  status: r.status,
  reason: r.reason,
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
});

export class PgIssuerRegistry implements IssuerRegistryStore {
  constructor(
    private readonly db: Db,
    private readonly enter: Enter,
  ) {}

  register(rec: { name: string; certPem: string; createdAt: number }): Promise<'created' | 'exists'> {
    return this.enter(async () => {
      const rows = await this.db.sql`
        INSERT INTO issuers (name, cert_pem, status, reason, created_at, updated_at)
        VALUES (${rec.name}, ${rec.certPem}, 'active', NULL, ${rec.createdAt}, ${rec.createdAt})
        ON CONFLICT (name) DO NOTHING RETURNING name`;
      return rows.length === 1 ? 'created' : 'exists';
    });
  }

  get(name: string): Promise<IssuerRecord | undefined> {
    return this.enter(async () => {
      const [r] = await this.db.sql<Row[]>`
        SELECT name, cert_pem, status, reason, created_at, updated_at FROM issuers WHERE name = ${name}`;
      return r ? toRecord(r) : undefined;
    });
  }

  list(): Promise<IssuerRecord[]> {
    return this.enter(async () => {
      const rows = await this.db.sql<Row[]>`
        SELECT name, cert_pem, status, reason, created_at, updated_at FROM issuers ORDER BY name`;
      return rows.map(toRecord);
    });
  }

  setStatus(
    name: string,
    status: 'retired' | 'revoked',
    reason: string | null,
    now: number,
  ): Promise<IssuerRecord | undefined> {
    if (STATUS_RANK[status] === undefined || status === ('active' as string))
      return Promise.reject(new TypeError(`status must be retired or revoked, got ${String(status)}`));
    return this.enter(async () => {
      // The UPDATE and its NOTIFY in one statement; then the row as it is now (changed or not).
      const [r] = await this.db.sql<Row[]>`
        WITH u AS (
          UPDATE issuers SET status = ${status}, reason = ${reason}, updated_at = ${now}
           WHERE name = ${name}
             AND (CASE status WHEN 'active' THEN 0 WHEN 'retired' THEN 1 ELSE 2 END) < ${STATUS_RANK[status]}
          RETURNING name, cert_pem, status, reason, created_at, updated_at
        ), n AS (SELECT pg_notify('sigil_changes', ${ISSUERS_TOPIC}) FROM u)
        SELECT u.*, (SELECT count(*) FROM n) AS notified FROM u
        UNION ALL
        SELECT name, cert_pem, status, reason, created_at, updated_at, 0 FROM issuers
         WHERE name = ${name} AND NOT EXISTS (SELECT 1 FROM u)`;
      return r ? toRecord(r) : undefined;
    });
  }

  nextCrlNumber(crlIssuer: string, atLeast: number): Promise<number> {
    try {
      checkCrlNumberArgs(crlIssuer, atLeast);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.enter(async () => {
      const [r] = await this.db.sql<{ n: string }[]>`
        INSERT INTO crl_numbers (crl_issuer, n) VALUES (${crlIssuer}, ${atLeast})
        ON CONFLICT (crl_issuer) DO UPDATE SET n = GREATEST(crl_numbers.n + 1, EXCLUDED.n)
        RETURNING n`;
      return Number(r!.n);
    });
  }
}
