/**
 * A real OpenSSH server for the ssh output tests: `sshd -D -e -f <temp config>` on a free
 * 127.0.0.1 port, run as root (it must be, to switch to the login user), with the host key,
 * host certificate and TrustedUserCAKeys the test gives it. Plus a throwaway login user.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './mosquitto.js';

export const SSHD = '/usr/sbin/sshd';
const INSTALL =
  'sshd/ssh are not installed; install them with: apt-get install -y openssh-server openssh-client (scripts/setup.sh does)';

export function requireOpenSsh(): void {
  if (!existsSync(SSHD) || spawnSync('ssh', ['-V']).error) throw new Error(INSTALL);
  if (process.getuid?.() !== 0)
    throw new Error('the sshd tests run sshd as root (it must switch to the login user); run them as root');
}

export interface Sshd {
  port: number;
  pidFile: string;
  log(): string;
  stop(): Promise<void>;
}

export async function startSshd(
  dir: string,
  o: { hostKey: string; hostCert?: string; trustedUserCaKeys: string },
): Promise<Sshd> {
  requireOpenSsh();
  // Debian's sshd refuses to start without its privilege separation directory.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const port = await freePort();
  const config = join(dir, `sshd_config-${port}`);
  const pidFile = join(dir, `sshd-${port}.pid`);
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${o.hostKey}`,
      ...(o.hostCert ? [`HostCertificate ${o.hostCert}`] : []),
      `TrustedUserCAKeys ${o.trustedUserCaKeys}`,
      'AuthorizedKeysFile none',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      // Certificates decide who logs in as root too; a refusal must come from the principals.
      'PermitRootLogin prohibit-password',
      `PidFile ${pidFile}`,
      'StrictModes no',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  const proc: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  const logs: string[] = [];
  proc.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`sshd did not start: ${logs.join('')}`)), 10_000);
    const check = (): void => {
      if (/Server listening on 127\.0\.0\.1 port/.test(logs.join(''))) {
        clearTimeout(t);
        resolve();
      }
    };
    proc.stderr!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`sshd exited ${code}: ${logs.join('')}`));
    });
  });
  return {
    port,
    pidFile,
    log: () => logs.join(''),
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** A login user for the test (no home, shell /bin/sh, password '*': not locked for sshd, no password login). */
export function createTestUser(): { name: string; remove(): void } {
  const name = `sgl${randomBytes(4).toString('hex')}`;
  execFileSync('useradd', ['-M', '-s', '/bin/sh', '-p', '*', name]);
  return { name, remove: () => void spawnSync('userdel', [name]) };
}

/** Run ssh; resolves with the exit code and output (never rejects on a non-zero exit). */
export function ssh(args: string[], timeoutMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('ssh', ['-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}
