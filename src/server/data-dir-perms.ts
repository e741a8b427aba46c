/**
 * Who could have written what the issuer trusts. The data directory holds the CA keys, the
 * admin credential's hash and the store whose policy and tokens the CA then signs for: a user
 * who can write any of it can swap in their own `issuer.db` (their bot, their join rule, their
 * tokens) and have root's issuer sign for it with the real CA (issue #11 item 7).
 *
 * So before the issuer or `sigil ctl` (local mode) opens anything, the directory, `ca/`, and
 * every entry in both must be:
 *   - owned by root or by the user running sigil (anyone else could rewrite or chmod it), and
 *   - not writable by group or others (mode & 022 == 0), and
 * the directory's parent must not let others rename it away (world-writable without the sticky
 * bit). The check is the same as sshd's StrictModes and OpenSSH's secure_filename(): owner and
 * write bits, not read bits (key files also refuse group/other *read*: ./key-file.ts).
 *
 * Honest limits: this is a check before use, not openat(2)-style confinement (Node has none);
 * once the directory itself is ours and not writable by others, its entries cannot be swapped
 * by anyone but us or root, which is what makes the check-then-open window harmless.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SigilError } from '../errors.js';
import { ensureDir } from '../util/atomic-file.js';

const euid = (): number => (process.geteuid ? process.geteuid() : 0);

function describe(st: fs.Stats): string {
  return `mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${st.uid}`;
}

/** The one problem of `st` worth reporting, with the command that fixes it, or undefined. */
function problem(file: string, st: fs.Stats): string | undefined {
  const me = euid();
  const badOwner = st.uid !== 0 && st.uid !== me;
  const writable = (st.mode & 0o022) !== 0;
  if (!badOwner && !writable) return undefined;
  const what = [
    badOwner ? `owned by another user (not root or uid ${me})` : '',
    writable ? 'writable by group or others' : '',
  ]
    .filter(Boolean)
    .join(' and ');
  const fix = [badOwner ? `chown ${me} ${file}` : '', writable ? `chmod go-w ${file}` : '']
    .filter(Boolean)
    .join(' && ');
  // Root running a command on the directory of an issuer that runs as its own user (the package's
  // `sigil`) lands here too: then the fix is to run as that user, not to chown it to root (which
  // would lock the issuer out). Found walking the docs.
  const asOwner =
    badOwner && me === 0
      ? ` If uid ${st.uid} is the user the issuer runs as (the package's units: sigil), run this command as that user instead (sudo -u '#${st.uid}' sigil …). Otherwise:`
      : '';
  return `${file} is ${what} (${describe(st)}); anyone who can write it can make this issuer sign for them.${asOwner} Check it was not tampered with, then run: ${fix}`;
}

function insecure(message: string): SigilError {
  return new SigilError('data_dir_insecure', message);
}

function statOrUndefined(p: string, follow: boolean): fs.Stats | undefined {
  try {
    return follow ? fs.statSync(p) : fs.lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw insecure(`cannot inspect ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Check one entry: a private key must not be a symlink; anything else is judged by its target. */
function checkEntry(file: string): void {
  const lst = statOrUndefined(file, false);
  if (!lst) return;
  if (lst.isSymbolicLink() && file.endsWith('.key')) {
    throw insecure(
      `${file} is a symbolic link; private keys are never read through one. Replace it with the key file itself`,
    );
  }
  const st = lst.isSymbolicLink() ? statOrUndefined(file, true) : lst;
  if (!st) return; // dangling link: whatever reads it fails with its own error
  const p = problem(file, st);
  if (p) throw insecure(p);
}

/**
 * Refuse (`data_dir_insecure`) a data directory that others could have written. Called by
 * `server start` and local `sigil ctl` before anything in it is read.
 */
export function assertDataDirSecure(dir: string): void {
  const abs = path.resolve(dir);
  const st = statOrUndefined(abs, true);
  if (!st) return; // readMeta reports a missing directory as not_initialized
  if (!st.isDirectory()) throw insecure(`${abs} is not a directory`);
  const real = fs.realpathSync(abs);
  const p = problem(real, st);
  if (p) throw insecure(p);
  const parent = path.dirname(real);
  const pst = fs.statSync(parent);
  if ((pst.mode & 0o002) !== 0 && (pst.mode & 0o1000) === 0 /* sticky bit */) {
    throw insecure(
      `${parent}, the parent of the data directory, is world-writable without the sticky bit (${describe(pst)}): anyone can rename ${real} away and put their own in its place. Move the data directory, or run: chmod o-w ${parent}`,
    );
  }
  for (const sub of [real, path.join(real, 'ca')]) {
    let names: string[];
    try {
      names = fs.readdirSync(sub);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw insecure(`cannot list ${sub}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    for (const name of names) checkEntry(path.join(sub, name));
  }
}

/**
 * `server init`: create the directory 0700, or make a pre-existing one safe to initialise. An
 * empty directory we own is tightened to 0700 (mkdir -p left it 0777, say); a non-empty one that
 * others could write is refused, since what is in it may have been planted.
 */
export function prepareDataDir(dir: string): void {
  const abs = path.resolve(dir);
  const st = statOrUndefined(abs, true);
  if (!st) {
    // ensureDir, not mkdirSync({recursive}): Node's retries forever under /proc (util/atomic-file.ts).
    ensureDir(abs, 0o700); // 0700 whatever the umask
  } else {
    if (!st.isDirectory()) throw insecure(`${abs} is not a directory`);
    const mine = st.uid === 0 || st.uid === euid();
    if (mine && fs.readdirSync(abs).length === 0) fs.chmodSync(abs, 0o700);
  }
  assertDataDirSecure(abs);
}
