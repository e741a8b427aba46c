/**
 * A `reload: { signal, pid_file }` hook run by root must not let the workload's user choose the
 * process root signals (src/agent/outputs/reload.ts): the pid file is opened without following a
 * symlink and refused unless owned by root or the agent's user and not writable by group or
 * others. Each attack is made by a real unprivileged user (`nobody`, through setpriv) against a
 * victim process of root's; without the check the victim is killed and the test fails.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runReload } from '../../../src/agent/outputs/reload.js';

const NOBODY = 65534;
const root = process.getuid?.() === 0 && process.platform === 'linux';

function asNobody(script: string): number | null {
  return spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'sh', '-c', script]).status;
}

let base: string;
let app: string; // the workload's own directory (like /run/myapp), writable by its user
let victim: ChildProcess;

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-reload-pid-'));
  fs.chmodSync(base, 0o755);
  app = path.join(base, 'app');
  fs.mkdirSync(app, { mode: 0o755 });
  fs.chownSync(app, NOBODY, NOBODY);
  victim = spawn('sleep', ['30'], { stdio: 'ignore' });
});
afterEach(() => {
  victim.kill('SIGKILL');
  fs.rmSync(base, { recursive: true, force: true });
});

/** Whether the victim is still running a moment after the hook ran. */
async function victimAlive(): Promise<boolean> {
  await new Promise((r) => setTimeout(r, 100));
  return victim.exitCode === null && victim.signalCode === null;
}

describe.runIf(root)('reload hook: the pid file is trusted only when root or the agent owns it', () => {
  it('refuses a pid file the workload user owns, naming the owner', async () => {
    const pidFile = path.join(app, 'app.pid');
    expect(asNobody(`echo ${victim.pid} > ${pidFile}`)).toBe(0);
    const why = await runReload({ signal: 'TERM', pid_file: pidFile });
    expect(await victimAlive()).toBe(true);
    expect(why).toBe(
      `unsafe_path: refusing pid file ${pidFile}: it is owned by uid ${NOBODY}, not by root or uid 0 running the agent (mode 0644, owner uid ${NOBODY}); its owner could name any process. Have the service write it as root, or use reload: { command: … }`,
    );
  });

  it('refuses a root-owned pid file that others can write', async () => {
    const pidFile = path.join(base, 'shared.pid');
    fs.writeFileSync(pidFile, `${process.pid}\n`);
    fs.chmodSync(pidFile, 0o666);
    expect(asNobody(`echo ${victim.pid} > ${pidFile}`)).toBe(0);
    const why = await runReload({ signal: 'TERM', pid_file: pidFile });
    expect(await victimAlive()).toBe(true);
    expect(why).toMatch(
      /^unsafe_path: refusing pid file .*: it is writable by group or others \(mode 0666, owner uid 0\)/,
    );
    expect(why).toMatch(new RegExp(`Run: chmod go-w ${pidFile}$`));
  });

  it('refuses a pid file replaced by a symbolic link to a root-owned file', async () => {
    // Any root-owned 0644 file holding a number will do (another daemon's pid file, say).
    const other = path.join(base, 'other.pid');
    fs.writeFileSync(other, `${victim.pid}\n`, { mode: 0o644 });
    const pidFile = path.join(app, 'app.pid');
    expect(asNobody(`ln -s ${other} ${pidFile}`)).toBe(0);
    const why = await runReload({ signal: 'TERM', pid_file: pidFile });
    expect(await victimAlive()).toBe(true);
    expect(why).toBe(
      `unsafe_path: refusing pid file ${pidFile}: it is a symbolic link (pid files are opened without following links)`,
    );
  });

  it('refuses a FIFO in place of the pid file without blocking', async () => {
    const pidFile = path.join(app, 'app.pid');
    expect(asNobody(`mkfifo -m 0600 ${pidFile}`)).toBe(0);
    fs.chownSync(pidFile, 0, 0);
    const why = await runReload({ signal: 'TERM', pid_file: pidFile });
    expect(why).toMatch(/^unsafe_path: refusing pid file .*: it is not a regular file \(mode 0600, owner uid 0\)/);
  });

  it('signals the process in a root-owned 0644 pid file, and never pid 1', async () => {
    const pidFile = path.join(base, 'good.pid');
    fs.writeFileSync(pidFile, `${victim.pid}\n`, { mode: 0o644 });
    const exited = new Promise((r) => victim.once('exit', (_c, sig) => r(sig)));
    expect(await runReload({ signal: 'TERM', pid_file: pidFile })).toBeUndefined();
    expect(await exited).toBe('SIGTERM');
    // process.kill is stubbed here, so a regression never really signals this machine's init.
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => true);
    try {
      fs.writeFileSync(pidFile, '1\n');
      expect(await runReload({ signal: 'TERM', pid_file: pidFile })).toBe(
        `pid file ${pidFile} does not hold a process id`,
      );
      expect(kill).not.toHaveBeenCalled();
    } finally {
      kill.mockRestore();
    }
  });
});
