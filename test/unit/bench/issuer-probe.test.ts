/**
 * bench/lib/issuer-probe.mjs, preloaded into a process, reports its event-loop delay, GC pauses
 * and SQLite group commits on SIGUSR2 (bench/renew-https.ts prints them per phase), and the
 * SQLite store publishes each group commit only to a subscriber (src/server/store/sqlite/async.ts).
 */
import { spawn } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { openAsyncSqliteStores } from '../../../src/server/store/sqlite/async.js';
import { tempDir } from '../store/helpers.js';

const PROBE = fileURLToPath(new URL('../../../bench/lib/issuer-probe.mjs', import.meta.url));

describe('issuer probe', () => {
  const dirs: Array<ReturnType<typeof tempDir>> = [];
  afterEach(() => dirs.splice(0).forEach((d) => d.remove()));

  it('writes the loop delay (a 200 ms block shows), GC and group figures on SIGUSR2', async () => {
    const d = tempDir('sigil-probe-');
    dirs.push(d);
    const out = join(d.dir, 'probe.json');
    // Blocks its loop once for 200 ms, then (after the histogram's 5 ms timer has run and recorded
    // the block: said at once, the signal could be handled first) says "ready" and idles until killed.
    const script =
      'const t = Date.now(); setTimeout(() => { while (Date.now() - t < 200); setTimeout(() => process.stdout.write("ready\\n"), 50); }, 50); setInterval(() => {}, 1000);';
    const child = spawn(process.execPath, ['--import', PROBE, '-e', script], {
      env: { ...process.env, SIGIL_BENCH_PROBE_FILE: out },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve) => child.stdout.on('data', (b: Buffer) => b.includes('ready') && resolve()));
      child.kill('SIGUSR2');
      for (let i = 0; i < 1000 && !existsSync(out); i++) await new Promise((r) => setTimeout(r, 20));
      const r = JSON.parse(readFileSync(out, 'utf8')) as {
        loopDelayMs: { max: number };
        gcMs: { n: number };
        groupSize: { n: number };
      };
      expect(r.loopDelayMs.max).toBeGreaterThanOrEqual(100);
      expect(r.gcMs.n).toBeGreaterThanOrEqual(0);
      expect(r.groupSize.n).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 30_000);

  it('the SQLite store publishes each committed group (members, COMMIT time) to a subscriber', async () => {
    const d = tempDir();
    dirs.push(d);
    const s = openAsyncSqliteStores(d.dbPath);
    const seen: Array<{ size: number; commitMs: number; holdMs: number }> = [];
    const onGroup = (m: unknown): void => void seen.push(m as (typeof seen)[number]);
    subscribe('sigil:sqlite:group', onGroup);
    try {
      await Promise.all(
        [1, 2, 3].map((i) =>
          s.withWriteTx((tx) => tx.audit.append({ action: 'renew', outcome: 'ok', details: { i } }, i)),
        ),
      );
    } finally {
      unsubscribe('sigil:sqlite:group', onGroup);
      await s.close();
    }
    expect(seen.reduce((n, g) => n + g.size, 0)).toBe(3);
    for (const g of seen) expect(g.holdMs).toBeGreaterThanOrEqual(g.commitMs);
  });
});
