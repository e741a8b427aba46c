/**
 * OpenSSH certificate encoding, cross-checked with the real ssh-keygen: what Sigil signs,
 * `ssh-keygen -L` parses (it verifies the CA signature while parsing) and shows with the same
 * fields; what ssh-keygen makes (keys, certificates), Sigil parses.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SshCertificateAuthority } from '../../../src/ssh/authority.js';
import { formatCertificateLine, parseCertificateLine, parseSshCertificate } from '../../../src/ssh/certificate.js';
import {
  decodeOpenSshPrivateKey,
  encodeOpenSshPrivateKey,
  openSshPrivateKeyPublic,
} from '../../../src/ssh/private-key.js';
import {
  formatAuthorizedKey,
  parseAuthorizedKey,
  sshFingerprint,
  sshPublicKeyFromKeyObject,
} from '../../../src/ssh/public-key.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-ssh-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keygen(args: string[]): string {
  try {
    return execFileSync('ssh-keygen', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new Error('ssh-keygen is missing: apt-get install -y openssh-client');
    throw e;
  }
}

const userCa = new SshCertificateAuthority(
  generateKeyPairSync('ed25519').privateKey,
  'user',
  'sigil-user-ca@example.org',
);
const hostCaEcdsa = new SshCertificateAuthority(
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
  'host',
  'sigil-host-ca@example.org',
);
const now = Math.floor(Date.now() / 1000) * 1000;

describe('ssh-keygen -L reads what Sigil signs', () => {
  const subjects = {
    ed25519: generateKeyPairSync('ed25519').publicKey,
    p256: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    p384: generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
    rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
  };
  for (const [name, key] of Object.entries(subjects)) {
    it(`user certificate for a ${name} key, signed by an Ed25519 CA`, () => {
      const subject = sshPublicKeyFromKeyObject(key);
      const blob = userCa.issue({
        subject,
        serial: 0xfedcba9876543210n,
        keyId: 'spiffe://example.org/bot/gw/i-1',
        principals: ['ops', 'backup'],
        validAfter: new Date(now - 60_000),
        validBefore: new Date(now + 3_600_000),
        criticalOptions: { 'source-address': '127.0.0.1/32', 'force-command': '/bin/true' },
        extensions: ['permit-pty', 'permit-port-forwarding'],
      });
      const f = join(dir, `${name}-cert.pub`);
      writeFileSync(f, formatCertificateLine(blob, 'test') + '\n');
      const out = keygen(['-L', '-f', f]);
      expect(out).toContain(`Type: ${subject.type}-cert-v01@openssh.com user certificate`);
      expect(out).toContain('Serial: 18364758544493064720');
      expect(out).toContain('Key ID: "spiffe://example.org/bot/gw/i-1"');
      expect(out).toMatch(/Principals: \n\s+ops\n\s+backup\n/);
      expect(out).toMatch(/Critical Options: \n\s+force-command \/bin\/true\n\s+source-address 127\.0\.0\.1\/32\n/);
      expect(out).toMatch(/Extensions: \n\s+permit-port-forwarding\n\s+permit-pty\n/);
      expect(out).toContain(`Signing CA: ED25519 ${userCa.fingerprint}`);
      expect(out).toContain(
        `Public key: ${subject.type === 'ssh-ed25519' ? 'ED25519' : subject.type === 'ssh-rsa' ? 'RSA' : 'ECDSA'}-CERT ${sshFingerprint(subject.blob)}`,
      );
      // And our own parser agrees, signature included.
      const parsed = parseCertificateLine(readFileSync(f, 'utf8'));
      expect(parsed.principals).toEqual(['ops', 'backup']);
      expect(parsed.serial).toBe(0xfedcba9876543210n);
      expect(parsed.subject.blob.equals(subject.blob)).toBe(true);
      expect(parsed.extensions).toEqual({ 'permit-port-forwarding': '', 'permit-pty': '' });
      expect(parsed.criticalOptions).toEqual({ 'force-command': '/bin/true', 'source-address': '127.0.0.1/32' });
    });
  }

  it('host certificate signed by an ECDSA P-256 CA, validity shown by ssh-keygen', () => {
    const subject = sshPublicKeyFromKeyObject(generateKeyPairSync('ed25519').publicKey);
    const validAfter = new Date(Date.UTC(2030, 0, 2, 3, 4, 5));
    const validBefore = new Date(Date.UTC(2030, 0, 2, 4, 4, 5));
    const blob = hostCaEcdsa.issue({
      subject,
      serial: 7n,
      keyId: 'host',
      principals: ['gw1.example.org', '10.0.0.1'],
      validAfter,
      validBefore,
    });
    const f = join(dir, 'host-cert.pub');
    writeFileSync(f, formatCertificateLine(blob) + '\n');
    const out = keygen(['-L', '-f', f]);
    expect(out).toContain('ssh-ed25519-cert-v01@openssh.com host certificate');
    expect(out).toContain(`Signing CA: ECDSA ${hostCaEcdsa.fingerprint}`);
    expect(out).toMatch(/Principals: \n\s+gw1\.example\.org\n\s+10\.0\.0\.1\n/);
    expect(out).toMatch(/Critical Options: \(none\)/);
    expect(out).toMatch(/Extensions: \(none\)/);
    // ssh-keygen prints local time; compare with the same rendering of our instants.
    const local = (d: Date): string => {
      const p = (n: number): string => String(n).padStart(2, '0');
      return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    };
    expect(out).toContain(`Valid: from ${local(validAfter)} to ${local(validBefore)}`);
  });

  it('refuses to issue a certificate without principals (it would be valid for anyone)', () => {
    const subject = sshPublicKeyFromKeyObject(generateKeyPairSync('ed25519').publicKey);
    expect(() =>
      userCa.issue({
        subject,
        serial: 1n,
        keyId: 'x',
        principals: [],
        validAfter: new Date(now),
        validBefore: new Date(now + 60_000),
      }),
    ).toThrow(/ANY principal/);
  });

  it('a flipped byte in the signed part fails the signature check', () => {
    const subject = sshPublicKeyFromKeyObject(generateKeyPairSync('ed25519').publicKey);
    const blob = userCa.issue({
      subject,
      serial: 1n,
      keyId: 'x',
      principals: ['ops'],
      validAfter: new Date(now),
      validBefore: new Date(now + 60_000),
    });
    const bad = Buffer.from(blob);
    const at = bad.indexOf(Buffer.from('ops'));
    bad[at] = 'p'.charCodeAt(0);
    expect(() => parseSshCertificate(bad)).toThrow(/signature does not verify/);
  });
});

describe('Sigil reads what ssh-keygen makes', () => {
  for (const t of ['ed25519', 'ecdsa', 'rsa']) {
    it(`${t} public key and a certificate signed by ssh-keygen -s`, () => {
      const k = join(dir, `kg-${t}`);
      const ca = join(dir, `kg-ca-${t}`);
      keygen(['-q', '-t', t, '-N', '', '-C', 'c', '-f', k]);
      keygen(['-q', '-t', 'ed25519', '-N', '', '-f', ca]);
      const pub = parseAuthorizedKey(readFileSync(`${k}.pub`, 'utf8'));
      expect(formatAuthorizedKey(pub.blob, 'c')).toBe(readFileSync(`${k}.pub`, 'utf8').trim());
      keygen(['-q', '-s', ca, '-I', 'kid', '-n', 'a,b', '-V', '+1h', '-z', '42', `${k}.pub`]);
      const cert = parseCertificateLine(readFileSync(`${k}-cert.pub`, 'utf8'));
      expect(cert).toMatchObject({ keyId: 'kid', principals: ['a', 'b'], serial: 42n, type: 'user' });
      expect(cert.signatureKey.blob.equals(parseAuthorizedKey(readFileSync(`${ca}.pub`, 'utf8')).blob)).toBe(true);
      if (t !== 'rsa') {
        // Our OpenSSH private key reader reads ssh-keygen's file.
        const priv = decodeOpenSshPrivateKey(readFileSync(k, 'utf8'));
        expect(sshPublicKeyFromKeyObject(priv).blob.equals(pub.blob)).toBe(true);
      }
    });
  }

  it('ssh-keygen -y derives the same public key from the private key files Sigil writes', () => {
    for (const key of [
      generateKeyPairSync('ed25519').privateKey,
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
    ]) {
      const f = join(dir, `sigil-written-${Math.random().toString(36).slice(2)}`);
      const pem = encodeOpenSshPrivateKey(key, 'host');
      writeFileSync(f, pem, { mode: 0o600 });
      const derived = keygen(['-y', '-f', f]).trim().split(' ').slice(0, 2).join(' ');
      expect(derived).toBe(formatAuthorizedKey(sshPublicKeyFromKeyObject(key).blob));
      expect(openSshPrivateKeyPublic(pem).blob.equals(sshPublicKeyFromKeyObject(key).blob)).toBe(true);
      expect(decodeOpenSshPrivateKey(pem).export({ format: 'jwk' })).toEqual(key.export({ format: 'jwk' }));
    }
  });

  it('refuses certificates and unknown key types as subjects', () => {
    expect(() => parseAuthorizedKey('ssh-dss AAAAB3NzaC1kc3MAAACBAP== x')).toThrow();
    const subject = sshPublicKeyFromKeyObject(generateKeyPairSync('ed25519').publicKey);
    const blob = userCa.issue({
      subject,
      serial: 1n,
      keyId: 'x',
      principals: ['ops'],
      validAfter: new Date(now),
      validBefore: new Date(now + 60_000),
    });
    expect(() => parseAuthorizedKey(formatCertificateLine(blob))).toThrow(/certificate was given/);
  });
});
