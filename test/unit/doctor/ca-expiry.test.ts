/**
 * `sigil doctor` on the issuer: an intermediate about to expire, or expired, is reported with a fix
 * that exists (the walk of the runbook found "re-issue the intermediate" with no command for it).
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { caCheck } from '../../../src/doctor/server/ca.js';
import { initDataDir, paths } from '../../../src/server/data-dir.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-doctor-ca-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
initDataDir(join(dir, 'd'), 'example.org');
const dataDir = join(dir, 'd');
const notAfter = Date.parse(new X509Certificate(readFileSync(paths(dataDir).intCert)).validTo);
const at = (now: number) =>
  caCheck.run({ dataDir, listen: undefined, full: false, now: () => now }, new AbortController().signal);

describe('doctor: the intermediate near or past its expiry', () => {
  it('ok well before; warn within 30 days, fail after, each with the command that replaces it', async () => {
    expect((await at(notAfter - 40 * 86_400_000)).status).toBe('ok');
    const soon = await at(notAfter - 10 * 86_400_000);
    expect(soon.status).toBe('warn');
    expect(soon.detail).toMatch(/intermediate certificate .* expires at .* \(in 10 days\)/);
    // In place, on SQLite too (a docs walk: the hint sent SQLite operators to migrate-store first).
    expect(soon.fix).toContain('sigil server rotate-intermediate --data-dir DATA_DIR --root-key FILE');
    expect(soon.fix).not.toContain('migrate-store');
    const past = await at(notAfter + 1000);
    expect(past.status).toBe('fail');
    expect(past.fix).toContain('sigil server rotate-intermediate');
  });
});
