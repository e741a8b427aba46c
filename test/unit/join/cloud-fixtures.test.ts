/**
 * The genuine cloud-document fixtures (test/fixtures/cloud-iid, see its README) are all there
 * and unchanged: every file SHA256SUMS lists exists with that hash, and nothing unlisted crept
 * in. The tests that use them fail rather than skip when one is missing (aws-fixtures.ts
 * requireFixture); this test says which.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLOUD_FIXTURES, requireFixture } from './aws-fixtures.js';

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)],
  );
}

describe('cloud-iid fixtures', () => {
  const sums = readFileSync(requireFixture(join(CLOUD_FIXTURES, 'SHA256SUMS')), 'utf8')
    .trim()
    .split('\n')
    .map((l) => /^([0-9a-f]{64}) [ *](.+)$/.exec(l)!)
    .map((m) => ({ hash: m[1]!, file: m[2]! }));

  it('every listed file is present with its SHA-256', () => {
    expect(sums.length).toBeGreaterThanOrEqual(35);
    for (const { hash, file } of sums) {
      const p = join(CLOUD_FIXTURES, file);
      expect(existsSync(p), `${file} is missing`).toBe(true);
      expect(createHash('sha256').update(readFileSync(p)).digest('hex'), file).toBe(hash);
    }
  });

  it('every file is listed (a new fixture goes into SHA256SUMS with its provenance in the README)', () => {
    const listed = new Set(sums.map((s) => s.file));
    const unlisted = filesUnder(CLOUD_FIXTURES)
      .map((p) => relative(CLOUD_FIXTURES, p))
      .filter((f) => f !== 'README.md' && f !== 'SHA256SUMS' && !listed.has(f));
    expect(unlisted).toEqual([]);
  });

  it('a missing fixture is an error, not a skip', () => {
    expect(() => requireFixture(join(CLOUD_FIXTURES, 'aws', 'samples', 'no-such-sample'))).toThrow(
      /no-such-sample is missing: the genuine cloud-document fixtures belong to the repository/,
    );
  });
});
