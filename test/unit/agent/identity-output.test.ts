import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { identityOutput, writeIdentityOutput } from '../../../src/agent/outputs/identity.js';

let tmp: string;
const material = {
  certPem:
    '-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nINT\n-----END CERTIFICATE-----\n',
  keyPem: '-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n',
  bundlePem: '-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----',
};

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-out-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const mode = (p: string): number => fs.statSync(p).mode & 0o7777;

describe('writeIdentityOutput', () => {
  it('creates the directory 0755 and writes svid.pem 0644, svid.key 0600, bundle.pem 0644', () => {
    const dir = path.join(tmp, 'out', 'web');
    writeIdentityOutput(dir, material);
    expect(mode(dir)).toBe(0o755);
    expect(mode(path.join(dir, 'svid.pem'))).toBe(0o644);
    expect(mode(path.join(dir, 'svid.key'))).toBe(0o600);
    expect(mode(path.join(dir, 'bundle.pem'))).toBe(0o644);
    expect(fs.readFileSync(path.join(dir, 'svid.pem'), 'utf8')).toBe(material.certPem);
    expect(fs.readFileSync(path.join(dir, 'svid.key'), 'utf8')).toBe(material.keyPem);
    // A trailing newline is added when missing.
    expect(fs.readFileSync(path.join(dir, 'bundle.pem'), 'utf8')).toBe(`${material.bundlePem}\n`);
    expect(fs.readdirSync(dir).sort()).toEqual(['bundle.pem', 'svid.key', 'svid.pem']);
  });

  it('omits svid.key for non-exportable keys', () => {
    writeIdentityOutput(tmp, { certPem: material.certPem, bundlePem: material.bundlePem });
    expect(fs.readdirSync(tmp).sort()).toEqual(['bundle.pem', 'svid.pem']);
  });

  it('replaces a previous set', () => {
    writeIdentityOutput(tmp, material);
    writeIdentityOutput(tmp, { ...material, certPem: 'NEW CERT\n', keyPem: 'NEW KEY\n' });
    expect(fs.readFileSync(path.join(tmp, 'svid.pem'), 'utf8')).toBe('NEW CERT\n');
    expect(fs.readFileSync(path.join(tmp, 'svid.key'), 'utf8')).toBe('NEW KEY\n');
    expect(fs.readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('refuses a symlinked output directory', () => {
    const real = path.join(tmp, 'real');
    fs.mkdirSync(real);
    const link = path.join(tmp, 'link');
    fs.symlinkSync(real, link);
    expect(() => writeIdentityOutput(link, material)).toThrow(SigilError);
    try {
      writeIdentityOutput(link, material);
    } catch (err) {
      expect((err as SigilError).code).toBe('unsafe_path');
    }
    expect(fs.readdirSync(real)).toEqual([]);
  });

  it('refuses a symlinked svid.key without touching its target or writing the others', () => {
    const victim = path.join(tmp, 'victim');
    fs.writeFileSync(victim, 'precious');
    const dir = path.join(tmp, 'out');
    fs.mkdirSync(dir);
    fs.symlinkSync(victim, path.join(dir, 'svid.key'));
    expect(() => writeIdentityOutput(dir, material)).toThrow(/symbolic link/);
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious');
    expect(fs.readdirSync(dir)).toEqual(['svid.key']);
  });

  it('identityOutput is an OutputDestination writing to its path', () => {
    const dest = identityOutput(path.join(tmp, 'd'));
    expect(dest.type).toBe('identity');
    dest.write(material);
    expect(fs.existsSync(path.join(dest.path, 'svid.pem'))).toBe(true);
  });
});
