/**
 * Offline is normal: an agent restarted while the issuer is down serves its identity from
 * SQLite, keeps retrying with backoff, and renews as soon as the issuer is back.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentStatusJson, createToken, SIGIL, sigil, sigilJson, writeAgentConfig } from '../helpers/cli.js';
import { useIssuer } from '../helpers/issuer-fixture.js';

async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('agent restart while the issuer is down', () => {
  const fx = useIssuer();
  const { tmp } = fx;

  it('serves the cached identity, fails renewals with a retryable code, and renews when the issuer returns', async () => {
    // 30 s certificates renewed at 20% of their life: the daemon wants to renew after ~6 s.
    const a = writeAgentConfig(tmp.path, 'edge', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer),
      ttl: '30s',
      extra: 'renew_fraction: 0.2\n',
    });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(joined.generation).toBe(1);

    await fx.issuer.stop();

    // A one-shot run with nothing due needs no issuer: it rewrites outputs from SQLite and exits 0.
    rmSync(a.outDir, { recursive: true });
    const once = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(once).toMatchObject({ result: 'none', serial: joined.serial });
    expect(readFileSync(join(a.outDir, 'svid.pem'), 'utf8')).toContain('BEGIN CERTIFICATE');

    // Forcing a renewal while offline: retryable failure, exit 75, nothing lost.
    const forced = await sigil(['agent', 'renew', '--config', a.config]);
    expect(forced.code).toBe(75);
    expect(forced.stderr).toMatch(/error\[issuer_unreachable\]/);
    const st1 = await agentStatusJson(['--config', a.config]);
    expect(st1).toMatchObject({ serial: joined.serial, consecutive_failures: 1 });

    // The daemon restarted while offline: outputs are back from SQLite within a moment.
    rmSync(a.outDir, { recursive: true });
    const started = Date.now();
    const daemon = spawn(process.execPath, [SIGIL, 'agent', 'run', '--config', a.config], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
    });
    let log = '';
    daemon.stderr.on('data', (d: Buffer) => (log += d.toString()));
    try {
      await waitFor('outputs served from cache', () => existsSync(join(a.outDir, 'svid.pem')) || undefined, 5_000);
      expect(Date.now() - started).toBeLessThan(5_000);
      // It keeps trying (and failing) in the background with backoff.
      await waitFor(
        'a failed renewal attempt',
        async () => ((await agentStatusJson(['--config', a.config])).consecutive_failures >= 2 ? true : undefined),
        20_000,
      );

      await fx.issuer.restart();
      const renewed = await waitFor(
        'renewal after the issuer returned',
        async () => {
          const s = await agentStatusJson(['--config', a.config]);
          // Identity and status are two writes; wait for both (the counter resets right after).
          return s.generation >= 2 && s.consecutive_failures === 0 ? s : undefined;
        },
        30_000,
      );
      expect(renewed.serial).not.toBe(joined.serial);
      expect(renewed.consecutive_failures).toBe(0);
      await waitFor(
        'new certificate on disk',
        () => (readFileSync(join(a.outDir, 'svid.pem'), 'utf8') !== '' ? true : undefined),
        2_000,
      );
    } finally {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
    expect(log).not.toMatch(/BEGIN (EC )?PRIVATE KEY/);
  }, 90_000);
});
