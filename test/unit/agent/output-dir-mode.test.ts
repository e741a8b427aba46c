/**
 * Issue #11 item 7: the agent refuses to write credentials into a world-writable directory
 * (agent/outputs/output-dir.ts explains why a refusal and not a warning).
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeOutputFiles } from '../../../src/agent/outputs/credential-output.js';
import { writeIdentityOutput } from '../../../src/agent/outputs/identity.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n';
let root: string;
afterEach(() => rmSync(root, { recursive: true, force: true }));

function dirWithMode(mode: number): string {
  root = mkdtempSync(join(tmpdir(), 'sigil-outdir-'));
  const d = join(root, 'out');
  mkdirSync(d);
  chmodSync(d, mode);
  return d;
}

describe('world-writable output directories', () => {
  for (const mode of [0o777, 0o1777]) {
    it(`identity output refuses a ${mode.toString(8)} directory and writes nothing`, () => {
      const d = dirWithMode(mode);
      expect(() => writeIdentityOutput(d, { certPem: PEM, bundlePem: PEM })).toThrow(
        expect.objectContaining({
          code: 'unsafe_path',
          message: expect.stringMatching(
            new RegExp(`${d} is world-writable \\(mode 0?${mode.toString(8)}.*run: chmod o-w ${d}`),
          ),
        }),
      );
      expect(existsSync(join(d, 'bundle.pem'))).toBe(false);
    });
  }

  it('credential outputs refuse one too', () => {
    const d = dirWithMode(0o777);
    expect(() =>
      writeOutputFiles({ type: 'jwt', path: d, audiences: ['x'] }, [{ name: 'token', data: 'a.b.c', mode: 0o600 }]),
    ).toThrow(expect.objectContaining({ code: 'unsafe_path' }));
    expect(existsSync(join(d, 'token'))).toBe(false);
  });

  it('a 0755 or group-writable 0775 directory is fine', () => {
    for (const mode of [0o755, 0o775]) {
      const d = dirWithMode(mode);
      writeIdentityOutput(d, { certPem: PEM, bundlePem: PEM });
      expect(existsSync(join(d, 'svid.pem'))).toBe(true);
      rmSync(root, { recursive: true, force: true });
    }
    root = mkdtempSync(join(tmpdir(), 'sigil-outdir-'));
  });
});
