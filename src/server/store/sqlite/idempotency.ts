/**
 * Responses remembered by request id, so a repeated request (a lost response, an MQTT
 * redelivery) gets the stored answer instead of a second issuance.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { IdempotencyRecord } from '../types.js';
import type { SyncIdempotencyStore } from './sync-types.js';

interface IdempotencyRow {
  request_id: string;
  request_hash: string;
  signer: string;
  op: string;
  response: string;
  created_at: number;
}

export class SqliteIdempotencyStore implements SyncIdempotencyStore {
  private readonly getStmt: BetterSqlite3.Statement<[string], IdempotencyRow>;
  private readonly insertStmt: BetterSqlite3.Statement<[IdempotencyRow]>;
  private readonly pruneStmt: BetterSqlite3.Statement<[number]>;
  private readonly pruneSomeStmt: BetterSqlite3.Statement<[number, number]>;

  constructor(db: BetterSqlite3.Database) {
    this.getStmt = db.prepare(
      'SELECT request_id, request_hash, signer, op, response, created_at FROM idempotency WHERE request_id = ?',
    );
    // Plain INSERT: a second put with the same id is a caller bug (it must `get` first in the
    // same transaction) and fails with SQLITE_CONSTRAINT_PRIMARYKEY.
    this.insertStmt = db.prepare(
      `INSERT INTO idempotency (request_id, request_hash, signer, op, response, created_at)
       VALUES (@request_id, @request_hash, @signer, @op, @response, @created_at)`,
    );
    this.pruneStmt = db.prepare('DELETE FROM idempotency WHERE created_at < ?');
    this.pruneSomeStmt = db.prepare(
      `DELETE FROM idempotency WHERE request_id IN
         (SELECT request_id FROM idempotency WHERE created_at < ? ORDER BY created_at LIMIT ?)`,
    );
  }

  get(requestId: string): IdempotencyRecord | undefined {
    const row = this.getStmt.get(requestId);
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

  put(rec: IdempotencyRecord): void {
    this.insertStmt.run({
      request_id: rec.requestId,
      request_hash: rec.requestHash,
      signer: rec.signer,
      op: rec.op,
      response: rec.response,
      created_at: rec.createdAt,
    });
  }

  prune(before: number, limit?: number): number {
    return (limit === undefined ? this.pruneStmt.run(before) : this.pruneSomeStmt.run(before, limit)).changes;
  }
}
