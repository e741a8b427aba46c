/** `sigil server add-issuer` refusals that need no database (docs/issuers.md "Setup"). */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initDataDir } from '../../../../src/server/data-dir.js';
import { addIssuer } from '../../../../src/server/issuers/add-issuer.js';
import { checkIssuerName, intermediateCommonName } from '../../../../src/server/issuers/names.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-add-issuer-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('add-issuer', () => {
  it('refuses an issuer on SQLite: issuers with their own intermediates share PostgreSQL', async () => {
    initDataDir(join(dir, 'a'), 'example.org');
    await expect(addIssuer({ rootDir: join(dir, 'a'), name: 'b', outDir: join(dir, 'b') })).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringMatching(/own SQLite file.*migrate-store/),
    });
  });

  it('refuses a bad name before touching anything', async () => {
    for (const name of ['', 'B', 'a_b', 'x'.repeat(33), '../etc'])
      await expect(addIssuer({ rootDir: join(dir, 'a'), name, outDir: join(dir, 'b') })).rejects.toMatchObject({
        code: 'config_invalid',
      });
    expect(checkIssuerName('i-2')).toBe('i-2');
  });

  it('refuses a non-empty --out', async () => {
    initDataDir(join(dir, 'a'), 'example.org');
    const meta = join(dir, 'a', 'issuer.json');
    writeFileSync(meta, JSON.stringify({ trust_domain: 'example.org', layout_version: 1, store: 'postgres' }));
    mkdirSync(join(dir, 'b'));
    writeFileSync(join(dir, 'b', 'planted'), 'x');
    await expect(addIssuer({ rootDir: join(dir, 'a'), name: 'b', outDir: join(dir, 'b') })).rejects.toMatchObject({
      code: 'already_initialized',
    });
  });

  it('gives every intermediate its own subject, within the 64 characters of a CN', () => {
    expect(intermediateCommonName('example.org', 'b')).toBe('example.org intermediate CA b');
    const long = intermediateCommonName('a'.repeat(60) + '.org', 'b');
    expect(long).toBe('Sigil intermediate CA b');
    expect([...intermediateCommonName('t'.repeat(40), 'x'.repeat(32))].length).toBeLessThanOrEqual(64);
  });
});
