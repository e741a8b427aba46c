/**
 * Crash-safe, symlink-safe file writes for everything the agent puts on disk (credentials,
 * trust bundles). A reader sees either the old file or the new one, never a torn write, and a
 * power cut leaves one of the two on disk, because we:
 *
 *   1. create `<dir>/.<name>.tmp-<random>` with O_CREAT|O_EXCL|O_NOFOLLOW (never reuses or
 *      follows an existing path, so a planted symlink cannot redirect the write),
 *   2. write, fchmod/fchown (the umask must not decide a key file's mode), fsync the data,
 *   3. rename(2) over the target (atomic within one file system; rename replaces a symlink at
 *      the target rather than following it), then fsync the directory so the rename itself is
 *      durable (POSIX: a rename is only persistent once the directory entry is flushed).
 *
 * We also *refuse* targets that are symlinks, directories or other non-regular files, and a
 * parent directory that is itself a symlink: on a shared host, a writable path that points
 * elsewhere is the classic way to make a root-run agent overwrite /etc/shadow or leak a key.
 * Only the immediate directory is checked (lstat), not every ancestor: legitimate layouts often
 * have symlinked ancestors (/var -> /private/var). Node has no openat(2), so there remains a
 * check-then-use window on the directory itself; whoever can swap the directory already needs
 * write access to its parent, and the O_NOFOLLOW temp + rename still never write *through* a
 * link at the file name.
 *
 * All functions are synchronous: the writes are small and callers want "done or threw".
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SigilError } from '../errors.js';

const { O_CREAT, O_EXCL, O_WRONLY, O_NOFOLLOW, O_RDONLY, O_DIRECTORY } = fs.constants;

export interface FileOwner {
  uid?: number;
  gid?: number;
}

export interface AtomicWriteOptions extends FileOwner {
  /** Permission bits, e.g. 0o600; applied with fchmod so the process umask cannot widen/narrow them. */
  mode: number;
}

export interface AtomicFile {
  /** A plain file name inside the directory (no separators). */
  name: string;
  data: Buffer | string;
  mode: number;
}

/** Atomically replace `target` with `data`. See the module comment for the guarantees. */
export function writeFileAtomic(target: string, data: Buffer | string, opts: AtomicWriteOptions): void {
  const abs = path.resolve(target);
  const owner: FileOwner = {};
  if (opts.uid !== undefined) owner.uid = opts.uid;
  if (opts.gid !== undefined) owner.gid = opts.gid;
  writeFilesAtomic(path.dirname(abs), [{ name: path.basename(abs), data, mode: opts.mode }], owner);
}

/**
 * Write a *set* of files in one directory so that readers do not see, say, a new certificate
 * next to an old key. All temp files are written and fsynced first; only then are they renamed
 * into place, in the order given, and the directory fsynced once. A failure before the first
 * rename changes nothing.
 *
 * Honest limits: POSIX has no multi-file atomic rename, so between the first and the last
 * rename (a few microseconds, no I/O wait since the data is already synced) a reader can
 * observe a mix of old and new files. Callers order the list so that the file readers reload
 * on (the certificate) comes last, i.e. key before cert; a reader that must be exact should
 * check that key and cert match and retry. A crash *between* renames can leave that mix on
 * disk; the agent rewrites the whole set from its database on start, which repairs it. If a
 * rename fails midway, the files already renamed stay (they are complete files) and the
 * remaining temps are removed.
 */
export function writeFilesAtomic(dir: string, files: ReadonlyArray<AtomicFile>, owner: FileOwner = {}): void {
  const absDir = path.resolve(dir);
  const seen = new Set<string>();
  for (const f of files) {
    assertPlainName(absDir, f.name);
    assertMode(f.mode);
    if (seen.has(f.name)) throw new TypeError(`writeFilesAtomic: ${f.name} is listed twice`);
    seen.add(f.name);
  }
  const targets = files.map((f) => path.join(absDir, f.name));

  // Temp paths still on disk; an entry is cleared once renamed so cleanup never unlinks a
  // file that has become a real target.
  const temps: Array<string | undefined> = [];
  let current = absDir;
  try {
    assertSafeDir(absDir);
    for (const t of targets) {
      current = t;
      assertSafeTarget(t);
    }
    for (const f of files) {
      current = path.join(absDir, f.name);
      writeTemp(absDir, f, owner, temps);
    }
    for (let i = 0; i < files.length; i++) {
      current = targets[i]!;
      // Re-check right before the rename to narrow the window in which a link could appear.
      assertSafeTarget(current);
      fs.renameSync(temps[i]!, current);
      temps[i] = undefined;
    }
    current = absDir;
    fsyncDir(absDir);
  } catch (err) {
    for (const t of temps) {
      if (t === undefined) continue;
      try {
        fs.unlinkSync(t);
      } catch {
        // Best effort: the temp may not exist if open() itself failed.
      }
    }
    throw asSigilError(err, current);
  }
}

/**
 * `mkdir -p` that refuses a final component that is a symlink or a non-directory. A directory
 * we create gets exactly `mode` (fchmod, not subject to the umask); an existing one keeps its
 * mode, since an operator may have set it deliberately. Intermediate directories are created
 * with `mode` minus the umask.
 */
