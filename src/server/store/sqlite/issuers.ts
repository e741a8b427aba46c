/**
 * The issuer registry and cRLNumber counters (../issuer-registry-types.ts) on SQLite (migration
 * 8). Reads run where the async stores run reads outside a transaction (the read connection);
 * writes are one statement each, run as a transaction of their own behind the write queue (the
 * `write` runner, ./async.ts), so they serialise with every other writer of the file, in this and
 * in other processes (BEGIN IMMEDIATE).
 */
import type BetterSqlite3 from 'better-sqlite3';
import {
  checkCrlNumberArgs,
  STATUS_RANK,
  type IssuerRecord,
  type IssuerRegistryStore,
  type IssuerStatus,
} from '../issuer-registry-types.js';

/** Runs `fn` at the right time on the right connection (./async.ts). */
export type Runner = <T>(fn: () => T) => Promise<T>;

interface Row {
  name: string;
  cert_pem: string;
  status: IssuerStatus;
  reason: string | null;
  created_at: number;
  updated_at: number;
}

const COLS = 'name, cert_pem, status, reason, created_at, updated_at';

const toRecord = (r: Row): IssuerRecord => ({
  name: r.name,
  certPem: r.cert_pem,
  status: r.status,
  reason: r.reason,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export class SqliteIssuerRegistry implements IssuerRegistryStore {
  constructor(
    private readonly writer: BetterSqlite3.Database,
    private readonly reader: BetterSqlite3.Database,
    private readonly read: Runner,
    private readonly write: Runner,
  ) {}

  register(rec: { name: string; certPem: string; createdAt: number }): Promise<'created' | 'exists'> {
    return this.write(() => {
      const r = this.writer
        .prepare(`INSERT INTO issuers (${COLS}) VALUES (?, ?, 'active', NULL, ?, ?) ON CONFLICT (name) DO NOTHING`)
        .run(rec.name, rec.certPem, rec.createdAt, rec.createdAt);
      return r.changes === 1 ? 'created' : 'exists';
    });
  }

  get(name: string): Promise<IssuerRecord | undefined> {
    return this.read(() => {
      const r = this.reader.prepare<[string], Row>(`SELECT ${COLS} FROM issuers WHERE name = ?`).get(name);
      return r ? toRecord(r) : undefined;
    });
  }

  list(): Promise<IssuerRecord[]> {
    return this.read(() =>
      this.reader.prepare<[], Row>(`SELECT ${COLS} FROM issuers ORDER BY name`).all().map(toRecord),
    );
  }

  setStatus(
    name: string,
    status: 'retired' | 'revoked',
    reason: string | null,
    now: number,
  ): Promise<IssuerRecord | undefined> {
    if (STATUS_RANK[status] === undefined || status === ('active' as string))
      return Promise.reject(new TypeError(`status must be retired or revoked, got ${String(status)}`));
    return this.write(() => {
      // Only forward: the CASE ranks the stored status, the new one must rank higher.
      this.writer
        .prepare(
          `UPDATE issuers SET status = ?, reason = ?, updated_at = ?
            WHERE name = ? AND (CASE status WHEN 'active' THEN 0 WHEN 'retired' THEN 1 ELSE 2 END) < ?`,
        )
        .run(status, reason, now, name, STATUS_RANK[status]);
      const r = this.writer.prepare<[string], Row>(`SELECT ${COLS} FROM issuers WHERE name = ?`).get(name);
      return r ? toRecord(r) : undefined;
    });
  }

  nextCrlNumber(crlIssuer: string, atLeast: number): Promise<number> {
    try {
      checkCrlNumberArgs(crlIssuer, atLeast);
    } catch (e) {
      return Promise.reject(e);
    }
    // One statement: the row's write lock (the file's) makes read-increment-write atomic.
    return this.write(() =>
      this.writer
        .prepare<[string, number], number>(
          `INSERT INTO crl_numbers (crl_issuer, n) VALUES (?, ?)
             ON CONFLICT (crl_issuer) DO UPDATE SET n = max(n + 1, excluded.n) RETURNING n`,
        )
        .pluck()
        .get(crlIssuer, atLeast)!,
    );
  }
}
