/** Issuer key files (server/key-file.ts): created once (0600), never replaced, never read loose or through a link. */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureKeyFile, readPrivateKeyFile } from '../../../src/server/key-file.js';

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'sigil-keyfile-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ed = () => generateKeyPairSync('ed25519').privateKey;

describe('ensureKeyFile', () => {
  it('creates a missing key 0600 and afterwards always returns that key', () => {
    const f = join(dir, 'k.key');
    const a = ensureKeyFile(f, ed);
    expect(a.created).toBe(true);
    expect(statSync(f).mode & 0o777).toBe(0o600);
    const b = ensureKeyFile(f, ed);
    expect(b.created).toBe(false);
    expect(b.key.export({ format: 'jwk' })).toEqual(a.key.export({ format: 'jwk' }));
    expect(readdirSync(dir)).toEqual(['k.key']); // no temp files left
  });

  it('concurrent creators in separate processes end up with one key', async () => {
    const f = join(dir, 'race.key');
    const mod = resolve('src/server/key-file.ts');
    const script = `import { ensureKeyFile } from ${JSON.stringify(mod)}; import { generateKeyPairSync } from 'node:crypto';
      const r = ensureKeyFile(${JSON.stringify(f)}, () => generateKeyPairSync('ed25519').privateKey); console.log(JSON.stringify(r.key.export({ format: 'jwk' })));`;
    const run = (): Promise<string> =>
      new Promise((res, rej) =>
        execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], (e, out) =>
          e ? rej(e) : res(out.trim()),
        ),
      );
    const outs = await Promise.all(Array.from({ length: 6 }, run));
    expect(new Set(outs).size).toBe(1);
    expect(JSON.parse(outs[0]!)).toEqual(readPrivateKeyFile(f).export({ format: 'jwk' }));
  });

  it('refuses a key readable by others or reached through a symlink', () => {
    const f = join(dir, 'loose.key');
    ensureKeyFile(f, ed);
    chmodSync(f, 0o644);
    expect(() => ensureKeyFile(f, ed)).toThrow(/readable by group or others/);
    chmodSync(f, 0o600);
    symlinkSync(f, join(dir, 'link.key'));
    expect(() => ensureKeyFile(join(dir, 'link.key'), ed)).toThrow(/symbolic link/);
    symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling.key'));
    expect(() => ensureKeyFile(join(dir, 'dangling.key'), ed)).toThrow(/symbolic link/);
    expect(readFileSync(f, 'utf8')).toMatch(/BEGIN PRIVATE KEY/);
  });
});
