/**
 * Output directories checked before the agent's first network call (issue #12 item 2). A join
 * spends a single-use token and is recorded by the issuer; an output that cannot be written
 * found out only afterwards left a spent token, a recorded join and no files — and
 * `/proc/sigil/identity` even spun in mkdir for ten minutes. So each output's directory must,
 * before anything is sent:
 *
 *   - not be on a pseudo file system (/proc, /sys, /dev, or statfs says procfs, sysfs, cgroup…):
 *     those belong to the kernel and never hold regular files we could rename into place;
 *   - exist as a real directory (not a symlink: util/atomic-file.ts refuses those at write time),
 *     or be creatable: its nearest existing ancestor is a writable directory;
 *   - not be world-writable (./output-dir.ts says why);
 *   - take a probe file written the way outputs are (temp, fsync, rename) and removed again.
 *
 * Every refusal is `config_invalid` with one line naming the output and the reason.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SigilError } from '../../errors.js';
import { ensureDir, writeFilesAtomic } from '../../util/atomic-file.js';
import type { AgentConfig } from '../config.js';
import { worldWritable } from './output-dir.js';

/** Both the identity and the credential outputs create their directories 0755 (identity.ts, credential-output.ts). */
const DIR_MODE = 0o755;

const PSEUDO_ROOTS = ['/proc', '/sys', '/dev'];

/** statfs(2) f_type of file systems that are views of the kernel, not storage (linux/magic.h). */
const PSEUDO_FS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'procfs'],
  [0x62656572, 'sysfs'],
  [0x1cd1, 'devpts'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0xcafe4a11, 'bpf'],
  [0x62656570, 'configfs'],
  [0x6165676c, 'pstore'],
  [0xde5e81e4, 'efivarfs'],
  [0x19800202, 'mqueue'],
]);

/** Check (and create, as the first write would) every output directory of `cfg`; throws config_invalid. */
export function checkOutputPaths(
  cfg: Pick<AgentConfig, 'outputs' | 'credentialOutputs' | 'source'>,
  opts: { create: boolean } = { create: true },
): void {
  const all = [...cfg.outputs, ...cfg.credentialOutputs].map((o) => ({ type: o.type, path: o.path }));
  for (const o of all) {
    const why = outputDirProblem(o.path, opts);
    if (why) throw new SigilError('config_invalid', `${cfg.source}: output ${o.type} ${o.path}: ${why}`);
  }
}

/** Why `dir` cannot be an output directory, or undefined when it can. */
export function outputDirProblem(dir: string, opts: { create: boolean }): string | undefined {
  const abs = path.resolve(dir);
  const pseudo = underPseudoRoot(abs);
  if (pseudo) return pseudoMessage(pseudo);
  const found = nearestExisting(abs);
  if (typeof found === 'string') return found;
  const { existing, missing } = found;
  // A symlinked ancestor (/var -> /private/var) is allowed, so judge where it really leads.
  const real = path.join(fs.realpathSync(existing), ...missing);
  const pseudoReal = underPseudoRoot(real);
  if (pseudoReal) return `${pseudoMessage(pseudoReal)} (it resolves to ${real})`;
  const fsType = pseudoFsOf(existing);
  if (fsType)
    return `it is on ${fsType}, a pseudo file system of the kernel that cannot hold credential files; choose a directory on real storage, e.g. /run/sigil or /var/lib/sigil`;
  if (missing.length > 0) {
    try {
      fs.accessSync(existing, fs.constants.W_OK | fs.constants.X_OK);
    } catch (e) {
      return `the directory does not exist and cannot be created: ${existing} is not writable (${(e as NodeJS.ErrnoException).code ?? 'error'})`;
    }
    if (!opts.create) return undefined;
    try {
      ensureDir(abs, DIR_MODE);
    } catch (e) {
      return `the directory cannot be created: ${(e as Error).message}`;
    }
  }
  const ww = worldWritable(abs, fs.statSync(abs));
  if (ww) return ww;
  return opts.create ? probe(abs) : undefined;
}

function underPseudoRoot(abs: string): string | undefined {
  return PSEUDO_ROOTS.find((r) => abs === r || abs.startsWith(`${r}/`));
}

function pseudoMessage(root: string): string {
  return `it is under ${root}, a pseudo file system of the kernel that cannot hold credential files; choose a directory on real storage, e.g. /run/sigil or /var/lib/sigil`;
}

/** The nearest ancestor (or `abs` itself) that exists, and the components below it; or why the path is refused. */
function nearestExisting(abs: string): { existing: string; missing: string[] } | string {
  const missing: string[] = [];
  for (let p = abs; ; p = path.dirname(p)) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && path.dirname(p) !== p) {
        missing.unshift(path.basename(p));
        continue;
      }
      if (code === 'ENOTDIR') return 'a component of the path is not a directory';
      return `cannot inspect ${p}: ${code ?? 'error'}`;
    }
    if (p === abs && st.isSymbolicLink())
      return `it is a symbolic link (to ${safeReadlink(p)}); give the real directory instead`;
    // Ancestors may be symlinks to directories; the output directory itself may not.
    const target = st.isSymbolicLink() ? statOrUndefined(p) : st;
    if (!target?.isDirectory()) return p === abs ? 'it exists and is not a directory' : `${p} is not a directory`;
    return { existing: p, missing };
  }
}

function pseudoFsOf(dir: string): string | undefined {
  try {
    return PSEUDO_FS.get(Number(fs.statfsSync(dir).type));
  } catch {
    return undefined;
  }
}

/** Write and remove a file the way outputs are written (temp + fsync + rename), so a read-only mount or a full disk shows now. */
function probe(dir: string): string | undefined {
  const name = `.sigil-probe-${randomBytes(6).toString('hex')}`;
  try {
    writeFilesAtomic(dir, [{ name, data: 'sigil output probe\n', mode: 0o600 }]);
    fs.unlinkSync(path.join(dir, name));
    return undefined;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return `a test file could not be written and removed in it: ${err instanceof SigilError ? err.message : (err.code ?? err.message)}`;
  }
}

function safeReadlink(p: string): string {
  try {
    return fs.readlinkSync(p);
  } catch {
    return '?';
  }
}

function statOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
}
