/**
 * One write transaction (`withWriteTx`) without a round trip of its own for BEGIN (issue #15: a
 * renewal in ≤ 4 round trips).
 *
 * The driver's `sql.begin` sends BEGIN and waits for its answer before `fn` may send anything: a
 * whole round trip that carries nothing. Here the transaction is driven by hand on a reserved
 * connection: BEGIN goes out in the same network write as the transaction's first statement, and
 * COMMIT (or ROLLBACK) is sent by us.
 *
 * BEGIN and the first statement are one batch (the driver's `sql.batch`: one Sync for both). That
 * matters for all-or-nothing: pipelined with a Sync each, a BEGIN that failed would leave the next
 * statement to run on its own and commit alone (autocommit). In one batch, PostgreSQL skips
 * everything after a failure up to the Sync, so no statement ever runs outside the transaction.
 * Every later statement is sent on the same connection after that batch, hence inside the
 * transaction or not at all (a failed BEGIN has failed the batch, and the store call that sent the
 * first statement rejects with its error).
 *
 * A statement that failed aborts the transaction: the COMMIT is then answered with ROLLBACK, and
 * the call rejects (with the failed write's own error when it was sent without waiting: ./db.ts).
 */
import { SigilError } from '../../../errors.js';
import type { Pool, Sql } from './connection.js';
import { TxDb } from './db.js';
import type { PolicyCache } from './policy-cache.js';

/**
 * Run `fn` in one transaction on a connection reserved for it. `fn` gets the transaction as a
 * TxDb (its stores' statements go to that connection); resolves after COMMIT answered COMMIT.
 */
export async function runTransaction<T>(
  pool: Pool,
  cache: PolicyCache | undefined,
  fn: (tx: TxDb) => Promise<T>,
): Promise<{ value: T; tx: TxDb }> {
  const conn = await pool.reserve();
  const tx = new TxDb(conn as unknown as Sql, cache, (first) => {
    // BEGIN and the first statement, one batch (see the file header). The batch's own rejection
    // is the first statement's, which its caller sees; nothing more to report here.
    (conn as unknown as Sql).batch([(conn as unknown as Sql)`BEGIN`, first]).catch(() => undefined);
  });
  try {
    const value = await fn(tx);
    // From here on the stores refuse: COMMIT is on its way.
    tx.end();
    if (!tx.begun) {
      // fn sent nothing: there is no transaction to end.
      tx.settle(true);
      return { value, tx };
    }
    const done = await (conn as unknown as Sql)`COMMIT`;
    if (done.command !== 'COMMIT') throw tx.deferredError ?? rolledBack();
    // Cannot happen after a COMMIT that committed; never report success if it somehow did.
    if (tx.deferredError !== undefined) throw tx.deferredError;
    tx.settle(true);
    return { value, tx };
  } catch (err) {
    tx.end();
    // Leave the connection clean for the next lease; after a failed COMMIT (or a lost connection)
    // there is nothing to roll back and this fails harmlessly.
    if (tx.begun) await (conn as unknown as Sql)`ROLLBACK`.catch(() => undefined);
    // A write sent without waiting (TxDb.sendWithoutWaiting) failed first: its error, not the
    // "current transaction is aborted" or "rolled back" that followed it, is the cause (and
    // carries the SQLSTATE withRetries looks at).
    const cause = tx.deferredError ?? err;
    tx.settle(false, cause);
    throw cause;
  } finally {
    conn.release();
  }
}

/** A statement failed and `fn` carried on without it: PostgreSQL rolled the transaction back. */
function rolledBack(): SigilError {
  return new SigilError(
    'internal',
    'the transaction was rolled back by the database instead of committed (a statement in it failed)',
  );
}
