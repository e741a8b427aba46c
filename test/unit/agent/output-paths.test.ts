/**
 * agent/outputs/check-path.ts: which output directories the agent refuses before its first
 * network call (issue #12 item 2), and util/atomic-file.ts ensureDir, whose `mkdir -p` no
 * longer spins when mkdir(2) answers ENOENT under an existing parent (procfs does).
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkOutputPaths, outputDirProblem } from '../../../src/agent/outputs/check-path.js';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sigil-outpath-'));
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

const problem = (p: string, create = true): string | undefined => outputDirProblem(p, { create });

describe('output directory checks', () => {
  it('refuses /proc, /sys and /dev paths without touching them', () => {
    for (const p of ['/proc/sigil/identity', '/proc', '/sys/kernel/sigil', '/dev/shm/sigil', '/dev'])
      expect(problem(p), p).toMatch(/^it is under \/(proc|sys|dev), a pseudo file system/);
    expect(existsSync('/proc/sigil')).toBe(false);
    // A prefix is not a parent.
    expect(problem(join(tmp, 'proc'))).toBeUndefined();
  });

  it('refuses a path that leads into /proc through a symlinked ancestor', () => {
    symlinkSync('/proc', join(tmp, 'p'));
    expect(problem(join(tmp, 'p', 'self', 'sigil'))).toMatch(/under \/proc.*\(it resolves to \/proc\/\d+\/sigil\)$/);
  });

  it('refuses a symlink, a file, a path through a file and a world-writable directory', () => {
    mkdirSync(join(tmp, 'real'));
    symlinkSync(join(tmp, 'real'), join(tmp, 'link'));
    writeFileSync(join(tmp, 'file'), 'x');
    mkdirSync(join(tmp, 'open'));
    chmodSync(join(tmp, 'open'), 0o1777);
    expect(problem(join(tmp, 'link'))).toMatch(/symbolic link \(to .*real\)/);
    expect(problem(join(tmp, 'file'))).toBe('it exists and is not a directory');
    expect(problem(join(tmp, 'file', 'sub'))).toMatch(/not a directory/);
    expect(problem(join(tmp, 'open'))).toMatch(/world-writable \(mode 1777.*chmod o-w/);
    // Below a symlinked ancestor is fine (/var -> /private/var layouts).
    expect(problem(join(tmp, 'link', 'identity'))).toBeUndefined();
  });

  it('creates a missing directory 0755 (as the first write would) and leaves no probe file behind', () => {
    const d = join(tmp, 'a', 'b', 'identity');
    expect(problem(d)).toBeUndefined();
    expect(statSync(d).mode & 0o777).toBe(0o755);
    expect(readdirSync(d)).toEqual([]);
  });

  it('with create: false only judges: a missing directory under a writable parent is fine and not created', () => {
    const d = join(tmp, 'later');
    expect(problem(d, false)).toBeUndefined();
    expect(existsSync(d)).toBe(false);
  });

  // As root the permission bits do not stop us; test/e2e/output-path-check.test.ts runs the agent
  // as uid 65534 for this case. Here: a read-only mount-like refusal through a parent that is a file.
  it('refuses a missing directory whose nearest existing ancestor is not a directory', () => {
    writeFileSync(join(tmp, 'plain'), '');
    expect(problem(join(tmp, 'plain', 'identity'))).toMatch(/not a directory/);
  });

  it('checkOutputPaths names the config, the output and the reason in one config_invalid line', () => {
    const cfg = {
      source: '/etc/sigil/agent.yaml',
      outputs: [{ type: 'identity' as const, path: join(tmp, 'ok') }],
      credentialOutputs: [{ type: 'jwt' as const, path: '/sys/sigil/jwt', audiences: ['a'] }],
    };
    expect(() => checkOutputPaths(cfg)).toThrow(
      expect.objectContaining({
        code: 'config_invalid',
        message: expect.stringMatching(
          /^\/etc\/sigil\/agent\.yaml: output jwt \/sys\/sigil\/jwt: it is under \/sys, a pseudo file system[^\n]*$/,
        ),
      }),
    );
  });
});

describe('ensureDir under /proc', () => {
  it('fails at once instead of retrying mkdir forever', () => {
    // In a child process: the old code never returned, and a synchronous loop cannot be interrupted in-process.
    const script = `import { ensureDir } from './src/util/atomic-file.ts';
try { ensureDir('/proc/sigil/identity', 0o755); console.log('created?'); } catch (e) { console.log(e.code + ' ' + e.message); }`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.signal, 'ensureDir spun until killed').toBeNull();
    expect(r.stdout.trim()).toBe('unsafe_path cannot write /proc/sigil/identity: ENOENT');
  });
});
