/**
 * The issuer's private key files (CA keys, SSH CA keys, the JWT signing key): PKCS#8 PEM,
 * mode 0600, never read through a symlink, never readable by group or others.
 *
 * {@link ensureKeyFile} creates a missing key exactly once, even when two processes start at the
 * same moment (an issuer and a `sigil ctl ca export`): the key is written and fsynced to a temp
 * file, then link(2)ed to its name — link fails with EEXIST instead of replacing, so the first
 * writer wins and everyone else reads the winner's key. A reader never sees a partial key.
 */
import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SigilError } from '../errors.js';

const { O_CREAT, O_EXCL, O_WRONLY, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_DIRECTORY } = fs.constants;

/**
 * Read a private key, refusing a symlink or a key file others can read or write. The file is
 * opened with O_NOFOLLOW and every check is made on that open descriptor (fstat), so a link or
 * another file swapped in between a check and the read is never what gets loaded.
 */
export function readPrivateKeyFile(file: string): KeyObject {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted at the name must not hang the issuer in open(2).
    fd = fs.openSync(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // Linux answers ELOOP for a final-component symlink under O_NOFOLLOW (open(2)).
    if (code === 'ELOOP' || code === 'EMLINK')
      throw new SigilError('unsafe_path', `${file} is a symbolic link; refusing to load a CA key through it`);
    throw new SigilError('config_invalid', `cannot open the key file ${file}: ${code ?? (e as Error).message}`, {
      cause: e,
    });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new SigilError('unsafe_path', `${file} is not a regular file`);
    if ((st.mode & 0o077) !== 0)
      throw new SigilError(
        'config_invalid',
        `${file} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${file}`,
      );
    assertOwnedByUs(file, st);
    try {
      return createPrivateKey(fs.readFileSync(fd));
    } catch (e) {
      throw new SigilError('config_invalid', `${file} does not hold a readable private key`, { cause: e });
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** A trust-bearing file owned by neither root nor us may have been planted (data_dir_insecure). */
export function assertOwnedByUs(file: string, st: fs.Stats): void {
  const me = process.geteuid ? process.geteuid() : 0;
  if (st.uid !== 0 && st.uid !== me)
    throw new SigilError(
      'data_dir_insecure',
      `${file} is owned by uid ${st.uid}, not root or uid ${me} (mode ${(st.mode & 0o777).toString(8)}); check it was not replaced, then run: chown ${me} ${file}`,
    );
}

/** Return the key at `file`, creating it with `generate()` first if there is none. */
export function ensureKeyFile(file: string, generate: () => KeyObject): { key: KeyObject; created: boolean } {
  if (fs.existsSync(file) || isDanglingLink(file)) return { key: readPrivateKeyFile(file), created: false };
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${randomBytes(6).toString('hex')}`);
  const pem = generate().export({ type: 'pkcs8', format: 'pem' }) as string;
  let created = false;
  try {
    const fd = fs.openSync(tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0o600);
    try {
      fs.writeSync(fd, pem);
      fs.fchmodSync(fd, 0o600);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(tmp, file);
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  } catch (e) {
    throw new SigilError(
      'config_invalid',
      `cannot create the key file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      { cause: e },
    );
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  if (created) {
    const dfd = fs.openSync(dir, O_RDONLY | O_DIRECTORY);
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  }
  return { key: readPrivateKeyFile(file), created };
}

function isDanglingLink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}
