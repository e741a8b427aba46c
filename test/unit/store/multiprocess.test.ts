/**
 * Guarantees that must hold between *processes* sharing one database file (several issuer
 * processes, or `sigil ctl` next to a running issuer), not only between calls in one process.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAsyncSqliteStores } from '../../../src/server/store/sqlite/async.js';
import { openSyncSqliteStores } from '../../../src/server/store/sqlite/index.js';
import { tempDir } from './helpers.js';

const WORKER = fileURLToPath(new URL('./fixtures/store-worker.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

interface WorkerAnswer {
  results?: string[];
  error?: string;
}

/** Start `n` workers, release them together once all are ready, collect their answers. */
async function race(n: number, args: string[]): Promise<string[][]> {
  const children: ChildProcess[] = [];
  const ready: Promise<void>[] = [];
  const answers: Promise<WorkerAnswer>[] = [];
  for (let i = 0; i < n; i++) {
    const child = fork(WORKER, args, {
      cwd: REPO,
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    ready.push(
      new Promise((resolve, reject) => {
        child.once('message', () => resolve());
        child.once('exit', (code) => reject(new Error(`worker exited with ${code} before it was ready`)));
      }),
    );
  }
  try {
    await Promise.all(ready);
    for (const child of children) {
      answers.push(
        new Promise((resolve, reject) => {
          child.once('message', (m) => resolve(m as WorkerAnswer));
          child.once('exit', (code) => reject(new Error(`worker exited with ${code} without answering`)));
        }),
      );
    }
    for (const child of children) child.send({ op: 'go' });
    const got = await Promise.all(answers);
    return got.map((a) => {
      if (a.error !== undefined) throw new Error(`worker failed: ${a.error}`);
      return a.results!;
    });
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill();
  }
}

describe('sqlite stores across processes', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => {
    t = tempDir();
  });
  afterEach(() => t.remove());

  it('a join token is consumed exactly once by concurrent processes', async () => {
    const hashes = Array.from({ length: 200 }, (_, i) => createHash('sha256').update(`token-${i}`).digest('hex'));
    const stores = openSyncSqliteStores(t.dbPath);
    const now = Date.now();
    for (const hash of hashes) stores.tokens.create({ hash, bot: 'edge', createdAt: now, expiresAt: now + 3_600_000 });
    stores.close();

    const workers = 6;
    const results = await race(workers, [t.dbPath, 'consume', hashes.join(',')]);

    for (let i = 0; i < hashes.length; i++) {
      const outcomes = results.map((r) => r[i]);
      expect(
        outcomes.filter((o) => o === 'ok'),
        `token ${i}`,
      ).toHaveLength(1);
      expect(
        outcomes.filter((o) => o === 'token_reused'),
        `token ${i}`,
      ).toHaveLength(workers - 1);
    }
    const after = openSyncSqliteStores(t.dbPath);
    try {
      const tokens = after.tokens.list();
      expect(tokens.every((tk) => tk.usedAt !== null && tk.usedBy?.startsWith('pid-'))).toBe(true);
    } finally {
      after.close();
    }
  });

  it('concurrent processes create, migrate and append to one audit chain without forking it', async () => {
    const workers = 4;
    const per = 50;
    const results = await race(workers, [t.dbPath, 'audit', String(per)]);
    const seqs = results
      .flat()
      .map(Number)
      .sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: workers * per }, (_, i) => i + 1));
    const stores = openSyncSqliteStores(t.dbPath);
    try {
      expect(stores.audit.verify()).toEqual({ ok: true, rows: workers * per });
    } finally {
      stores.close();
    }
  });

  it('through the async stores: concurrent transactions in concurrent processes consume each token once, on one audit chain', async () => {
    const hashes = Array.from({ length: 60 }, (_, i) => createHash('sha256').update(`tx-token-${i}`).digest('hex'));
    const setup = openAsyncSqliteStores(t.dbPath);
    const now = Date.now();
    await setup.withWriteTx(async (tx) => {
      for (const hash of hashes)
        await tx.tokens.create({ hash, bot: 'edge', createdAt: now, expiresAt: now + 3_600_000 });
    });
    await setup.close();

    const workers = 4;
    const results = await race(workers, [t.dbPath, 'consume-tx', hashes.join(',')]);

    for (let i = 0; i < hashes.length; i++) {
      const outcomes = results.map((r) => r[i]);
      expect(
        outcomes.filter((o) => o === 'ok'),
        `token ${i}`,
      ).toHaveLength(1);
      expect(
        outcomes.filter((o) => o === 'token_reused'),
        `token ${i}`,
      ).toHaveLength(workers - 1);
    }
    const after = openAsyncSqliteStores(t.dbPath);
    try {
      expect(await after.audit.verify()).toEqual({ ok: true, rows: hashes.length });
      const joined = (await after.audit.list()).map((r) => r.details.hash as string).sort();
      expect(joined).toEqual([...hashes].sort());
    } finally {
      await after.close();
    }
  });
});
