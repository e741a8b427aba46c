/**
 * `systemctl reload` of `sigil server start --workers N`: SIGHUP goes to the primary, which passes
 * it to every worker (src/server/cluster.ts), where each issuer reads its credential keys again
 * (src/server/key-reload.ts). The primary must survive the signal (SIGHUP's default action ends a
 * process) and every worker must get it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-cluster-reload-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Two workers that say when they get SIGHUP; the primary signals itself once all listen, then stops. */
const FIXTURE = (clusterJs: string): string => `
import http from 'node:http';
const c = await import(${JSON.stringify(clusterJs)});
if (c.isClusterWorker()) {
  const server = http.createServer((_, res) => res.end('ok'));
  process.on('SIGHUP', () => console.log('worker ' + process.env.SIGIL_WORKER + ' reloaded'));
  await c.whileStarting(() => new Promise((resolve) => server.listen(0, '127.0.0.1', resolve)));
  c.reportListening('http://127.0.0.1:' + server.address().port);
  process.once('SIGTERM', () => server.close());
} else {
  await c.superviseWorkers({
    workers: 2,
    say: () => undefined,
    onAllListening: () => {
      process.kill(process.pid, 'SIGHUP');
      setTimeout(() => {
        console.log('primary alive after SIGHUP');
        process.kill(process.pid, 'SIGTERM');
      }, 1000);
    },
  });
  console.log('primary stopped');
}
`;

/** Run a fixture (given dist/server/cluster.js) as its own process; its stdout and exit code. */
async function runPrimary(
  name: string,
  fixture: (clusterJs: string) => string,
): Promise<{ out: string; code: unknown }> {
  const file = join(dir, name);
  writeFileSync(file, fixture(pathToFileURL(join(ROOT, 'dist', 'server', 'cluster.js')).href));
  const p = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const killer = setTimeout(() => p.kill('SIGKILL'), 20_000);
  const code = await new Promise((resolve) => p.once('close', resolve));
  clearTimeout(killer);
  return { out, code };
}

describe('SIGHUP to the cluster primary', () => {
  it('reaches every worker, and the primary lives on', async () => {
    const { out, code } = await runPrimary('primary.mjs', FIXTURE);
    expect(out.match(/worker \d reloaded/g)?.sort()).toEqual(['worker 1 reloaded', 'worker 2 reloaded']);
    expect(out).toMatch(/primary alive after SIGHUP/);
    expect(out).toMatch(/primary stopped/);
    expect(code).toBe(0);
  }, 30_000);
});

/** Three workers; worker 1's key watch "takes a step" once all listen: the primary SIGHUPs 2 and 3. */
const REPORTING = (clusterJs: string): string => `
import http from 'node:http';
const c = await import(${JSON.stringify(clusterJs)});
if (c.isClusterWorker()) {
  const server = http.createServer((_, res) => res.end('ok'));
  process.on('SIGHUP', () => console.log('worker ' + process.env.SIGIL_WORKER + ' reloaded'));
  process.on('message', (m) => m === 'report' && c.reportKeysChanged());
  await c.whileStarting(() => new Promise((resolve) => server.listen(0, '127.0.0.1', resolve)));
  c.reportListening('http://127.0.0.1:' + server.address().port);
  process.once('SIGTERM', () => server.close());
} else {
  const cluster = (await import('node:cluster')).default;
  await c.superviseWorkers({
    workers: 3,
    say: () => undefined,
    onAllListening: () => {
      cluster.workers[1].send('report'); // forked first: slot 1
      setTimeout(() => process.kill(process.pid, 'SIGTERM'), 1500);
    },
  });
  console.log('primary stopped');
}
`;

describe('a worker whose key watch took a step', () => {
  it('makes the primary pass SIGHUP to the other workers, not back to itself', async () => {
    const { out, code } = await runPrimary('reporting.mjs', REPORTING);
    expect(out.match(/worker \d reloaded/g)?.sort()).toEqual(['worker 2 reloaded', 'worker 3 reloaded']);
    expect(out).toMatch(/primary stopped/);
    expect(code).toBe(0);
  }, 30_000);
});

/** Two workers; worker 2 listens 1.5 s late, and worker 1 reports a key change before that. */
const LATE = (clusterJs: string): string => `
import http from 'node:http';
const c = await import(${JSON.stringify(clusterJs)});
if (c.isClusterWorker()) {
  const server = http.createServer((_, res) => res.end('ok'));
  process.on('SIGHUP', () => console.log('worker ' + process.env.SIGIL_WORKER + ' reloaded'));
  if (process.env.SIGIL_WORKER === '2') await new Promise((r) => setTimeout(r, 1500));
  await c.whileStarting(() => new Promise((resolve) => server.listen(0, '127.0.0.1', resolve)));
  c.reportListening('http://127.0.0.1:' + server.address().port);
  if (process.env.SIGIL_WORKER === '1') c.reportKeysChanged();
  process.once('SIGTERM', () => server.close());
} else {
  await c.superviseWorkers({
    workers: 2,
    say: () => undefined,
    onAllListening: () => setTimeout(() => process.kill(process.pid, 'SIGTERM'), 800),
  });
  console.log('primary stopped');
}
`;

describe('a worker still starting when another reports a key change', () => {
  it('is told to read its keys again once it listens', async () => {
    const { out, code } = await runPrimary('late.mjs', LATE);
    expect(out.match(/worker \d reloaded/g)).toEqual(['worker 2 reloaded']);
    expect(code).toBe(0);
  }, 30_000);
});
