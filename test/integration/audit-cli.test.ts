/**
 * The operator's view of issue #11 items 4 and 6 through the `sigil` command (dist/, built by
 * `npm run build`): a serving issuer writes signed checkpoints (at start and at shutdown), and
 * `sigil ctl audit --verify` then names truncation; `audit prune` removes old rows behind a
 * signed checkpoint and the log still verifies.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = path.resolve('bin/sigil.js');
const run = promisify(execFile);

async function sigil(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [BIN, ...args], { env: { ...process.env, SIGIL_LOG_FORMAT: 'json' } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** Start the issuer, wait until it listens, stop it with SIGTERM (a clean shutdown). */
async function serveOnce(dir: string): Promise<void> {
  const child = spawn(
    process.execPath,
    [BIN, 'server', 'start', '--data-dir', dir, '--listen', '127.0.0.1:0', '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('listening on')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`issuer exited ${code}: ${out}`)));
  });
  // The first checkpoint is written once serving started; SIGTERM before that would kill it uncleanly.
  const cp = path.join(dir, 'audit-checkpoints.jsonl');
  for (let i = 0; i < 100 && !fs.existsSync(cp); i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 200));
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
}

describe('sigil ctl audit (issue #11)', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-audit-cli-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('server start/stop checkpoints the head; cutting rows off the end fails verify', async () => {
    expect((await sigil(['server', 'init', '--data-dir', dir, '--trust-domain', 'example.org'])).code).toBe(0);
    expect(fs.statSync(path.join(dir, 'audit.key')).mode & 0o777).toBe(0o600);
    for (let i = 0; i < 3; i++) await sigil(['ctl', '--data-dir', dir, 'lock', 'nobody']); // refused: audited as admin refusals
    await serveOnce(dir);
    const lines = fs
      .readFileSync(path.join(dir, 'audit-checkpoints.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string; seq: number });
    expect(lines.map((l) => [l.kind, l.seq])).toEqual([
      ['periodic', 4],
      ['shutdown', 4],
    ]);
    const ok = await sigil(['ctl', '--data-dir', dir, 'audit', '--verify']);
    expect(ok.stdout).toMatch(
      /^audit chain ok \(4 rows\): seq 1\.\.4, keyed from seq 1\ncheckpoints: .*: 2 of 2 verified, latest seq 4\n$/,
    );

    // The attacker removes the last two rows (and the guard first).
    const { execFileSync } = await import('node:child_process');
    execFileSync('sqlite3', [path.join(dir, 'issuer.db')], {
      input: 'DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq > 2;',
    });
    const bad = await sigil(['ctl', '--data-dir', dir, 'audit', '--verify', '--format', 'json']);
    expect(bad.code).toBe(1);
    const r = JSON.parse(bad.stdout) as { ok: boolean; problems: string[] };
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      expect.stringMatching(/append-only triggers dropped: audit_log_no_delete/),
      expect.stringMatching(/^truncated: checkpoint line 2 covers seq 4 but the log ends at seq 2/),
    ]);
    expect(JSON.parse(bad.stderr).error).toMatchObject({
      code: 'audit_chain_broken',
      message: expect.stringMatching(/^the audit log does not verify: append-only triggers dropped/),
    });
    // A copy of the checkpoints kept elsewhere works the same.
    const copy = path.join(dir, 'offsite.jsonl');
    fs.copyFileSync(path.join(dir, 'audit-checkpoints.jsonl'), copy);
    expect((await sigil(['ctl', '--data-dir', dir, 'audit', '--verify', '--checkpoint', copy])).stdout).toMatch(
      /problem: truncated/,
    );
  }, 60_000);

  it('audit prune: checkpoint, delete, verify from the anchor', async () => {
    const d2 = path.join(dir, 'second');
    expect((await sigil(['server', 'init', '--data-dir', d2, '--trust-domain', 'example.org'])).code).toBe(0);
    for (let i = 0; i < 3; i++) await sigil(['ctl', '--data-dir', d2, 'lock', 'nobody']);
    const p = await sigil([
      'ctl',
      '--data-dir',
      d2,
      'audit',
      'prune',
      '--before',
      new Date(Date.now() + 60_000).toISOString(),
      '--format',
      'json',
    ]);
    expect(p.code).toBe(0);
    expect(JSON.parse(p.stdout)).toMatchObject({ through_seq: 4, removed: 4 });
    const v = await sigil(['ctl', '--data-dir', d2, 'audit', '--verify', '--format', 'json']);
    expect(v.code).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({
      ok: true,
      rows: 1,
      first_seq: 5,
      anchor: { seq: 4, pruned: 4, checkpoint_ok: true },
      checkpoints: { lines: 1, verified: 1 },
    });
  }, 60_000);
});
