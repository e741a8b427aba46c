/**
 * What /proc says about a local process (proc(5)), for the Workload API's caller attestation.
 * Every read names the pid it was made for; the caller (./attest.ts) brackets them with two
 * reads of the start time, so facts of a process that exited and whose pid was reused are never
 * attributed to the process that connected.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, readlinkSync, readSync } from 'node:fs';

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
 * SHA-256 of the running executable, read through /proc/<pid>/exe (the very inode the process
 * runs, even if the path was replaced since), or undefined when it is larger than `maxBytes`.
 */
export function processExeSha256(pid: number, maxBytes: number, procRoot = '/proc'): string | undefined {
  let fd: number;
  try {
    fd = openSync(`${procRoot}/${pid}/exe`, 'r');
  } catch {
    return undefined;
  }
  try {
    const size = fstatSync(fd).size;
    if (size > maxBytes) return undefined;
    const hash = createHash('sha256');
    const buf = Buffer.alloc(1 << 20);
    let total = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      total += n;
      if (total > maxBytes) return undefined;
      hash.update(buf.subarray(0, n));
    }
    return hash.digest('hex');
  } finally {
    closeSync(fd);
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
