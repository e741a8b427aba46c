/**
 * `reload` hooks, run after an output was rotated so the consumer picks up the new files:
 *
 *   reload: { command: "systemctl reload ssh" }          run by /bin/sh -c
 *   reload: { command: [pg_ctl, reload, -D, /var/db] }   run directly (no shell)
 *   reload: { signal: HUP, pid_file: /run/sshd.pid }     kill(2) the pid in the file
 *
 * A failing hook is reported (logged and returned) but never undoes the rotation: the files are
 * already correct, the consumer is just late to read them.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { ReloadConfig } from './config.js';

export const DEFAULT_RELOAD_TIMEOUT_S = 30;

/** Resolves with undefined on success, or a one-line reason. Never rejects. */
export async function runReload(reload: ReloadConfig, env: Record<string, string> = {}): Promise<string | undefined> {
  if ('pid_file' in reload) {
    let pid: number;
    try {
      pid = Number(readFileSync(reload.pid_file, 'utf8').trim());
    } catch (e) {
      return `cannot read pid file ${reload.pid_file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`;
    }
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
