import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { ensureDir, writeFileAtomic, writeFilesAtomic } from '../../../src/util/atomic-file.js';

let tmp: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-atomic-'));
});

afterEach(() => {
  vi.restoreAllMocks();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Leftover temp files have the `.<name>.tmp-` prefix. */
function temps(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.includes('.tmp-'));
}

function mode(p: string): number {
  return fs.statSync(p).mode & 0o7777;
}

function expectCode(fn: () => void, code: string, mentions?: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SigilError);
    expect((err as SigilError).code).toBe(code);
    if (mentions !== undefined) expect((err as SigilError).message).toContain(mentions);
    return;
  }
  throw new Error(`expected SigilError ${code}`);
}

describe('writeFileAtomic', () => {
  it('creates a file with the exact mode, regardless of umask', () => {
    const p = path.join(tmp, 'a.txt');
    const old = process.umask(0o077);
    try {
      writeFileAtomic(p, 'hello', { mode: 0o644 });
    } finally {
      process.umask(old);
    }
    expect(fs.readFileSync(p, 'utf8')).toBe('hello');
    expect(mode(p)).toBe(0o644);
    expect(temps(tmp)).toEqual([]);
  });

  it('replaces existing content and sets 0600', () => {
    const p = path.join(tmp, 'key.pem');
    fs.writeFileSync(p, 'old content that is longer', { mode: 0o644 });
    writeFileAtomic(p, Buffer.from('new'), { mode: 0o600 });
    expect(fs.readFileSync(p, 'utf8')).toBe('new');
    expect(mode(p)).toBe(0o600);
    expect(temps(tmp)).toEqual([]);
  });

  it('replaces the inode (readers holding the old file keep old content)', () => {
    const p = path.join(tmp, 'f');
    fs.writeFileSync(p, 'v1');
    const fd = fs.openSync(p, 'r');
    try {
      writeFileAtomic(p, 'v2', { mode: 0o644 });
      expect(fs.readFileSync(fd, 'utf8')).toBe('v1');
      expect(fs.readFileSync(p, 'utf8')).toBe('v2');
    } finally {
      fs.closeSync(fd);
    }
  });

  it('refuses a symlink target and leaves the link target untouched', () => {
    const victim = path.join(tmp, 'victim');
    fs.writeFileSync(victim, 'precious', { mode: 0o644 });
    const link = path.join(tmp, 'svid.pem');
    fs.symlinkSync(victim, link);
    expectCode(() => writeFileAtomic(link, 'evil', { mode: 0o600 }), 'unsafe_path', link);
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious');
    expect(mode(victim)).toBe(0o644);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(temps(tmp)).toEqual([]);
  });

  it('refuses a dangling symlink target (would otherwise create the file elsewhere)', () => {
    const link = path.join(tmp, 'out');
    fs.symlinkSync(path.join(tmp, 'nowhere'), link);
    expectCode(() => writeFileAtomic(link, 'x', { mode: 0o600 }), 'unsafe_path');
    expect(fs.existsSync(path.join(tmp, 'nowhere'))).toBe(false);
  });

  it('refuses a symlinked parent directory', () => {
    const real = path.join(tmp, 'real');
    fs.mkdirSync(real);
    const linkDir = path.join(tmp, 'linkdir');
    fs.symlinkSync(real, linkDir);
    expectCode(() => writeFileAtomic(path.join(linkDir, 'f'), 'x', { mode: 0o600 }), 'unsafe_path', linkDir);
    expect(fs.readdirSync(real)).toEqual([]);
  });

  it('refuses a directory target and leaves no temp file', () => {
    const p = path.join(tmp, 'isdir');
    fs.mkdirSync(p);
    expectCode(() => writeFileAtomic(p, 'x', { mode: 0o600 }), 'unsafe_path', p);
    expect(fs.statSync(p).isDirectory()).toBe(true);
    expect(temps(tmp)).toEqual([]);
  });

  it('removes the temp file when the rename fails and keeps the old content', () => {
    const p = path.join(tmp, 'f');
    fs.writeFileSync(p, 'old');
    vi.spyOn(fs, 'renameSync').mockImplementation(() => {
      throw Object.assign(new Error('EIO: simulated'), { code: 'EIO' });
    });
    expectCode(() => writeFileAtomic(p, 'new', { mode: 0o600 }), 'internal', p);
    vi.restoreAllMocks();
    expect(fs.readFileSync(p, 'utf8')).toBe('old');
    expect(temps(tmp)).toEqual([]);
  });

  it('sets the owner when asked (or, unprivileged, fails cleanly with no temp left)', () => {
    const p = path.join(tmp, 'owned');
    if (process.getuid?.() === 0) {
      writeFileAtomic(p, 'x', { mode: 0o640, uid: 1234, gid: 2345 });
      const st = fs.statSync(p);
      expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1234, 2345, 0o640]);
    } else {
      expectCode(() => writeFileAtomic(p, 'x', { mode: 0o640, uid: 0 }), 'internal', p);
      expect(fs.existsSync(p)).toBe(false);
    }
    expect(temps(tmp)).toEqual([]);
  });

  it('reports a missing directory as config_invalid', () => {
    expectCode(() => writeFileAtomic(path.join(tmp, 'missing', 'f'), 'x', { mode: 0o600 }), 'config_invalid');
  });
});

