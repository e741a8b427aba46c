/**
 * One agent per data directory, and a clean start/stop (issue #12, defects 3 and 5): a second
 * `agent run` (or `run --once`, `renew`) on a data directory in use exits at once naming the
 * holder's pid; a lock left by a killed agent is taken over; a metrics port already in use is a
 * one-line config_invalid (exit 2), not a stack trace; SIGTERM is logged and releases the lock.
 * The issuer is deliberately unreachable: none of this needs one.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SIGIL, sigil, tempDir, writeAgentConfig } from '../helpers/cli.js';
import { waitFor } from '../helpers/mosquitto.js';

const tmp = tempDir('sigil-single-');
afterAll(() => tmp.cleanup());

/** A port nothing listens on: the issuer is unreachable. */
const CLOSED = 'https://127.0.0.1:9';
const PIN = `sha256:${'ab'.repeat(32)}`;

function daemon(config: string) {
  const p = spawn(process.execPath, [SIGIL, 'agent', 'run', '--config', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
  });
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)));
  return { p, stderr: () => stderr, exited };
}

describe('one agent per data directory', () => {
  it('a second run, run --once or renew exits naming the holder; SIGTERM is logged and frees it', async () => {
    const a = writeAgentConfig(tmp.path, 'one', { url: CLOSED, pin: PIN, token: 'T'.repeat(43) });
    const first = daemon(a.config);
    try {
      const lock = join(a.dataDir, 'agent.lock');
      await waitFor('the lock', () => existsSync(lock), 15_000, 50);
      expect(readFileSync(lock, 'utf8').split('\n')[0]).toBe(String(first.p.pid));
      for (const args of [
        ['agent', 'run', '--config', a.config],
        ['agent', 'run', '--once', '--config', a.config],
        ['agent', 'renew', '--config', a.config],
      ]) {
        const r = await sigil(args);
        expect(r.code).toBe(1);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(r.stderr).toMatch(
          new RegExp(`^error\\[data_dir_locked\\]: .* is in use by pid ${first.p.pid} \\(sigil agent run\\)`),
        );
      }
      // status reads without the lock.
      expect((await sigil(['agent', 'status', '--config', a.config])).stderr).not.toMatch(/data_dir_locked/);
      first.p.kill('SIGTERM');
      expect(await first.exited).toBe(0);
      expect(first.stderr()).toMatch(/"msg":"stopping \(SIGTERM\)"/);
      expect(existsSync(lock)).toBe(false);
    } finally {
      first.p.kill('SIGKILL');
    }
  });

  it('a lock left by a killed agent is taken over', async () => {
    const a = writeAgentConfig(tmp.path, 'stale', { url: CLOSED, pin: PIN, token: 'T'.repeat(43) });
    const gone = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => gone.on('close', r));
    mkdirSync(a.dataDir, { recursive: true });
    writeFileSync(join(a.dataDir, 'agent.lock'), `${gone.pid}\nsigil agent run\n`);
    const r = await sigil(['agent', 'run', '--once', '--config', a.config]);
    expect(r.stderr).not.toMatch(/data_dir_locked/);
    expect(r.stderr).toMatch(/^error\[issuer_unreachable\]/m);
    expect(existsSync(join(a.dataDir, 'agent.lock'))).toBe(false);
  });
});

describe('agent metrics port', () => {
  it('already in use: one line config_invalid, exit 2, lock released', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as AddressInfo).port;
    try {
      const a = writeAgentConfig(tmp.path, 'metrics', {
        url: CLOSED,
        pin: PIN,
        token: 'T'.repeat(43),
        extra: `metrics: { listen: "127.0.0.1:${port}" }\n`,
      });
      const r = await sigil(['agent', 'run', '--config', a.config]);
      expect(r.code).toBe(2);
      const lines = r.stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('{'));
      expect(lines).toEqual([
        `error[config_invalid]: metrics.listen 127.0.0.1:${port}: the address is already in use (another process listens there; pick another port)`,
      ]);
      expect(r.stderr).not.toMatch(/EADDRINUSE|\n\s+at /);
      expect(existsSync(join(a.dataDir, 'agent.lock'))).toBe(false);
    } finally {
      busy.close();
    }
  });
});
