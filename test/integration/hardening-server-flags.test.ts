/**
 * Issue #11 item 8: the HTTPS limits are `sigil server start` flags. A real issuer process with
 * --idle-timeout 1s closes a silent TLS connection after ~1 s (fastify's default: never).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { SIGIL, sigil, tempDir } from '../helpers/cli.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('server start limit flags', () => {
  it('--idle-timeout closes a silent TLS connection; bad values are config_invalid (exit 2)', async () => {
    const t = tempDir('sigil-hard-flags-');
    cleanups.push(t.cleanup);
    const dir = join(t.path, 'issuer');
    expect((await sigil(['server', 'init', '--data-dir', dir, '--trust-domain', 'example.org'])).code).toBe(0);

    const bad = await sigil([
      'server',
      'start',
      '--data-dir',
      dir,
      '--listen',
      '127.0.0.1:0',
      '--headers-timeout',
      '20s',
      '--request-timeout',
      '10s',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /^error\[config_invalid\]: --headers-timeout \(20s\) must not exceed --request-timeout \(10s\)/,
    );
    const badN = await sigil(['server', 'start', '--data-dir', dir, '--listen', '127.0.0.1:0', '--join-burst', '0']);
    expect(badN.stderr).toMatch(/^error\[config_invalid\]: --join-burst must be a whole number ≥ 1/);

    const proc = spawn(
      process.execPath,
      [
        SIGIL,
        'server',
        'start',
        '--data-dir',
        dir,
        '--listen',
        '127.0.0.1:0',
        '--idle-timeout',
        '1s',
        '--headers-timeout',
        '2s',
        '--max-conns-per-source',
        '5',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    cleanups.push(() => proc.kill('SIGKILL'));
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      proc.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      proc.on('exit', (c) => reject(new Error(`issuer exited ${c}`)));
    });
    const t0 = Date.now();
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    s.on('error', () => undefined);
    const closedAfter = await new Promise<number>((resolve) => {
      s.on('close', () => resolve(Date.now() - t0));
      setTimeout(() => resolve(-1), 5000);
    });
    s.destroy();
    expect(closedAfter).toBeGreaterThanOrEqual(900);
    expect(closedAfter).toBeLessThan(2500);
  });
});
