/**
 * Who could have written — or can read — the agent's state. `agent.db` holds software private
 * keys, the pinned issuer and key references (a PKCS#11 module path the agent, often root, will
 * load), so before the agent opens it:
 *   - the data directory, opened without following a symlink, must be owned by the user running
 *     the agent or by root, and not writable by group or others: anyone who can write it can
 *     rename `agent.db` away and put their own database in its place;
 *   - its parent must not let others rename the data directory away (world-writable without the
 *     sticky bit);
 *   - `agent.db`, `agent.db-wal` and `agent.db-shm` must be regular files owned by the user
 *     running the agent and not writable by group or others: a file planted by another user
 *     stays theirs whatever mode we give it, so they would read every key stored in it.
 * Group/other *read* of a file we own is tightened to 0600 (db.ts), not refused: nobody else
 * could have written it, and what it held before is already out.
 *
 * Each refusal is `unsafe_path` and names the path, the check that failed, the mode and owner
 * found and the command that fixes it (like the issuer's server/data-dir-perms.ts). The check is
 * the same as OpenSSH's secure_filename(): owner and write bits; POSIX ACLs are not read.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SigilError } from '../../errors.js';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = fs.constants;

const euid = (): number => (process.geteuid ? process.geteuid() : 0);
const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');
const found = (st: fs.Stats): string => `mode ${octal(st.mode)}, owner uid ${st.uid}`;

function refuse(message: string, cause?: unknown): SigilError {
  return new SigilError('unsafe_path', message, cause === undefined ? undefined : { cause });
}

/** Why the data directory `dir` (stat `st`) is refused, or undefined when it is safe. */
export function stateDirProblem(dir: string, st: fs.Stats): string | undefined {
  const me = euid();
  const badOwner = st.uid !== me && st.uid !== 0;
  const writable = (st.mode & 0o022) !== 0;
  if (!badOwner && !writable) return undefined;
  const what = [
    badOwner ? `it is owned by uid ${st.uid}, not by root or uid ${me} running the agent` : '',
    writable ? 'it is writable by group or others' : '',
  ]
    .filter(Boolean)
    .join(' and ');
  const fix = [badOwner ? `chown ${me} ${dir}` : '', writable ? `chmod go-w ${dir}` : ''].filter(Boolean).join(' && ');
  return `refusing to use agent state directory ${dir}: ${what} (${found(st)}); another user could read or replace agent.db and the keys in it. Check nothing was planted in it, then run: ${fix}`;
}

/** Why the parent `parent` (stat `st`) of the data directory is refused, or undefined. */
export function stateDirParentProblem(parent: string, dir: string, st: fs.Stats): string | undefined {
  if ((st.mode & 0o002) === 0 || (st.mode & 0o1000) !== 0) return undefined;
  return `refusing to use agent state directory ${dir}: its parent ${parent} is world-writable without the sticky bit (${found(st)}); anyone can rename ${dir} away and put their own in its place. Move data_dir, or run: chmod o-w ${parent}`;
}

/**
 * Why the state file `file` (lstat `st`: `agent.db` or a side file) is refused, or undefined.
 * Group/other read bits are not a refusal here: the caller tightens them (module comment).
 */
export function stateFileProblem(file: string, st: fs.Stats): string | undefined {
  if (st.isSymbolicLink()) return `refusing to open ${file}: it is a symbolic link`;
  if (!st.isFile()) return `refusing to open ${file}: it is not a regular file`;
  const me = euid();
  const badOwner = st.uid !== me;
  const writable = (st.mode & 0o022) !== 0;
  if (!badOwner && !writable) return undefined;
  const what = [
    badOwner
      ? `it is owned by uid ${st.uid}, not by uid ${me} running the agent (its owner can read every key stored in it)`
      : '',
    writable ? 'it is writable by group or others (anyone could have rewritten its identity or key references)' : '',
  ]
    .filter(Boolean)
    .join(' and ');
  return `refusing to open agent state ${file}: ${what} (${found(st)}). If you did not put it there, remove it (the agent joins again); if it is the agent's own, run: chown ${me} ${file} && chmod 600 ${file}`;
}

/**
 * Open `dir` without following a symlink and refuse it unless it is safe (module comment).
 * Returns the resolved path the caller must use from then on.
 */
export function assertStateDirSafe(dir: string): string {
  const abs = path.resolve(dir);
  let fd: number;
  try {
    fd = fs.openSync(abs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw refuse(`refusing to use agent state directory ${abs}: it is a symbolic link`, err);
    if (code === 'ENOTDIR') throw refuse(`refusing to use agent state directory ${abs}: it is not a directory`, err);
    throw refuse(`cannot open agent state directory ${abs}: ${code ?? String(err)}`, err);
  }
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const p = stateDirProblem(abs, st);
  if (p) throw refuse(p);
  const parent = path.dirname(fs.realpathSync(abs));
  if (parent !== abs) {
    const pp = stateDirParentProblem(parent, abs, fs.statSync(parent));
    if (pp) throw refuse(pp);
  }
  return abs;
}

/** Refuse a state file `file` of an open descriptor or lstat (see {@link stateFileProblem}). */
export function assertStateFileSafe(file: string, st: fs.Stats): void {
  const p = stateFileProblem(file, st);
  if (p) throw refuse(p);
}