export function ensureDir(dirPath: string, mode: number): void {
  assertMode(mode);
  const abs = path.resolve(dirPath);
  try {
    const existing = lstatOrUndefined(abs);
    if (existing) {
      assertDirStat(abs, existing);
      return;
    }
    mkdirEach(abs, mode);
    // Open without following links so a dir swapped for a symlink after mkdir is refused, and
    // chmod through the fd so the check and the chmod concern the same inode.
    const fd = fs.openSync(abs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    try {
      fs.fchmodSync(fd, mode);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    throw asSigilError(err, abs);
  }
}

/**
 * `mkdir -p` without Node's `{ recursive: true }`, which retries forever when mkdir(2) answers
 * ENOENT under a parent that exists: procfs does exactly that (`/proc/sigil/identity` kept an
 * agent at 93% CPU for ten minutes, issue #12). Here each missing component gets one mkdir(2),
 * from the nearest existing ancestor down, and any error but EEXIST ends it — no retry loop.
 */
function mkdirEach(abs: string, mode: number): void {
  const missing: string[] = [];
  for (let p = abs; lstatOrUndefined(p) === undefined; p = path.dirname(p)) {
    missing.unshift(p);
    if (path.dirname(p) === p) break;
  }
  for (const dir of missing) {
    try {
      fs.mkdirSync(dir, { mode });
    } catch (err) {
      // Someone else made it meanwhile: fine if it is a real directory (ensureDir opens it O_DIRECTORY|O_NOFOLLOW next).
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

function writeTemp(dir: string, f: AtomicFile, owner: FileOwner, temps: Array<string | undefined>): void {
  const tmp = path.join(dir, `.${f.name}.tmp-${randomBytes(6).toString('hex')}`);
  const fd = fs.openSync(tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, f.mode);
  temps.push(tmp);
  try {
    const buf = typeof f.data === 'string' ? Buffer.from(f.data, 'utf8') : f.data;
    let off = 0;
    while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
    fs.fchmodSync(fd, f.mode);
    if (owner.uid !== undefined || owner.gid !== undefined) {
      // -1 leaves that id unchanged (chown(2)).
      fs.fchownSync(fd, owner.uid ?? -1, owner.gid ?? -1);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** fsync a directory, so that renames and creations in it survive a power loss. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function assertSafeDir(dir: string): void {
  const st = lstatOrUndefined(dir);
  if (!st) throw new SigilError('config_invalid', `directory ${dir} does not exist`);
  assertDirStat(dir, st);
}

function assertDirStat(dir: string, st: fs.Stats): void {
  if (st.isSymbolicLink())
    throw new SigilError('unsafe_path', `refusing to use ${dir}: the directory is a symbolic link`);
  if (!st.isDirectory()) throw new SigilError('unsafe_path', `refusing to use ${dir}: it is not a directory`);
}

function assertSafeTarget(target: string): void {
  const st = lstatOrUndefined(target);
  if (!st) return;
  if (st.isSymbolicLink()) throw new SigilError('unsafe_path', `refusing to write ${target}: it is a symbolic link`);
  if (st.isDirectory()) throw new SigilError('unsafe_path', `refusing to write ${target}: it is a directory`);
  if (!st.isFile()) throw new SigilError('unsafe_path', `refusing to write ${target}: it is not a regular file`);
}

function assertPlainName(dir: string, name: string): void {
  if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
    throw new SigilError('unsafe_path', `refusing to write ${JSON.stringify(name)} in ${dir}: not a plain file name`);
  }
}

function assertMode(mode: number): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new TypeError(`invalid file mode ${String(mode)}`);
}

function lstatOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Our own refusals pass through; an OS error becomes a coded error that names the path. */
function asSigilError(err: unknown, p: string): SigilError {
  if (err instanceof SigilError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ELOOP')
    return new SigilError('unsafe_path', `refusing to use ${p}: it is a symbolic link`, { cause: err });
  if (code === 'EISDIR')
    return new SigilError('unsafe_path', `refusing to write ${p}: it is a directory`, { cause: err });
  if (code === 'ENOTDIR')
    return new SigilError('unsafe_path', `refusing to use ${p}: a path component is not a directory`, { cause: err });
  // A path that cannot be written will not become writable by retrying: not 'internal' (retried).
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOENT')
    return new SigilError('unsafe_path', `cannot write ${p}: ${code}`, { cause: err });
  return new SigilError(
    'internal',
    `cannot write ${p}: ${code ?? (err instanceof Error ? err.message : String(err))}`,
    { cause: err },
  );
}

/**
 * Create `target` with `data` only if no file of that name exists: written to a temp file and
 * fsynced, then hard-linked into place (link(2) fails with EEXIST, and never follows a link at
 * the name), so an existing file is never replaced and a reader never sees a torn one. When two
 * processes race, one wins and the other gets false and reads the winner's file.
 */
export function createFileExclusive(target: string, data: string, mode: number): boolean {
  assertMode(mode);
  const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = fs.openSync(tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, mode);
  try {
    fs.fchmodSync(fd, mode);
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.linkSync(tmp, target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  try {
    fsyncDir(path.dirname(path.resolve(target)));
  } catch {
    // Directory fsync is best effort (not supported everywhere); the file itself is synced.
  }
  return true;
}
