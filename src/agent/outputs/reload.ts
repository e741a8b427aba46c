/**
 * `reload` hooks, run after an output was rotated so the consumer picks up the new files:
 *
 *   reload: { command: "systemctl reload ssh" }          run by /bin/sh -c
 *   reload: { command: [pg_ctl, reload, -D, /var/db] }   run directly (no shell)
 *   reload: { signal: HUP, pid_file: /run/sshd.pid }     kill(2) the pid in the file
 *
 * A failing hook is reported (logged and returned) but never undoes the rotation: the files are
 * already correct, the consumer is just late to read them.
 *
 * A pid file decides which process the agent — often root — signals, so it is trusted as
 * systemd trusts `PIDFile=`: opened without following a symlink, and refused (`unsafe_path`,
 * naming the check) unless it is a regular file owned by root or by the agent's user and not
 * writable by group or others. Otherwise a workload user who can write it, or replace it with a
 * link, makes the agent send the signal to any process. Pid 1 is never signalled.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { SigilError } from '../../errors.js';
import type { ReloadConfig } from './config.js';

export const DEFAULT_RELOAD_TIMEOUT_S = 30;

/** Resolves with undefined on success, or a one-line reason. Never rejects. */
export async function runReload(reload: ReloadConfig, env: Record<string, string> = {}): Promise<string | undefined> {
  if ('pid_file' in reload) {
    const read = readPidFile(reload.pid_file);
    if (typeof read === 'string') return read;
    const pid = read.pid;
    if (!Number.isInteger(pid) || pid <= 1) return `pid file ${reload.pid_file} does not hold a process id`;
    try {
      process.kill(pid, `SIG${reload.signal}` as NodeJS.Signals);
      return undefined;
    } catch (e) {
      return `cannot signal process ${pid}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`;
    }
  }
  const [cmd, ...args] = typeof reload.command === 'string' ? ['/bin/sh', '-c', reload.command] : reload.command;
  const timeoutMs = (reload.timeout ?? DEFAULT_RELOAD_TIMEOUT_S) * 1000;
  return new Promise((resolve) => {
    let stderr = '';
    const child = spawn(cmd!, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-500)));
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve(`cannot run ${cmd}: ${(e as NodeJS.ErrnoException).code ?? e.message}`);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(undefined);
      const why = signal
        ? `killed by ${signal}${signal === 'SIGKILL' ? ` (timeout ${timeoutMs / 1000} s)` : ''}`
        : `exit ${code}`;
      resolve(`reload command failed (${why})${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ''}`);
    });
  });
}

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;
const euid = (): number => (process.geteuid ? process.geteuid() : 0);

/** The pid in `file` if it passes the checks (module comment), else the reason it is refused. */
function readPidFile(file: string): { pid: number } | string {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted in its place must not hang the agent (it is refused below).
    fd = fs.openSync(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') return refusal(file, 'it is a symbolic link (pid files are opened without following links)');
    return `cannot read pid file ${file}: ${code ?? 'error'}`;
  }
  try {
    const st = fs.fstatSync(fd);
    const found = `mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${st.uid}`;
    if (!st.isFile()) return refusal(file, `it is not a regular file (${found})`);
    const me = euid();
    if (st.uid !== 0 && st.uid !== me)
      return refusal(
        file,
        `it is owned by uid ${st.uid}, not by root or uid ${me} running the agent (${found}); its owner could name any process. Have the service write it as root, or use reload: { command: … }`,
      );
    if ((st.mode & 0o022) !== 0)
      return refusal(
        file,
        `it is writable by group or others (${found}); any of them could name any process. Run: chmod go-w ${file}`,
      );
    return { pid: Number(fs.readFileSync(fd, 'utf8').trim()) };
  } catch (e) {
    return `cannot read pid file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`;
  } finally {
    fs.closeSync(fd);
  }
}

function refusal(file: string, why: string): string {
  const e = new SigilError('unsafe_path', `refusing pid file ${file}: ${why}`);
  return `${e.code}: ${e.message}`;
}
