/**
 * A CommonJS script compiled with a V8 code cache (issue #19). Node 20 has no compile cache for
 * ES modules (module.enableCompileCache came in Node 22), so the production bundle carries the
 * one-shot agent commands (`agent run --once`, `agent status`: ./one-shot.ts) a second time as
 * one CommonJS script, and its entry (./bundle-entry.ts) compiles that script through vm.Script
 * with the bytecode V8 produced for it at bundle time (scripts/code-cache-train.mjs, the same
 * node binary, no flags). That skips most of parsing and compiling: `run --once` measured
 * 143 → ~100 ms CPU, bare node ~44 (docs/performance.md "Agent footprint").
 *
 * Why the cache is read only from beside the script, and only if nobody else could write it:
 * V8 checks a code cache against its own version, the V8 flags and the source's LENGTH — not
 * its content, and not with any signature. Bytecode is trusted as V8's own output: whoever can
 * write the cache file can make the agent (which holds the machine's identity key, often as
 * root or its own system user) run code of their choosing, however the script beside it reads.
 * So the cache gets no more trust than the code it accelerates: a regular file (no symlink)
 * owned by root or by the user running, writable by its owner only, in a directory with the
 * same rule — the conditions under which that user could not have been handed a foreign cache.
 * Never a path from the environment or the working directory, never a cache written at run
 * time. A cache that fails any check, or that V8 rejects (another node binary, other flags),
 * is ignored: the script is then compiled from its source, which is only slower.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';

/** Why a cache file was not used (undefined when it was read). */
export type CacheRefusal = 'missing' | 'not_regular' | 'foreign_owner' | 'writable_by_others' | 'dir_unsafe';

/** Owned by root or by the effective user, and writable by nobody but its owner. */
function safeOwnership(st: { uid: number; mode: number }): 'foreign_owner' | 'writable_by_others' | undefined {
  const euid = process.geteuid?.() ?? 0;
  if (st.uid !== 0 && st.uid !== euid) return 'foreign_owner';
  if ((st.mode & 0o022) !== 0) return 'writable_by_others';
  return undefined;
}

/** The cache's bytes if it passes the checks in the module comment, else why not. */
export function readTrustedCache(file: string): { data: Buffer } | { refused: CacheRefusal } {
  const dir = statSync(dirname(file), { throwIfNoEntry: false });
  if (!dir?.isDirectory() || safeOwnership(dir) !== undefined) return { refused: 'dir_unsafe' };
  let fd: number;
  try {
    // O_NOFOLLOW: a symlink planted in place of the cache is refused, not followed.
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    return { refused: (e as NodeJS.ErrnoException).code === 'ELOOP' ? 'not_regular' : 'missing' };
  }
  try {
    // Checked on the open descriptor: what is read is what was checked.
    const st = fstatSync(fd);
    if (!st.isFile()) return { refused: 'not_regular' };
    const bad = safeOwnership(st);
    if (bad) return { refused: bad };
    return { data: readFileSync(fd) };
  } finally {
    closeSync(fd);
  }
}

/** The file a script's code cache is kept in. */
export const cacheFileOf = (script: string): string => `${script}.v8cache`;

export interface CompiledScript {
  /** What the script put in module.exports. */
  exports: Record<string, unknown>;
  /** The compiled script, for createCachedData() after a training run. */
  script: Script;
  /** 'used'; or why the cache was not (a V8 rejection included). */
  cache: 'used' | 'rejected' | CacheRefusal;
}

/**
 * Compiles and runs CommonJS `file` (its require() resolves from its own directory) with its
 * code cache when one is there and trusted. `useCache: false` compiles from source (training).
 */
export function runCommonJsWithCache(file: string, useCache = true): CompiledScript {
  const source = readFileSync(file, 'utf8');
  const read = useCache ? readTrustedCache(cacheFileOf(file)) : ({ refused: 'missing' } as const);
  const cachedData = 'data' in read ? read.data : undefined;
  // The same wrapper as Node's CommonJS loader, so the script sees the usual module variables.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) { ${source}\n});`, {
    filename: file,
    ...(cachedData ? { cachedData } : {}),
  });
  const module = { exports: {} as Record<string, unknown> };
  const fn = script.runInThisContext() as (...a: unknown[]) => void;
  fn.call(module.exports, module.exports, createRequire(file), module, file, dirname(file));
  const cache = 'refused' in read ? read.refused : script.cachedDataRejected === true ? 'rejected' : 'used';
  return { exports: module.exports, script, cache };
}
