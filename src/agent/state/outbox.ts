/**
 * Requests are written here *before* they are sent. If the agent crashes (or the response is
 * lost) between sending and storing the answer, it resends the same request id on restart; the
 * issuer is idempotent by request id and returns the stored response, so a lost response never
 * burns a generation and never locks the instance out (ARCHITECTURE principle 4).
 *
 * A renewal also stores the reference of the *new* key with the request: the certificate the
 * issuer answers with is bound to that key, so after a crash the agent must reuse it rather
 * than generate another. The same holds for the key of an MQTT transport certificate
 * (agent/transport-cert.ts) when the request asks for one.
 */
import type { Statement } from 'better-sqlite3';
import { SigilError } from '../../errors.js';
import type { AgentDb } from './db.js';

export interface OutboxEntry {
  requestId: string;
  /** Protocol operation, e.g. 'join' or 'renew'. */
  op: string;
  /** The exact serialized request, resent byte for byte. */
  body: string;
  /** Unix ms. */
  createdAt: number;
  /** JSON KeyRef of the key the request's CSR was made with. */
  pendingKeyRef?: string;
  /** PKCS#8 PEM of the software key the request's `transport_csr` was made with. */
  transportKeyPem?: string;
}

interface OutboxRow {
  request_id: string;
  op: string;
  body: string;
  created_at: number;
  pending_key_ref: string | null;
  transport_key_pem: string | null;
}

export class OutboxStore {
  readonly #db: AgentDb;
  readonly #insert: Statement<[OutboxRow]>;
  readonly #get: Statement<[string], OutboxRow>;
  readonly #all: Statement<[], OutboxRow>;
  readonly #byOp: Statement<[string], OutboxRow>;
  readonly #delete: Statement<[string]>;

  constructor(db: AgentDb) {
    this.#db = db;
    this.#insert = db.prepare(`INSERT INTO outbox (request_id, op, body, created_at, pending_key_ref, transport_key_pem)
      VALUES (@request_id, @op, @body, @created_at, @pending_key_ref, @transport_key_pem)`);
    this.#get = db.prepare('SELECT * FROM outbox WHERE request_id = ?');
    this.#all = db.prepare('SELECT * FROM outbox ORDER BY created_at, request_id');
    this.#byOp = db.prepare('SELECT * FROM outbox WHERE op = ? ORDER BY created_at, request_id');
    this.#delete = db.prepare('DELETE FROM outbox WHERE request_id = ?');
  }

  /**
   * Persist a request. Putting the identical entry again is a no-op (a retry of the persist
   * step); the same request id with different content is refused, since the issuer would
   * answer it with the response to the first one.
   */
  put(e: OutboxEntry): void {
    if (typeof e.requestId !== 'string' || e.requestId.length === 0)
      throw new TypeError('outbox: requestId must be a non-empty string');
    if (typeof e.op !== 'string' || e.op.length === 0) throw new TypeError('outbox: op must be a non-empty string');
    if (typeof e.body !== 'string') throw new TypeError('outbox: body must be a string');
    if (!Number.isSafeInteger(e.createdAt)) throw new TypeError('outbox: createdAt must be an integer (unix ms)');
    const row: OutboxRow = {
      request_id: e.requestId,
      op: e.op,
      body: e.body,
      created_at: e.createdAt,
      pending_key_ref: e.pendingKeyRef ?? null,
      transport_key_pem: e.transportKeyPem ?? null,
    };
    this.#db.transaction(() => {
      const existing = this.#get.get(e.requestId);
      if (!existing) {
        this.#insert.run(row);
        return;
      }
      const same =
        existing.op === row.op &&
        existing.body === row.body &&
        existing.created_at === row.created_at &&
        existing.pending_key_ref === row.pending_key_ref &&
        existing.transport_key_pem === row.transport_key_pem;
      if (!same) {
        throw new SigilError('request_id_conflict', `outbox already holds a different request with id ${e.requestId}`);
      }
    })();
  }

  get(requestId: string): OutboxEntry | undefined {
    const r = this.#get.get(requestId);
    return r ? toEntry(r) : undefined;
  }

  /** Pending requests, oldest first; optionally only one operation. */
  list(op?: string): OutboxEntry[] {
    const rows = op === undefined ? this.#all.all() : this.#byOp.all(op);
    return rows.map(toEntry);
  }

  /** True when a row was removed. */
  delete(requestId: string): boolean {
    return this.#delete.run(requestId).changes > 0;
  }
}

function toEntry(r: OutboxRow): OutboxEntry {
  const e: OutboxEntry = { requestId: r.request_id, op: r.op, body: r.body, createdAt: r.created_at };
  if (r.pending_key_ref !== null) e.pendingKeyRef = r.pending_key_ref;
  if (r.transport_key_pem !== null) e.transportKeyPem = r.transport_key_pem;
  return e;
}
