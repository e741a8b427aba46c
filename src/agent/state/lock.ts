/**
 * One agent per data directory. Two daemons on one `data_dir` (or a daemon and `agent run
 * --once` / `agent renew`) would each renew with the same credential: the second renewal
 * presents a generation the first already replaced, and the issuer locks the instance as a
 * stolen credential (generation_mismatch). So the commands that talk to the issuer take
 * `<data_dir>/agent.lock` first, and a second one exits with the holder's pid (issue #12).
 *
 * The lock is a file created with O_EXCL holding the owner's pid. A lock left by a process that
 * no longer exists (SIGKILL, power loss) is taken over: kill(pid, 0) answers ESRCH for it.
 * `agent status` reads the state without the lock.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SigilError } from '../../errors.js';
import { ensureDir } from '../../util/atomic-file.js';
import { assertStateDirSafe } from './dir-perms.js';

export const LOCK_FILE = 'agent.lock';

function holderOf(path: string): { pid: number; what: string } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const [pidText, what] = text.split('\n');
  const pid = Number(pidText);
  return Number.isInteger(pid) && pid > 0 ? { pid, what: what ?? '' } : { pid: 0, what: '' };
}

function alive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to another user — still a holder.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Take the data directory's lock for `what` (shown to a second comer); returns its release. */
export function lockDataDir(dataDir: string, what: string): () => void {
  // Not mkdirSync({ recursive: true }): it retries forever under /proc (util/atomic-file.ts mkdirEach).
  try {
    ensureDir(dataDir, 0o700);
  } catch (e) {
    throw new SigilError('config_invalid', `data_dir ${dataDir}: ${(e as Error).message}`);
  }
  // The directory's owner and mode are judged before anything is created in it (./dir-perms.ts):
  // no lock file of ours in a directory another user planted.
  assertStateDirSafe(dataDir);
  const path = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new SigilError(
          'config_invalid',
          `cannot create ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
        );
      const holder = holderOf(path);
      if (holder && alive(holder.pid) && holder.pid !== process.pid) {
        throw new SigilError(
          'data_dir_locked',
          `${dataDir} is in use by pid ${holder.pid}${holder.what ? ` (${holder.what})` : ''}; stop it first (two agents on one data directory would lock the instance with generation_mismatch)`,
        );
      }
      // Left behind by a process that is gone: take it over (another taker may race us; O_EXCL decides).
      try {
        unlinkSync(path);
      } catch {
        // someone else removed it first
      }
      continue;
    }
    try {
      writeSync(fd, `${process.pid}\n${what}\n`);
    } finally {
      closeSync(fd);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (holderOf(path)?.pid === process.pid) {
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
      }
    };
  }
  throw new SigilError('data_dir_locked', `could not take ${path}: other processes keep replacing it`);
}
