/**
 * Opening `<data-dir>/agent.db` for reading only (`sigil agent status`): never creating the
 * data directory, the database or SQLite's side files, never migrating (issue #12 item 6).
 * Status pointed at a wrong or not yet used directory must not leave an empty one behind that
 * the real agent (another user, another mode) then trips over.
 *
 * SQLite opened read-only still creates `-wal` and `-shm` next to a WAL database that has none
 * (there are none whenever no agent has it open) — and cannot remove them afterwards. So:
 * - with both side files present (an agent has the database open) it is opened read-only in
 *   place, which reads the latest commits from the WAL and creates nothing;
 * - otherwise the main file is complete (the last connection checkpointed into it) and is
 *   read into memory and opened from there.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { sqliteNativeBinding } from './native-binding.js';
import { SigilError } from '../../errors.js';
import { AGENT_DB_FILE, AGENT_SCHEMA_VERSION, type AgentDb } from './db.js';
import { stateDirParentProblem } from './dir-perms.js';

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
/** SQLite file header bytes 18/19: file format write/read version, 2 = WAL (sqlite.org/fileformat.html §1.3.4). */
const WAL_VERSION_BYTES = [18, 19] as const;

/** The agent database of `dataDir` opened read-only, or undefined when there is none yet (not joined). */
export function openAgentDbReadOnly(dataDir: string): AgentDb | undefined {
  const file = path.join(path.resolve(dataDir), AGENT_DB_FILE);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR')
      return undefined;
    throw new SigilError('internal', `cannot stat ${file}`, { cause: err });
  }
  if (st.isSymbolicLink()) throw new SigilError('unsafe_path', `refusing to open ${file}: it is a symbolic link`);
  if (!st.isFile()) throw new SigilError('unsafe_path', `refusing to open ${file}: it is not a regular file`);
  const planted = readOnlyStateProblem(path.dirname(file), file, st);
  if (planted) throw new SigilError('unsafe_path', planted);
  const live = fs.existsSync(`${file}-wal`) && fs.existsSync(`${file}-shm`);
  let db: AgentDb;
  try {
    db = live
      ? new Database(file, { readonly: true, fileMustExist: true, timeout: 5000, ...sqliteNativeBinding() })
      : fromSnapshot(file);
  } catch (err) {
    if (err instanceof SigilError) throw err;
    throw new SigilError('internal', `cannot open agent state ${file}`, { cause: err });
  }
  try {
    const version = db.pragma('user_version', { simple: true }) as number;
    // An agent that created the file but had not migrated it yet: nothing is stored.
    if (version === 0) {
      db.close();
      return undefined;
    }
    if (version !== AGENT_SCHEMA_VERSION) {
      const what =
        version > AGENT_SCHEMA_VERSION
          ? 'newer than this Sigil supports'
          : 'older than this Sigil: start the agent once to upgrade it';
      throw new SigilError(
        'config_invalid',
        `agent state ${file} has schema version ${version}, ${what} (${AGENT_SCHEMA_VERSION})`,
      );
    }
  } catch (err) {
    db.close();
    if (err instanceof SigilError) throw err;
    const code = (err as { code?: unknown }).code;
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT')
      throw new SigilError('config_invalid', `agent state ${file} is not a valid SQLite database`, { cause: err });
    throw new SigilError('internal', `cannot read agent state ${file}`, { cause: err });
  }
  return db;
}

/**
 * Why state read for display only is refused, or undefined. `sigil agent status` is often run by
 * root for an agent that runs as another user, so it cannot ask, as the agent does
 * (./dir-perms.ts), that the files be its own. It asks that nobody but the directory's owner
 * (the agent's user) could have written them, and that nobody else could have made the
 * directory: no symbolic link at the data directory (the agent refuses one too), a parent others
 * cannot write — or, in a shared parent like /tmp, a directory owned by root or by the caller —
 * the directory, agent.db and its -wal/-shm not writable by group or others, and the files owned
 * by the directory's owner (or root). Otherwise what status shows — identity, expiry, pending
 * renewals — could be another user's invention. `dir`: absolute.
 */
export function readOnlyStateProblem(dir: string, file: string, st: fs.Stats): string | undefined {
  const mode = (x: fs.Stats): string => `mode ${(x.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${x.uid}`;
  const me = process.geteuid ? process.geteuid() : 0;
  const dirSt = fs.lstatSync(dir);
  if (dirSt.isSymbolicLink())
    return `refusing to show agent state from ${dir}: it is a symbolic link (the agent refuses it too)`;
  if (!dirSt.isDirectory()) return `refusing to show agent state from ${dir}: it is not a directory`;
  const parent = fs.realpathSync(path.dirname(dir));
  const parentSt = fs.statSync(parent);
  const parentProblem = stateDirParentProblem(parent, dir, parentSt);
  if (parentProblem) return parentProblem;
  if ((parentSt.mode & 0o022) !== 0 && dirSt.uid !== 0 && dirSt.uid !== me)
    return `refusing to show agent state from ${dir}: its parent ${parent} is writable by others (${mode(parentSt)}), so another user could have made ${dir}; there status reads only a directory owned by root or by you (uid ${me}), and this one is owned by uid ${dirSt.uid}`;
  if ((dirSt.mode & 0o022) !== 0)
    return `refusing to show agent state from ${dir}: the directory is writable by group or others (${mode(dirSt)}), so anyone could have put ${file} there; run: chmod go-w ${dir}`;
  for (const [f, fst] of [[file, st] as const, ...sideFiles(file)]) {
    if (fst.isSymbolicLink() || !fst.isFile()) return `refusing to show agent state ${f}: it is not a regular file`;
    if ((fst.mode & 0o022) !== 0)
      return `refusing to show agent state ${f}: it is writable by group or others (${mode(fst)}); run: chmod 600 ${f}`;
    if (fst.uid !== dirSt.uid && fst.uid !== 0)
      return `refusing to show agent state ${f}: it is owned by uid ${fst.uid}, not by uid ${dirSt.uid} who owns ${dir} (${mode(fst)}); if you did not put it there, remove it`;
  }
  return undefined;
}

/** SQLite's -wal and -shm beside `file`, those that exist, with their lstat. */
function sideFiles(file: string): Array<readonly [string, fs.Stats]> {
  const out: Array<readonly [string, fs.Stats]> = [];
  for (const f of [`${file}-wal`, `${file}-shm`]) {
    try {
      out.push([f, fs.lstatSync(f)]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return out;
}

function fromSnapshot(file: string): AgentDb {
  const bytes = fs.readFileSync(file);
  // A file the agent pre-created (db.ts precreate) but never wrote: an empty, valid database.
  if (bytes.length === 0) return new Database(':memory:', sqliteNativeBinding());
  if (bytes.length < 100 || !bytes.subarray(0, 16).equals(SQLITE_MAGIC))
    throw new SigilError('config_invalid', `agent state ${file} is not a valid SQLite database`);
  // An in-memory database cannot be in WAL mode; the content is the same in rollback mode.
  for (const i of WAL_VERSION_BYTES) if (bytes[i] === 2) bytes[i] = 1;
  return new Database(bytes, { readonly: true, ...sqliteNativeBinding() });
}
