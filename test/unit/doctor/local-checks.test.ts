import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { judgeSkew } from '../../../src/doctor/agent/clock.js';
import { checkAgentDataDir } from '../../../src/doctor/agent/data-dir.js';
import { checkOutputDir } from '../../../src/doctor/agent/outputs.js';
import { splitFix } from '../../../src/doctor/server/context.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-doctor-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('clock skew', () => {
  it('ok within 30 s, warn beyond, fail beyond the issuer’s ±5 min', () => {
    expect(judgeSkew(1_200, 10, 'https://i').status).toBe('ok');
    expect(judgeSkew(-29_000, 10, 'https://i').status).toBe('ok');
    const w = judgeSkew(-45_000, 10, 'https://i');
    expect(w).toMatchObject({ status: 'warn' });
    expect(w.detail).toContain('45 s ahead of the issuer');
    const f = judgeSkew(400_000, 10, 'https://i');
    expect(f).toMatchObject({ status: 'fail' });
    expect(f.detail).toContain('behind');
    expect(f.detail).toContain('stale_request');
    expect(f.fix).toContain('timedatectl');
  });
});

describe('agent data dir', () => {
  it('missing is a warning; 0700 with a 0600 agent.db is ok; a readable agent.db fails', () => {
    expect(checkAgentDataDir(join(dir, 'nope')).status).toBe('warn');
    const d = join(dir, 'data');
    mkdirSync(d, { mode: 0o700 });
    chmodSync(d, 0o700);
    writeFileSync(join(d, 'agent.db'), '', { mode: 0o600 });
    expect(checkAgentDataDir(d).status).toBe('ok');
    chmodSync(join(d, 'agent.db'), 0o644);
    const r = checkAgentDataDir(d);
    expect(r).toMatchObject({ status: 'fail', fix: `chmod 600 ${join(d, 'agent.db')}*` });
    chmodSync(d, 0o755);
    chmodSync(join(d, 'agent.db'), 0o600);
    expect(checkAgentDataDir(d)).toMatchObject({ status: 'warn', fix: `chmod 700 ${d}` });
  });
});

describe('output dirs', () => {
  it('missing but creatable is ok; world-writable and symlinks fail; group-writable warns', () => {
    expect(checkOutputDir(join(dir, 'out', 'deeper')).status).toBe('ok');
    const ww = join(dir, 'ww');
    mkdirSync(ww);
    chmodSync(ww, 0o777);
    expect(checkOutputDir(ww)).toMatchObject({ status: 'fail', fix: `chmod o-w ${ww}` });
    const gw = join(dir, 'gw');
    mkdirSync(gw);
    chmodSync(gw, 0o775);
    expect(checkOutputDir(gw).status).toBe('warn');
    const link = join(dir, 'link');
    symlinkSync(gw, link);
    expect(checkOutputDir(link).status).toBe('fail');
    const file = join(dir, 'file');
    writeFileSync(file, '');
    expect(checkOutputDir(file).status).toBe('fail');
    expect(checkOutputDir(join(file, 'sub')).status).toBe('fail');
  });
});

describe('splitFix', () => {
  it('takes the command after "run: " from a data-dir-perms message', () => {
    expect(
      splitFix(
        '/d is writable by group or others (mode 0777, owner uid 0); anyone … Check it was not tampered with, then run: chmod go-w /d',
      ),
    ).toEqual({
      detail: '/d is writable by group or others (mode 0777, owner uid 0); anyone … Check it was not tampered with',
      fix: 'chmod go-w /d',
    });
    expect(splitFix('nothing to run here')).toEqual({ detail: 'nothing to run here', fix: undefined });
  });
});
