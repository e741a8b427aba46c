/**
 * How long `audit --verify` holds the event loop at ~100k rows (issue #11 item 4): the whole
 * chain in one walk (`AuditStore.verify()`: one SQLite read loop that does not yield, what the admin API ran before) against
 * the chunked verifier (server/audit/verify.ts, VERIFY_CHUNK_ROWS rows per step, yielding
 * between). The longest event-loop block is measured with a 1 ms timer probe in the same run.
 *
 *   npx tsx bench/audit-verify.ts            (or: npm run bench -- audit-verify)
 *   env AUDIT_ROWS=100000
 *
 * Last stdout line: {"bench":"audit-verify","rows":…,"sync_block_ms":…,"chunked_block_ms":…,"chunked_total_ms":…,"chunk_rows":…}
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { verifyAuditLog } from '../src/server/audit/verify.js';
import { openSqliteStores, VERIFY_CHUNK_ROWS } from '../src/server/store/sqlite/index.js';

const ROWS = Number(process.env.AUDIT_ROWS ?? 100_000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-bench-audit-'));
const stores = openSqliteStores(path.join(dir, 'issuer.db'), {
  audit: { key: { secret: randomBytes(32), fromSeq: 1, id: 'bench' } },
});

try {
  const t0 = Date.now();
  // Rows shaped like refusals and renewals (a message, a request id, a few facts).
  await stores.withWriteTx(async (tx) => {
    for (let i = 0; i < ROWS; i++) {
      await tx.audit.append(
        {
          action: i % 3 ? 'renew' : 'join',
          outcome: i % 3 ? 'ok' : 'refused',
          code: i % 3 ? null : 'token_invalid',
          bot: 'gw',
          instanceId: `inst-${i % 500}`,
          method: 'token',
          remote: `10.0.${(i >> 8) & 255}.${i & 255}`,
          details: {
            serial: i.toString(16).padStart(16, '0'),
            request_id: `req-${i}`,
            message: 'the join token is not known to this issuer',
          },
        },
        t0 + i,
      );
    }
  });
  process.stdout.write(`appended ${ROWS} rows in ${Date.now() - t0} ms\n`);

  /** Longest gap between 1 ms timer ticks while `work` runs. */
  async function maxBlock(work: () => Promise<unknown> | unknown): Promise<{ blockMs: number; totalMs: number }> {
    let last = performance.now();
    let max = 0;
    const probe = setInterval(() => {
      const now = performance.now();
      max = Math.max(max, now - last);
      last = now;
    }, 1);
    await new Promise((r) => setTimeout(r, 20));
    max = 0;
    last = performance.now();
    const start = performance.now();
    await work();
    const totalMs = performance.now() - start;
    await new Promise((r) => setTimeout(r, 5));
    clearInterval(probe);
    return { blockMs: Math.max(max, 0), totalMs };
  }

  const sync = await maxBlock(async () => {
    if (!(await stores.audit.verify()).ok) throw new Error('chain does not verify');
  });
  process.stdout.write(
    `synchronous walk: ${sync.totalMs.toFixed(0)} ms, event loop blocked up to ${sync.blockMs.toFixed(0)} ms\n`,
  );
  const chunked = await maxBlock(async () => {
    if (!(await verifyAuditLog(stores.audit)).ok) throw new Error('chain does not verify');
  });
  process.stdout.write(
    `chunked (${VERIFY_CHUNK_ROWS} rows/step): ${chunked.totalMs.toFixed(0)} ms, event loop blocked up to ${chunked.blockMs.toFixed(0)} ms\n`,
  );
  process.stdout.write(
    JSON.stringify({
      bench: 'audit-verify',
      rows: ROWS,
      sync_block_ms: Math.round(sync.blockMs),
      chunked_block_ms: Math.round(chunked.blockMs),
      chunked_total_ms: Math.round(chunked.totalMs),
      chunk_rows: VERIFY_CHUNK_ROWS,
    }) + '\n',
  );
} finally {
  await stores.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
