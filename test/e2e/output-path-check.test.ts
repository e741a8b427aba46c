/**
 * Output directories are checked before the agent's first network call (issue #12 item 2): a
 * bad one is `config_invalid` (exit 2, one line naming the output and the reason), the join
 * token is not spent and the issuer records nothing. Before, the agent joined first and failed
 * only when writing: /proc spun in mkdir for minutes (Node's recursive mkdir retries ENOENT
 * forever there), /sys ended in exit 75 `internal` — both after the token was used.
 */
import { chmodSync, chownSync, mkdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createToken, sigil, sigilJson, writeAgentConfig, type RunningIssuer } from '../helpers/cli.js';
import { useIssuer } from '../helpers/issuer-fixture.js';

/** What the issuer's audit log says about joins. */
async function joinRows(issuer: RunningIssuer): Promise<unknown[]> {
  const rows = await sigilJson<Array<{ action: string }>>(['ctl', '--data-dir', issuer.dataDir, 'audit']);
  return rows.filter((r) => r.action === 'join');
}

function expectOneLineRefusal(r: { code: number; stdout: string; stderr: string }, path: string, reason: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^error\[config_invalid\]: /);
  expect(lines[0]).toContain(`output identity ${path}: `);
  expect(lines[0]).toMatch(reason);
}

describe('agent output paths are checked before the join (issue #12 item 2)', () => {
  const fx = useIssuer();
  const { tmp } = fx;

  it('/proc and /sys are refused within a second (beyond CLI start-up), the token stays unused and the issuer records no join', async () => {
    const token = await createToken(fx.issuer);
    // Node and CLI start-up on a shared 2-core machine can take a second by itself: measure it
    // (`--help` loads the same CLI) and allow the refusal one second on top.
    const t = Date.now();
    await sigil(['agent', 'run', '--help']);
    const startup = Date.now() - t;
    for (const [name, path] of [
      ['proc', '/proc/sigil/identity'],
      ['sys', '/sys/kernel/sigil/identity'],
    ] as const) {
      const a = writeAgentConfig(tmp.path, name, { url: fx.issuer.url, pin: fx.issuer.pin, token });
      writeFileSync(
        a.config,
        `issuer: ${fx.issuer.url}\nca_pin: ${fx.issuer.pin}\ndata_dir: ${a.dataDir}\njoin: { method: token, token: ${token} }\noutputs:\n  - { type: identity, path: ${path} }\n`,
      );
      const t0 = Date.now();
      const r = await sigil(['agent', 'run', '--config', a.config, '--once'], { timeoutMs: 15_000 });
      const ms = Date.now() - t0;
      expectOneLineRefusal(r, path, /pseudo file system/);
      // The old code never returned (/proc) or joined first (/sys).
      expect(ms, `startup ${startup} ms`).toBeLessThan(startup + 1_000);
    }
    expect(await joinRows(fx.issuer)).toEqual([]);

    // The same token still joins once the path is fixed: it was never spent.
    const good = writeAgentConfig(tmp.path, 'fixed', { url: fx.issuer.url, pin: fx.issuer.pin, token });
    const joined = await sigilJson(['agent', 'run', '--config', good.config, '--once']);
    expect(joined.result).toBe('joined');
    expect(statSync(join(good.outDir, 'svid.pem')).isFile()).toBe(true);
    expect(await joinRows(fx.issuer)).toHaveLength(1);
  });

  it('a data_dir under /proc fails at once (exit 2) instead of spinning in mkdir', async () => {
    const config = join(tmp.path, 'proc-data.yaml');
    writeFileSync(
      config,
      `issuer: ${fx.issuer.url}\nca_pin: ${fx.issuer.pin}\ndata_dir: /proc/sigil/data\njoin: { method: token, token: ${await createToken(fx.issuer)} }\n`,
    );
    const t0 = Date.now();
    const r = await sigil(['agent', 'run', '--config', config, '--once'], { timeoutMs: 15_000 });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toBe('error[config_invalid]: data_dir /proc/sigil/data: cannot write /proc/sigil/data: ENOENT\n');
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('a symlinked, world-writable or non-directory output is refused before the join', async () => {
    const token = await createToken(fx.issuer);
    const real = join(tmp.path, 'real');
    mkdirSync(real, { mode: 0o755 });
    const link = join(tmp.path, 'link');
    symlinkSync(real, link);
    const open = join(tmp.path, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const file = join(tmp.path, 'a-file');
    writeFileSync(file, 'x');
    const before = (await joinRows(fx.issuer)).length;
    for (const [path, reason] of [
      [link, /symbolic link/],
      [open, /world-writable.*chmod o-w/],
      [file, /not a directory/],
      [join(file, 'sub'), /not a directory/],
    ] as const) {
      const a = writeAgentConfig(tmp.path, `bad-${Math.random().toString(36).slice(2)}`, {
        url: fx.issuer.url,
        pin: fx.issuer.pin,
        token,
      });
      writeFileSync(
        a.config,
        `issuer: ${fx.issuer.url}\nca_pin: ${fx.issuer.pin}\ndata_dir: ${a.dataDir}\njoin: { method: token, token: ${token} }\noutputs:\n  - { type: identity, path: ${path} }\n`,
      );
      expectOneLineRefusal(await sigil(['agent', 'run', '--config', a.config, '--once']), path, reason);
    }
    expect(await joinRows(fx.issuer)).toHaveLength(before);
  });

  it('an output under a read-only parent is refused (exit 2) without contacting the issuer', async () => {
    // Root ignores permission bits, so as root the agent runs as nobody (65534) for this case.
    const root = process.getuid?.() === 0;
    const base = join(tmp.path, 'ro-case');
    mkdirSync(base, { mode: 0o755 });
    chmodSync(tmp.path, 0o755);
    const ro = join(base, 'readonly');
    mkdirSync(ro, { mode: 0o555 });
    chmodSync(ro, 0o555);
    const dataDir = join(base, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    if (root) chownSync(dataDir, 65534, 65534);
    const config = join(base, 'agent.yaml');
    const out = join(ro, 'identity');
    // Nothing listens on port 9: a network call would fail with exit 75, not 2.
    writeFileSync(
      config,
      `issuer: https://127.0.0.1:9\nca_pin: sha256:${'0'.repeat(64)}\ndata_dir: ${dataDir}\njoin: { method: token, token: ${await createToken(fx.issuer)} }\noutputs:\n  - { type: identity, path: ${out} }\n`,
    );
    chmodSync(config, 0o644);
    const args = ['agent', 'run', '--config', config, '--once'];
    const r = root ? await sigilAs(65534, args) : await sigil(args);
    expectOneLineRefusal(r, out, new RegExp(`cannot be created: ${ro} is not writable \\(EACCES\\)`));
    rmSync(base, { recursive: true, force: true });
  });
});

/** Run `sigil` as another user (setpriv from util-linux). */
async function sigilAs(uid: number, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { spawn } = await import('node:child_process');
  const { SIGIL } = await import('../helpers/cli.js');
  return new Promise((resolve, reject) => {
    const p = spawn(
      'setpriv',
      [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, SIGIL, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SIGIL_LOG_FORMAT: 'json', HOME: '/tmp' } },
    );
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}
