/**
 * The directory an output writes into. Created 0755 when missing; an existing one that is a
 * symlink is refused (util/atomic-file.ts), and so is one that is world-writable.
 *
 * Refused, not warned about (issue #11 item 7): in a world-writable directory any local user can
 * replace `bundle.pem` with their own CA between two rotations — every workload that reads it
 * then trusts the attacker's peers — or pre-create names, fill it, and race the workload's
 * reads; the sticky bit only stops them from renaming *our* files, not from planting theirs
 * first. A warning in a log is read after the fact; a refusal names the fix (one chmod) before a
 * single credential lands there. The identity itself is safe in the agent's store either way:
 * the agent writes the outputs again on its next run.
 *
 * The same rules are checked before the agent's first network call (./check-path.ts), so a bad
 * directory is a config error, not a join spent for nothing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SigilError } from '../../errors.js';
import { ensureDir } from '../../util/atomic-file.js';

export function ensureOutputDir(dir: string, mode: number): void {
  ensureDir(dir, mode);
  const why = worldWritable(dir, fs.statSync(dir));
  if (why) throw new SigilError('unsafe_path', why);
}

/** Why `dir` (with stat `st`) is refused as world-writable, or undefined when it is not. */
export function worldWritable(dir: string, st: fs.Stats): string | undefined {
  if ((st.mode & 0o002) === 0) return undefined;
  const abs = path.resolve(dir);
  return `output directory ${abs} is world-writable (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${st.uid}): any local user could replace the credentials or the trust bundle in it; run: chmod o-w ${abs}`;
}
