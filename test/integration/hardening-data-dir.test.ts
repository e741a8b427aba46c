/**
 * Issue #11 item 7: the issuer data directory's mode and ownership are enforced. Reproduces the
 * review's attack: a 0777 data directory where user `nobody` swapped in its own issuer.db, which
 * root's `server start` then used. Tests run as root, so "another user" is uid 65534 (chown).
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  readdirSync,
  renameSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { initDataDir, loadCaMaterial, openIssuerStores, paths } from '../../src/server/data-dir.js';
import { readPrivateKeyFile } from '../../src/server/key-file.js';
import { openSqliteStores } from '../../src/server/store/sqlite/index.js';
import { SIGIL, sigil, tempDir } from '../helpers/cli.js';

const NOBODY = 65534;
const dirs: Array<{ cleanup(): void }> = [];
function fresh(): string {
  const t = tempDir('sigil-hard-dd-');
  dirs.push(t);
  return t.path;
}
afterEach(() => {
  for (const d of dirs.splice(0)) d.cleanup();
});

function refusal(fn: () => unknown): SigilError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal, nothing was thrown');
}

/** An initialised issuer in <tmp>/issuer (so the test owns the parent too). */
function issuer(): string {
  const dir = join(fresh(), 'issuer');
  initDataDir(dir, 'example.org');
  return dir;
}

/** `nobody` makes its own issuer.db with its own policy and puts it in place of the real one. */
async function swapInForeignDb(dir: string): Promise<void> {
  const evil = join(dir, '.evil.db');
  const s = openSqliteStores(evil);
  await s.close();
  for (const f of readdirSync(dir)) if (f.startsWith('issuer.db')) unlinkSync(join(dir, f));
  renameSync(evil, paths(dir).db);
  chownSync(paths(dir).db, NOBODY, NOBODY);
}

beforeAll(() => {
  if (process.geteuid?.() !== 0)
    throw new Error('these tests chown files to uid 65534 and must run as root (the CI container does)');
});

describe('data directory permissions (issue #11 item 7)', () => {
  it('init creates the data directory 0700 (the store is 0600: store/sqlite/db.ts)', () => {
    const dir = issuer();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(paths(dir).db).mode & 0o777).toBe(0o600);
  });

  it('init tightens a pre-existing empty 0777 directory to 0700', () => {
    const dir = join(fresh(), 'issuer');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    initDataDir(dir, 'example.org');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('init refuses a 0777 directory that already holds files another user planted', () => {
    const dir = join(fresh(), 'issuer');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    writeFileSync(join(dir, 'issuer.db'), '');
    chownSync(join(dir, 'issuer.db'), NOBODY, NOBODY);
    const e = refusal(() => initDataDir(dir, 'example.org'));
    expect(e.code).toBe('data_dir_insecure');
    expect(e.message).toContain(dir);
    expect(e.message).toMatch(/mode 0777/);
  });

  it('refuses the swap: a 0777 directory with a foreign issuer.db (server start and ctl)', async () => {
    const dir = issuer();
    chmodSync(dir, 0o777);
    await swapInForeignDb(dir);
    for (const open of [() => loadCaMaterial(dir), () => openIssuerStores(dir)]) {
      const e = refusal(open);
      expect(e.code).toBe('data_dir_insecure');
      expect(e.message).toContain(`${dir} is writable by group or others (mode 0777, owner uid 0)`);
      expect(e.message).toContain(`chmod go-w ${dir}`);
    }
    chmodSync(dir, 0o700); // the directory fixed, the planted file is still there
    const e = refusal(() => openIssuerStores(dir));
    expect(e.code).toBe('data_dir_insecure');
    expect(e.message).toContain(`${paths(dir).db} is owned by another user (not root or uid 0)`);
    expect(e.message).toContain(`uid ${NOBODY}`);
    expect(e.message).toContain(`chown 0 ${paths(dir).db}`);
    // Root on the directory of an issuer run as its own user: run as that user, not chown to root.
    expect(e.message).toContain(`run this command as that user instead (sudo -u '#${NOBODY}' sigil …)`);
  });

  it('refuses a group-writable issuer.db-wal, ca/ directory or certificate', () => {
    for (const target of ['issuer.db-wal', 'ca', 'ca/root.pem', 'admin.token']) {
      const dir = issuer();
      const f = join(dir, target);
      if (target === 'issuer.db-wal') writeFileSync(f, '', { mode: 0o600 });
      chmodSync(f, (statSync(f).mode & 0o777) | 0o020);
      const e = refusal(() => openIssuerStores(dir));
      expect(e.code, target).toBe('data_dir_insecure');
      expect(e.message).toContain(f);
    }
  });

  it('refuses a key file owned by another user', () => {
    const dir = issuer();
    chownSync(paths(dir).intKey, NOBODY, NOBODY);
    expect(refusal(() => loadCaMaterial(dir)).code).toBe('data_dir_insecure');
  });

  it('refuses a symlinked key file, at start and when read directly (O_NOFOLLOW)', () => {
    const dir = issuer();
    const p = paths(dir);
    const elsewhere = join(fresh(), 'int.key');
    copyFileSync(p.intKey, elsewhere);
    chmodSync(elsewhere, 0o600);
    unlinkSync(p.intKey);
    symlinkSync(elsewhere, p.intKey);
    const e = refusal(() => loadCaMaterial(dir));
    expect(e.code).toBe('data_dir_insecure');
    expect(e.message).toMatch(/symbolic link/);
    const direct = refusal(() => readPrivateKeyFile(p.intKey));
    expect(direct.code).toBe('unsafe_path');
  });

  it('refuses a data directory whose parent others can rename it out of', async () => {
    const parent = fresh();
    const dir = join(parent, 'issuer');
    initDataDir(dir, 'example.org');
    chmodSync(parent, 0o777); // no sticky bit
    expect(refusal(() => openIssuerStores(dir)).message).toMatch(/world-writable without the sticky bit/);
    chmodSync(parent, 0o1777); // like /tmp: fine
    await openIssuerStores(dir).close();
  });

  it('CLI: server start and ctl print error[data_dir_insecure] and exit 2; init under umask 002 still starts', async () => {
    const dir = join(fresh(), 'issuer');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    // Under a lax umask, init must still produce a directory that start and ctl accept.
    const init = spawnSync(
      'sh',
      [
        '-c',
        'umask 002 && exec "$0" "$1" server init --data-dir "$2" --trust-domain example.org',
        process.execPath,
        SIGIL,
        dir,
      ],
      { encoding: 'utf8' },
    );
    expect(init.status, init.stderr).toBe(0);
    const ok = await sigil(['ctl', '--data-dir', dir, 'bots', 'ls']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    chmodSync(dir, 0o777);
    await swapInForeignDb(dir);
    const start = await sigil(['server', 'start', '--data-dir', dir, '--listen', '127.0.0.1:0']);
    expect(start.code).toBe(2);
    expect(start.stderr).toMatch(
      /^error\[data_dir_insecure\]: .* is writable by group or others \(mode 0777, owner uid 0\).*run: chmod go-w /,
    );
    expect(start.stderr).not.toMatch(/listening/);
    const ctl = await sigil(['ctl', '--data-dir', dir, 'bots', 'ls']);
    expect(ctl.code).toBe(2);
    expect(ctl.stderr).toMatch(/^error\[data_dir_insecure\]: /);
  });
});
