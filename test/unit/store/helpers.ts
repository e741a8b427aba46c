import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A fresh private temp directory; call `remove()` in afterEach. */
export function tempDir(prefix = 'sigil-store-'): { dir: string; dbPath: string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return {
    dir,
    dbPath: path.join(dir, 'issuer.db'),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
