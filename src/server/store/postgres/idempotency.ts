/** Stored answers by request id, on PostgreSQL (types.ts IdempotencyStore). */
import type { IdempotencyRecord, IdempotencyStore } from '../types.js';
import { TxDb, type Db } from './db.js';

interface IdempotencyRow {
  request_id: string;
  request_hash: string;
  signer: string;
  op: string;
  response: string;
  created_at: number;
}

/** First key of the two-key advisory locks on request ids (the second is hashtext(request_id)). */
export const IDEMPOTENCY_LOCK_CLASS = 0x5349_4701; // "SIG" 1

export class PgIdempotencyStore implements IdempotencyStore {
  constructor(private readonly db: Db) {}

  /**
   * Inside a transaction, `get` first takes a transaction-level advisory lock on the request id:
   * the get → (work) → put of one request id then runs one transaction at a time across every
   * issuer, and a retry that arrives at another issuer while the first is still signing waits,
   * then reads the committed answer instead of signing a second certificate. The lock and the
   * read go out together (pipelined, one round trip); the read runs after the lock is granted,
   * so under READ COMMITTED it sees whatever the lock holder committed.
   */
  async get(requestId: string): Promise<IdempotencyRecord | undefined> {
    const sql = this.db.sql;
    // The lock is sent first (execute()): a query goes out when executed or awaited, not when made.
    const lock = this.db.inTx
      ? sql`SELECT pg_advisory_xact_lock(${IDEMPOTENCY_LOCK_CLASS}, hashtext(${requestId}))`.execute()
      : undefined;
    const read = sql<IdempotencyRow[]>`
      SELECT request_id, request_hash, signer, op, response, created_at FROM idempotency WHERE request_id = ${requestId}`;
    const rows = lock ? (await Promise.all([lock, read]))[1] : await read;
    const row = rows[0];
    return (
      row && {
        requestId: row.request_id,
        requestHash: row.request_hash,
        signer: row.signer,
        op: row.op,
        response: row.response,
        createdAt: row.created_at,
      }
    );
  }

  /**
   * Plain INSERT: a second put for a stored id rejects (unique violation); the first answer stays.
   * Inside withWriteTx it is sent without waiting (./db.ts TxDb.sendWithoutWaiting): the unique
   * violation then fails the whole transaction, with this statement's error.
   */
  async put(rec: IdempotencyRecord): Promise<void> {
    const insert = this.db.sql`
      INSERT INTO idempotency (request_id, request_hash, signer, op, response, created_at)
      VALUES (${rec.requestId}, ${rec.requestHash}, ${rec.signer}, ${rec.op}, ${rec.response}, ${rec.createdAt})`;
    if (this.db instanceof TxDb) this.db.sendWithoutWaiting(insert);
    else await insert;
  }

  async prune(before: number, limit?: number): Promise<number> {
    if (limit === undefined) return (await this.db.sql`DELETE FROM idempotency WHERE created_at < ${before}`).count;
    return (
      await this.db.sql`
        DELETE FROM idempotency WHERE request_id IN
          (SELECT request_id FROM idempotency WHERE created_at < ${before} ORDER BY created_at LIMIT ${limit})`
    ).count;
  }
}
