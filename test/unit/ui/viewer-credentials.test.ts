import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../../src/util/secret.js';
import {
  issueViewerToken,
  matchCredential,
  readViewers,
  revokeViewerToken,
  viewersPath,
} from '../../../src/server/ui/viewer-credentials.js';

describe('fleet view viewer credentials', () => {
  const dirs: string[] = [];
  const dir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'sigil-viewers-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('stores only a hash, in a 0600 file; a new token replaces the old one; revoke removes it', () => {
    const d = dir();
    const t1 = issueViewerToken(d, 'noc', 1000);
    expect(statSync(viewersPath(d)).mode & 0o777).toBe(0o600);
    expect(readFileSync(viewersPath(d), 'utf8')).not.toContain(t1);
    expect(readViewers(d)).toEqual([{ name: 'noc', hash: sha256Hex(t1), created_at: new Date(1000).toISOString() }]);
    const t2 = issueViewerToken(d, 'noc', 2000);
    expect(matchCredential(t1, undefined, readViewers(d))).toBeUndefined();
    expect(matchCredential(t2, undefined, readViewers(d))).toEqual({ user: 'noc', role: 'viewer' });
    expect(revokeViewerToken(d, 'noc')).toBe(true);
    expect(revokeViewerToken(d, 'noc')).toBe(false);
    expect(matchCredential(t2, undefined, readViewers(d))).toBeUndefined();
  });

  it("no viewer takes the administrator's name: refused at issue, and a hand-written entry never signs in", () => {
    expect(() => issueViewerToken(dir(), 'admin', Date.now())).toThrow(/administrator/);
    const token = 'a hand-made viewer token';
    expect(
      matchCredential(token, undefined, [
        { name: 'admin', hash: sha256Hex(token), created_at: '2026-01-01T00:00:00Z' },
      ]),
    ).toBeUndefined();
  });

  it('the admin credential signs in as admin; anything else as nobody', () => {
    const admin = 'admin-secret';
    expect(matchCredential(admin, sha256Hex(admin), [])).toEqual({ user: 'admin', role: 'admin' });
    // Pasted with a newline or blanks around it, as from a terminal.
    expect(matchCredential(` ${admin}\n`, sha256Hex(admin), [])).toEqual({ user: 'admin', role: 'admin' });
    expect(matchCredential('x', sha256Hex(admin), [])).toBeUndefined();
    expect(matchCredential('', undefined, [])).toBeUndefined();
  });

  it('refuses bad viewer names, a malformed file and a symlinked file', () => {
    const d = dir();
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (err) {
        return (err as { code?: string }).code;
      }
      return undefined;
    };
    expect(() => issueViewerToken(d, '../x', 0)).toThrow(/viewer name/);
    expect(code(() => issueViewerToken(d, '../x', 0))).toBe('config_invalid');
    expect(code(() => issueViewerToken(d, 'admin', 0))).toBe('config_invalid');
    writeFileSync(viewersPath(d), '{"viewers":[{"name":"a","hash":"zz","created_at":"x"}]}');
    expect(() => readViewers(d)).toThrow(/not a viewer credential file/);
    expect(code(() => readViewers(d))).toBe('config_invalid');
    writeFileSync(viewersPath(d), '{"viewers":');
    expect(code(() => readViewers(d))).toBe('config_invalid');
    const e = dir();
    symlinkSync(viewersPath(d), viewersPath(e));
    expect(() => readViewers(e)).toThrow(/not a regular file/);
    expect(code(() => readViewers(e))).toBe('unsafe_path');
    // Only a missing file means "no viewers": a data directory path that is a file is an error.
    const f = join(dir(), 'not-a-dir');
    writeFileSync(f, '');
    expect(code(() => readViewers(f))).toBe('ENOTDIR');
  });

  it('never hands out a token starting with "-" (it would read as an option when pasted)', () => {
    const d = dir();
    for (let i = 0; i < 300; i++) expect(issueViewerToken(d, 'noc', i).startsWith('-')).toBe(false);
  });

  it('writes the file as JSON lines ending in a newline', () => {
    const d = dir();
    issueViewerToken(d, 'noc', 0);
    expect(readFileSync(viewersPath(d), 'utf8').endsWith('}\n')).toBe(true);
  });
});
