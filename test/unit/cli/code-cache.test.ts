/**
 * src/cli/code-cache.ts: the bundle's one-shot script runs with its V8 code cache only when the
 * cache could not have come from anyone but the script's owner (a code cache is bytecode V8
 * runs as its own: writing it is running code in the agent). Each refusal is checked here; the
 * script still runs, compiled from source.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cacheFileOf, runCommonJsWithCache } from '../../../src/cli/code-cache.js';

const root = mkdtempSync(join(tmpdir(), 'sigil-code-cache-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const isRoot = process.geteuid?.() === 0;

let n = 0;
/** A directory (0755) with a CommonJS script (0644) and, unless `cache: false`, its code cache (0644). */
function scriptDir(body = "module.exports.answer = require('node:path').basename(__filename) + ':' + (6 * 7);") {
  const dir = join(root, `d${n++}`);
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  const file = join(dir, 'one-shot.cjs');
  writeFileSync(file, `function f(){return 1}\n${body}\n`, { mode: 0o644 });
  const data = runCommonJsWithCache(file, false).script.createCachedData();
  writeFileSync(cacheFileOf(file), data, { mode: 0o644 });
  chmodSync(cacheFileOf(file), 0o644);
  return { dir, file, cache: cacheFileOf(file), data };
}

describe('runCommonJsWithCache', () => {
  it('runs the script with module variables and uses a cache owned and writable by its owner alone', () => {
    const { file } = scriptDir();
    const r = runCommonJsWithCache(file);
    expect(r.exports.answer).toBe('one-shot.cjs:42');
    expect(r.cache).toBe('used');
  });

  it('compiles from source when there is no cache', () => {
    const { file, cache } = scriptDir();
    rmSync(cache);
    const r = runCommonJsWithCache(file);
    expect([r.cache, r.exports.answer]).toEqual(['missing', 'one-shot.cjs:42']);
  });

  it('refuses a cache that group or others may write', () => {
    for (const m of [0o664, 0o646]) {
      const { file, cache } = scriptDir();
      chmodSync(cache, m);
      const r = runCommonJsWithCache(file);
      expect([r.cache, r.exports.answer]).toEqual(['writable_by_others', 'one-shot.cjs:42']);
    }
  });

  it('refuses a cache in a directory that group or others may write (they could replace the file)', () => {
    const { dir, file } = scriptDir();
    chmodSync(dir, 0o777);
    const r = runCommonJsWithCache(file);
    expect([r.cache, r.exports.answer]).toEqual(['dir_unsafe', 'one-shot.cjs:42']);
  });

  it('refuses a symlink in place of the cache, even to a good cache', () => {
    const good = scriptDir();
    const { file, cache } = scriptDir();
    rmSync(cache);
    symlinkSync(good.cache, cache);
    expect(runCommonJsWithCache(file).cache).toBe('not_regular');
  });

  it.skipIf(!isRoot)('refuses a cache, or a directory, owned by another user than root or the one running', () => {
    const a = scriptDir();
    chownSync(a.cache, 4321, 4321);
    expect(runCommonJsWithCache(a.file).cache).toBe('foreign_owner');
    const b = scriptDir();
    chownSync(b.dir, 4321, 4321);
    expect(runCommonJsWithCache(b.file).cache).toBe('dir_unsafe');
  });

  it("reports V8's rejection of a cache made for another script, and runs the script itself", () => {
    const other = scriptDir('module.exports.answer = "other, and of another length";');
    // A source this process has not compiled yet (V8 would take a repeat from its in-memory cache).
    const file = join(other.dir, 'fresh.cjs');
    writeFileSync(file, 'module.exports.answer = "fresh";\n', { mode: 0o644 });
    writeFileSync(cacheFileOf(file), other.data, { mode: 0o644 });
    const r = runCommonJsWithCache(file);
    expect([r.cache, r.exports.answer]).toEqual(['rejected', 'fresh']);
  });
});
