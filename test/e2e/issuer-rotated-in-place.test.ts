/**
 * A running issuer whose intermediate is replaced in place (`sigil server rotate-intermediate`
 * while it serves) stops within the registry's refresh (~5 s) — its old intermediate is retired —
 * and exits 75 (EX_TEMPFAIL), not 0: the shipped systemd unit's `Restart=on-failure` then starts
 * it again, with the new intermediate, instead of leaving the fleet without an issuer until
 * someone notices. (A retirement with no replacement still exits 0 and stays down:
 * test/e2e/postgres-add-issuer.test.ts.) The built CLI, a real TLS handshake to read the chain.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, expect, it } from 'vitest';
import { sigil, sigilJson, startIssuer, tempDir, type RunningIssuer } from '../helpers/cli.js';

const tmp = tempDir('sigil-rotated-in-place-');
let issuer: RunningIssuer | undefined;
afterAll(async () => {
  await issuer?.stop();
  tmp.cleanup();
});

/** The subject of the CA that issued the certificate the issuer presents over TLS. */
function servingIssuer(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      resolve(new X509Certificate(s.getPeerCertificate(true).raw).issuer);
      s.end();
    });
    s.once('error', reject);
  });
}

it('exits 75 once its intermediate is rotated in place, and serves under the new one when started again', async () => {
  issuer = await startIssuer(tmp.path);
  const intCert = join(issuer.dataDir, 'ca', 'intermediate.pem');
  const oldInt = new X509Certificate(readFileSync(intCert));
  expect(await servingIssuer(issuer.url)).toBe(oldInt.subject);
  const exited = new Promise<number | null>((resolve) => issuer!.proc.once('exit', (code) => resolve(code)));
  // --validity-days takes digits only (Number() would read "0x5a" as 90): refused, nothing changed.
  for (const bad of ['0x5a', ' 90', '9e1']) {
    const r = await sigil(['server', 'rotate-intermediate', '--data-dir', issuer.dataDir, '--validity-days', bad]);
    expect([r.code, r.stderr.trim()]).toEqual([
      2,
      `error[config_invalid]: --validity-days must be a whole number of days from 2 to 1825, got "${bad}"`,
    ]);
  }
  expect(new X509Certificate(readFileSync(intCert)).serialNumber).toBe(oldInt.serialNumber);

  const rotated = await sigilJson<{ new: { name: string } }>([
    'server',
    'rotate-intermediate',
    '--data-dir',
    issuer.dataDir,
  ]);
  expect(rotated.new.name).toBe('primary-2');
  expect(await exited).toBe(75);
  expect(issuer.log()).toMatch(/rotated in place: exiting 75 so that the service manager starts it again/);

  // What Restart=on-failure does: start it again (same data directory and port).
  await issuer.restart();
  const newInt = new X509Certificate(readFileSync(intCert));
  expect(newInt.subject).not.toBe(oldInt.subject);
  expect(await servingIssuer(issuer.url)).toBe(newInt.subject);
}, 60_000);
