/**
 * `sigil server start --workers N` on SQLite (issue #15, "on SQLite in WAL mode if it holds up
 * (measure)"): measured, it does not hold up (docs/scaling.md "Several processes on one machine"),
 * so it stays refused, with the measured reason in the refusal.
 *
 * - `--workers 2` on a SQLite data directory is refused (config_invalid), saying why (the write
 *   lock the workers take turns on, the measured cost) and where the figures are; nothing starts.
 * - A cluster worker whose only pending work while its `listen()` waits for the primary's socket
 *   is the channel to the primary (an issuer on SQLite has no other socket then) still gets the
 *   socket and serves (src/server/cluster.ts whileStarting). Without it the worker exited 13
 *   (unsettled top-level await) before listening: the measurement needed this fix first.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, sigil } from '../helpers/cli.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-sqlite-workers-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('--workers on SQLite', () => {
  it('is refused with the measured reason, and nothing starts', async () => {
    const dataDir = join(dir, 'd');
    const init = await sigil(['server', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org']);
    expect(init.code).toBe(0);
    const r = await sigil(['server', 'start', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--workers', '2'], {
      env: { SIGIL_STORE: '' },
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/config_invalid.*--workers 2 needs --store postgres/);
    expect(r.stderr).toMatch(/take turns on its write lock/);
    expect(r.stderr).toMatch(/more CPU per renewal/);
    expect(r.stderr).toMatch(/docs\/scaling\.md/);
    expect(r.stdout).not.toMatch(/listening on/);
  }, 60_000);
});

/**
 * A primary that forks one worker; the worker does what `server start` does in a worker
 * (isClusterWorker, then its start inside whileStarting, then reportListening) with a start that
 * has no socket of its own to keep it alive: a wait on an unref'd timer, then `listen()`.
 */
const FIXTURE = (clusterJs: string, useWhileStarting: boolean): string => `
import cluster from 'node:cluster';
import http from 'node:http';
const c = await import(${JSON.stringify(clusterJs)});
if (c.isClusterWorker()) {
  const server = http.createServer((_, res) => res.end('worker ' + process.pid));
  // Before listen(): a wait that holds nothing (as the answer to listen() holds nothing but the
  // channel), so whether the worker lives to listen does not depend on how fast the primary answers.
  const start = async () => {
    await new Promise((resolve) => setTimeout(resolve, 200).unref());
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  };
  await (${useWhileStarting} ? c.whileStarting(start) : start());
  c.reportListening('http://127.0.0.1:' + server.address().port);
  process.once('SIGTERM', () => server.close());
} else {
  const w = cluster.fork();
  w.on('message', (m) => {
    if (m?.sigil !== 'listening') return;
    fetch(m.url).then((r) => r.text()).then((body) => {
      console.log('answered: ' + body);
      w.process.kill('SIGTERM');
    });
  });
  w.on('exit', (code) => console.log('worker exit ' + code));
}
`;

async function runFixture(useWhileStarting: boolean): Promise<string> {
  const file = join(dir, `primary-${useWhileStarting}.mjs`);
  writeFileSync(file, FIXTURE(pathToFileURL(join(ROOT, 'dist', 'server', 'cluster.js')).href, useWhileStarting));
  const p = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const killer = setTimeout(() => p.kill('SIGKILL'), 20_000);
  await new Promise((resolve) => p.once('close', resolve));
  clearTimeout(killer);
  return out;
}

describe('a cluster worker with no socket of its own while it starts', () => {
  it('gets the shared listener and answers (whileStarting keeps it alive until then)', async () => {
    const out = await runFixture(true);
    expect(out).toMatch(/answered: worker \d+/);
    expect(out).toMatch(/worker exit 0/);
  }, 30_000);

  it('exits before listening without whileStarting (the failure the fix is for)', async () => {
    const out = await runFixture(false);
    expect(out).not.toMatch(/answered/);
    expect(out).toMatch(/worker exit 13/);
  }, 30_000);
});
