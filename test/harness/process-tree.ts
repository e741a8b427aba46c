/**
 * A process and its descendants, read from /proc (Linux): what a hung test worker has started.
 * Used by the hang guard to print the subtree and to stop all of it — a worker killed alone would
 * leave its swtpm, mosquitto or postgres running, holding ports and pipes.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcEntry {
  pid: number;
  ppid: number;
  /** One-letter state from /proc/PID/stat: R running, S sleeping, D uninterruptible, Z zombie… */
  state: string;
  /** The kernel function a sleeping process waits in (/proc/PID/wchan), '' when unknown. */
  wchan: string;
  cmd: string;
}

function readProc(pid: number): ProcEntry | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: the fields after it start at the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    let wchan = '';
    try {
      wchan = readFileSync(`/proc/${pid}/wchan`, 'utf8');
    } catch {
      // not readable on every kernel
    }
    return { pid, ppid: Number(rest[1]), state: rest[0] ?? '?', wchan: wchan === '0' ? '' : wchan, cmd };
  } catch {
    return undefined; // exited while we looked
  }
}

/** `root` and every process below it, parents before children, each with its depth. */
export function processTree(root: number): { entry: ProcEntry; depth: number }[] {
  const all: ProcEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const e = readProc(Number(name));
    if (e) all.push(e);
  }
  const children = new Map<number, ProcEntry[]>();
  for (const e of all) children.set(e.ppid, [...(children.get(e.ppid) ?? []), e]);
  const top = all.find((e) => e.pid === root);
  if (!top) return [];
  const out: { entry: ProcEntry; depth: number }[] = [];
  const walk = (e: ProcEntry, depth: number): void => {
    out.push({ entry: e, depth });
    for (const c of children.get(e.pid) ?? []) walk(c, depth + 1);
  };
  walk(top, 0);
  return out;
}

/** One line per process, indented by depth, as `ps --forest` would show it. */
export function formatTree(tree: { entry: ProcEntry; depth: number }[]): string {
  return tree
    .map(({ entry: e, depth }) => `${'  '.repeat(depth)}${e.pid} ${e.state} ${e.wchan || '-'} ${e.cmd.slice(0, 200)}`)
    .join('\n');
}
