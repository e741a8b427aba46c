/**
 * Where better-sqlite3's compiled addon is, for its `nativeBinding` option. Without it the
 * library finds the addon with the `bindings` package, which reads a stack trace to find the
 * package root and then tries a dozen build directories in turn: 8 ms of CPU in a ~100 ms
 * `sigil agent status` (issue #19, `node --cpu-prof`: Module._findPath). The path is the one
 * `npm ci` builds (build/Release/, as bindings tries first); if it is not there (a Debug build,
 * an unusual layout) the option is left out and the library searches as before.
 *
 * Resolved from this module, so it is dist's node_modules/ or, in the production bundle,
 * dist-bundle/node_modules/ (scripts/bundle.mjs copies the addon there).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export function sqliteNativeBinding(): { nativeBinding?: string } {
  try {
    const pkg = createRequire(import.meta.url).resolve('better-sqlite3/package.json');
    const addon = join(dirname(pkg), 'build', 'Release', 'better_sqlite3.node');
    return existsSync(addon) ? { nativeBinding: addon } : {};
  } catch {
    return {};
  }
}
