/**
 * Issue #16 defect: `sigil server init --trust-domain my_domain.org` was refused although the
 * SPIFFE ID spec (§2.1) allows `_` in trust domain names ([a-z0-9.-_]). The real CLI (run from
 * source with tsx) initialises such an issuer; its CA carries spiffe://my_domain.org; names
 * outside the spec's character set are still refused with config_invalid.
 */
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { validateTrustDomain, loadCaMaterial } from '../../src/server/data-dir.js';
import { parseSpiffeId } from '../../src/pki/spiffe-id.js';
import { ROOT, tempDir } from '../helpers/cli.js';

const t = tempDir('sigil-td-');
afterAll(() => t.cleanup());

function sigilSrc(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('trust domain names (SPIFFE-ID §2.1)', () => {
  it('server init --trust-domain my_domain.org succeeds and the CA names spiffe://my_domain.org', async () => {
    const dir = join(t.path, 'issuer');
    const r = await sigilSrc(['server', 'init', '--data-dir', dir, '--trust-domain', 'my_domain.org']);
    expect(r.code, r.stderr).toBe(0);
    const ca = loadCaMaterial(dir);
    expect(ca.trustDomain).toBe('my_domain.org');
    expect(new X509Certificate(ca.rootDer).subjectAltName).toBe('URI:spiffe://my_domain.org');
    expect(parseSpiffeId('spiffe://my_domain.org/bot/gw/x').trustDomain).toBe('my_domain.org');
  }, 60_000);

  it('refuses names outside [a-z0-9.-_] with config_invalid (exit 2)', async () => {
    const r = await sigilSrc(['server', 'init', '--data-dir', join(t.path, 'bad'), '--trust-domain', 'My_Domain.org']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/config_invalid/);
    expect(r.stderr).toMatch(/'_'/);
  }, 60_000);

  it('accepts exactly the spec character set, up to 255 bytes', () => {
    for (const ok of ['my_domain.org', 'example.org', '_', 'a-b_c.d', '10.0.0.1', 'x'.repeat(255)])
      expect(validateTrustDomain(ok)).toBe(ok);
    for (const bad of [
      '',
      'Example.org',
      'ex ample.org',
      'example.org:443',
      'user@example.org',
      'exämple.org',
      'x'.repeat(256),
      '%41.org',
      '[::1]',
    ])
      expect(() => validateTrustDomain(bad), bad).toThrow(expect.objectContaining({ code: 'config_invalid' }));
  });
});
