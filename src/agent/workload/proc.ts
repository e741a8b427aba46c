/**
 * What /proc says about a local process (proc(5)), for the Workload API's caller attestation.
 * Every read names the pid it was made for; the caller (./attest.ts) brackets them with two
 * reads of the start time, so facts of a process that exited and whose pid was reused are never
 * attributed to the process that connected.
 */
import { createHash } from 'node:crypto';
import {
  type BigIntStats,
  closeSync,
  fstatSync,
  openSync,
  read,
  readFileSync,
  readlinkSync,
  readSync,
  statSync,
} from 'node:fs';

/** The process's start time in clock ticks since boot (/proc/<pid>/stat field 22); undefined when it is gone. */
export function processStartTime(pid: number, procRoot = '/proc'): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`${procRoot}/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain ') ': split after the last one.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field 22 is rest[19].
  const start = rest[19];
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}

/** Real, effective, saved and filesystem ids from /proc/<pid>/status (`Uid:` / `Gid:` lines). */
export function processIds(pid: number, procRoot = '/proc'): { uids: number[]; gids: number[] } | undefined {
  let status: string;
  try {
    status = readFileSync(`${procRoot}/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const ids = (label: string): number[] =>
    (status.match(new RegExp(`^${label}:\\s+(.*)$`, 'm'))?.[1] ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
  return { uids: ids('Uid'), gids: ids('Gid') };
}

/** The executable's path (/proc/<pid>/exe); undefined when it cannot be read (gone, or no permission). */
export function processExe(pid: number, procRoot = '/proc'): string | undefined {
  try {
    const target = readlinkSync(`${procRoot}/${pid}/exe`);
    // A replaced or deleted binary reads "/usr/bin/x (deleted)": that is not the file at the path now.
    return target.endsWith(' (deleted)') ? undefined : target;
  } catch {
    return undefined;
  }
}

/**
 * Which file the process runs: device and inode of /proc/<pid>/exe (stat follows the magic link
 * to the very inode the process runs, even if its path was replaced or unlinked since).
 * Undefined when it cannot be read (gone, or no permission: a non-root agent and another user).
 */
export interface ExeIdentity {
  dev: string;
  ino: string;
}

export function processExeIdentity(pid: number, procRoot = '/proc'): ExeIdentity | undefined {
  try {
    return identityOf(statSync(`${procRoot}/${pid}/exe`, { bigint: true }));
  } catch {
    return undefined;
  }
}

export function identityOf(st: BigIntStats): ExeIdentity {
  return { dev: String(st.dev), ino: String(st.ino) };
}

export const sameExe = (a: ExeIdentity, b: ExeIdentity): boolean => a.dev === b.dev && a.ino === b.ino;

/**
 * The running executable opened for hashing: one descriptor, fstat'ed, so that what is hashed
 * is the file whose identity was checked (the path cannot be swapped in between). The caller
 * closes `fd`. Undefined when it cannot be opened, or is larger than `maxBytes`.
 */
export interface OpenedExe {
  fd: number;
  st: BigIntStats;
  /** Cache key: a file with the same device, inode, size, mtime and ctime has the same content. */
  key: string;
}

export function openProcessExe(pid: number, maxBytes: number, procRoot = '/proc'): OpenedExe | undefined {
  let fd: number;
  try {
    fd = openSync(`${procRoot}/${pid}/exe`, 'r');
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    if (!st.isFile() || st.size > BigInt(maxBytes)) {
      closeSync(fd);
      return undefined;
    }
    return { fd, st, key: `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` };
  } catch {
    closeSync(fd);
    return undefined;
  }
}

const CHUNK = 1 << 20;

/** SHA-256 of an opened executable, synchronously (the CLI's `sigil agent workloads --pid`). */
export function hashOpenedExeSync(exe: OpenedExe, maxBytes: number): string | undefined {
  const hash = createHash('sha256');
  const buf = Buffer.alloc(CHUNK);
  let total = 0;
  for (;;) {
    const n = readSync(exe.fd, buf, 0, buf.length, total);
    if (n === 0) break;
    total += n;
    if (total > maxBytes) return undefined;
    hash.update(buf.subarray(0, n));
  }
  return hash.digest('hex');
}

const readChunk = (fd: number, buf: Buffer, pos: number): Promise<number> =>
  new Promise((resolve, reject) => read(fd, buf, 0, buf.length, pos, (e, n) => (e ? reject(e) : resolve(n))));

/**
 * SHA-256 of an opened executable without holding the event loop: each 1 MiB chunk is read on
 * libuv's thread pool and hashed in its own turn of the loop, so a 100 MB binary costs other
 * callers a few milliseconds at a time, not the whole hash at once.
 */
export async function hashOpenedExe(exe: OpenedExe, maxBytes: number): Promise<string | undefined> {
  const hash = createHash('sha256');
  const buf = Buffer.alloc(CHUNK);
  let total = 0;
  for (;;) {
    const n = await readChunk(exe.fd, buf, total);
    if (n === 0) break;
    total += n;
    if (total > maxBytes) return undefined;
    hash.update(buf.subarray(0, n));
  }
  return hash.digest('hex');
}

/** SHA-256 of the running executable (/proc/<pid>/exe), or undefined when it is larger than `maxBytes`. */
export function processExeSha256(pid: number, maxBytes: number, procRoot = '/proc'): string | undefined {
  const exe = openProcessExe(pid, maxBytes, procRoot);
  if (!exe) return undefined;
  try {
    return hashOpenedExeSync(exe, maxBytes);
  } finally {
    closeSync(exe.fd);
  }
}

/**
 * The systemd unit the process runs in, from its cgroup (/proc/<pid>/cgroup): the innermost
 * path segment naming a service or a scope, e.g. `0::/system.slice/envoy.service` → envoy.service.
 * cgroup v2's single line (`0::…`) or v1's `name=systemd` hierarchy; nothing outside systemd.
 */
export function processSystemdUnit(pid: number, procRoot = '/proc'): string | undefined {
  let text: string;
  try {
    text = readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8');
  } catch {
    return undefined;
  }
  return systemdUnitOfCgroup(text);
}

export function systemdUnitOfCgroup(text: string): string | undefined {
  const lines = text.split('\n').filter(Boolean);
  const line = lines.find((l) => l.startsWith('0::')) ?? lines.find((l) => l.includes(':name=systemd:'));
  if (!line) return undefined;
  const path = line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
  const units = path.split('/').filter((s) => /^[A-Za-z0-9:_.@\\-]+\.(service|scope)$/.test(s));
  return units[units.length - 1];
}
