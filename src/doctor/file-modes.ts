/**
 * Mode and owner findings shared by the agent and issuer checks. Doctor reads and reports; it
 * never chmods anything itself — the fix names the command, the operator runs it after checking
 * that nothing was planted.
 */
import fs from 'node:fs';
import path from 'node:path';

export const euid = (): number => (process.geteuid ? process.geteuid() : 0);

export const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

export function lstatOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch (e) {
    if (['ENOENT', 'ENOTDIR'].includes((e as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw e;
  }
}

/** Quote a path for a shell command only when it needs it. */
export const sh = (p: string): string => (/^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`);

/**
 * Whether the running user may write `p` (an existing path), by access(2): that also accounts
 * for ACLs, read-only mounts and root.
 */
export function writable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The nearest existing ancestor of `p` (where mkdir -p would start creating). */
export function existingAncestor(p: string): string {
  let cur = path.resolve(p);
  while (!fs.existsSync(cur)) {
    const parent = path.dirname(cur);
    if (parent === cur) return cur;
    cur = parent;
  }
  return cur;
}
