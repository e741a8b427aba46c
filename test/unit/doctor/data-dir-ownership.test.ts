/**
 * `sigil doctor`'s data_dir check agrees with what the agent refuses (src/agent/state/dir-perms.ts):
 * whatever the agent refuses as unsafe_path, doctor fails, naming the same fix — except an owner
 * other than doctor's own uid when doctor runs as root, a warning (doctor cannot know which user
 * the agent runs as; `sudo sigil doctor` on an agent run as `sigil` is the normal case).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { openAgentState } from '../../../src/agent/state/index.js';
import { checkAgentDataDir } from '../../../src/doctor/agent/data-dir.js';

const NOBODY = 65534;
const root = process.getuid?.() === 0 && process.platform === 'linux';

function agentOpens(dir: string): true | string {
  try {
    openAgentState(dir).close();
    return true;
  } catch (e) {
    if (e instanceof SigilError) return `${e.code}: ${e.message}`;
    throw e;
  }
}

let base: string;
beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-doctor-own-'));
  fs.chmodSync(base, 0o1777);
});
afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

describe.runIf(root)('doctor data_dir agrees with the agent', () => {
  it('a good state is ok for both', () => {
    const d = path.join(base, 'data');
    expect(agentOpens(d)).toBe(true);
    expect(checkAgentDataDir(d).status).toBe('ok');
  });

  it('a world-writable data dir: the agent refuses, doctor fails', () => {
    const d = path.join(base, 'data');
    expect(agentOpens(d)).toBe(true);
    fs.chmodSync(d, 0o777);
    expect(agentOpens(d)).toMatch(/^unsafe_path: .*writable by group or others/);
    expect(checkAgentDataDir(d).status).toBe('fail');
  });

  it('a parent others can rename the data dir out of: the agent refuses, doctor fails with the chmod', () => {
    const parent = path.join(base, 'open');
    fs.mkdirSync(parent, { mode: 0o755 });
    const d = path.join(parent, 'data');
    expect(agentOpens(d)).toBe(true);
    fs.chmodSync(parent, 0o777);
    // nobody really can move it aside.
    const mv = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'mv', d, `${d}.x`]);
    expect(mv.status).toBe(0);
    fs.renameSync(`${d}.x`, d);
    expect(agentOpens(d)).toMatch(/^unsafe_path: .*without the sticky bit/);
    const r = checkAgentDataDir(d);
    expect(r).toMatchObject({ status: 'fail', fix: `chmod o-w ${parent} (or move data_dir)` });
    expect(r.detail).toContain('world-writable without the sticky bit (mode 0777)');
  });

  it('an agent.db others can write: the agent refuses, doctor fails saying it may have been rewritten', () => {
    const d = path.join(base, 'data');
    expect(agentOpens(d)).toBe(true);
    fs.chmodSync(path.join(d, 'agent.db'), 0o666);
    expect(agentOpens(d)).toMatch(/^unsafe_path: .*agent\.db: it is writable by group or others/);
    const r = checkAgentDataDir(d);
    expect(r.status).toBe('fail');
    expect(r.detail).toContain('may have been rewritten; the agent refuses it');
  });

  it('a data dir owned by another user: the agent (root) refuses, doctor as root warns and says so', () => {
    const d = path.join(base, 'data');
    const mk = spawnSync('setpriv', [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      '--clear-groups',
      'mkdir',
      '-m',
      '0700',
      d,
    ]);
    expect(mk.status).toBe(0);
    expect(agentOpens(d)).toMatch(/^unsafe_path: .*owned by uid 65534, not by root or uid 0/);
    const r = checkAgentDataDir(d);
    expect(r.status).toBe('warn');
    expect(r.detail).toContain('an agent run as root refuses it (unsafe_path)');
  });
});