describe('writeFilesAtomic', () => {
  it('writes every file with its own mode and leaves no temps', () => {
    writeFilesAtomic(tmp, [
      { name: 'k', data: 'key', mode: 0o600 },
      { name: 'c', data: 'cert', mode: 0o644 },
    ]);
    expect(fs.readFileSync(path.join(tmp, 'k'), 'utf8')).toBe('key');
    expect(fs.readFileSync(path.join(tmp, 'c'), 'utf8')).toBe('cert');
    expect(mode(path.join(tmp, 'k'))).toBe(0o600);
    expect(mode(path.join(tmp, 'c'))).toBe(0o644);
    expect(temps(tmp)).toEqual([]);
  });

  it('renames in the given order (key before cert)', () => {
    const spy = vi.spyOn(fs, 'renameSync');
    writeFilesAtomic(tmp, [
      { name: 'svid.key', data: 'k', mode: 0o600 },
      { name: 'svid.pem', data: 'c', mode: 0o644 },
    ]);
    expect(spy.mock.calls.map((c) => path.basename(String(c[1])))).toEqual(['svid.key', 'svid.pem']);
  });

  it('changes nothing when any target is unsafe', () => {
    fs.writeFileSync(path.join(tmp, 'k'), 'old-key');
    fs.symlinkSync(path.join(tmp, 'k'), path.join(tmp, 'c'));
    expectCode(
      () =>
        writeFilesAtomic(tmp, [
          { name: 'k', data: 'new-key', mode: 0o600 },
          { name: 'c', data: 'new-cert', mode: 0o644 },
        ]),
      'unsafe_path',
    );
    expect(fs.readFileSync(path.join(tmp, 'k'), 'utf8')).toBe('old-key');
    expect(temps(tmp)).toEqual([]);
  });

  it('cleans up the remaining temps when a later rename fails', () => {
    const real = fs.renameSync;
    let n = 0;
    vi.spyOn(fs, 'renameSync').mockImplementation((a, b) => {
      if (++n === 2) throw Object.assign(new Error('EIO: simulated'), { code: 'EIO' });
      real(a, b);
    });
    expectCode(
      () =>
        writeFilesAtomic(tmp, [
          { name: 'a', data: 'A', mode: 0o600 },
          { name: 'b', data: 'B', mode: 0o600 },
        ]),
      'internal',
    );
    vi.restoreAllMocks();
    expect(fs.readFileSync(path.join(tmp, 'a'), 'utf8')).toBe('A');
    expect(fs.existsSync(path.join(tmp, 'b'))).toBe(false);
    expect(temps(tmp)).toEqual([]);
  });

  it('refuses names that are not plain file names', () => {
    for (const name of ['../x', 'a/b', '..', '.', '']) {
      expectCode(() => writeFilesAtomic(tmp, [{ name, data: 'x', mode: 0o600 }]), 'unsafe_path');
    }
    expect(fs.readdirSync(tmp)).toEqual([]);
  });
});

describe('ensureDir', () => {
  it('creates nested directories and sets the mode on the one it creates', () => {
    const d = path.join(tmp, 'a', 'b', 'c');
    const old = process.umask(0o077);
    try {
      ensureDir(d, 0o755);
    } finally {
      process.umask(old);
    }
    expect(fs.statSync(d).isDirectory()).toBe(true);
    expect(mode(d)).toBe(0o755);
  });

  it('leaves an existing directory and its mode alone', () => {
    const d = path.join(tmp, 'd');
    fs.mkdirSync(d, { mode: 0o700 });
    fs.chmodSync(d, 0o700);
    ensureDir(d, 0o755);
    expect(mode(d)).toBe(0o700);
  });

  it('refuses a symlink to a directory', () => {
    const real = path.join(tmp, 'real');
    fs.mkdirSync(real);
    const link = path.join(tmp, 'link');
    fs.symlinkSync(real, link);
    expectCode(() => ensureDir(link, 0o755), 'unsafe_path', link);
  });

  it('refuses a path that is a regular file', () => {
    const f = path.join(tmp, 'file');
    fs.writeFileSync(f, '');
    expectCode(() => ensureDir(f, 0o755), 'unsafe_path');
  });
});
