/** Shared fixtures for the PKI tests: CAs, keys, a software Signer, openssl and temp dirs. */
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Signer } from '../../../src/keystore/signer.js';
import { createIntermediateCa, createRootCa, type CaMaterial } from '../../../src/pki/ca.js';
import { bitString, implicit, integer, nullValue, octetString, oid, sequence, set } from '../../../src/pki/der.js';
import { CertificateIssuer } from '../../../src/pki/issue.js';
import { encodeName } from '../../../src/pki/name.js';

export const TD = 'example.org';

export interface Hierarchy {
  root: CaMaterial;
  inter: CaMaterial;
  issuer: CertificateIssuer;
}

export function hierarchy(trustDomain = TD): Hierarchy {
  const root = createRootCa({ trustDomain });
  const inter = createIntermediateCa(root, { trustDomain });
  return { root, inter, issuer: new CertificateIssuer({ caCertDer: inter.certDer, caKey: inter.key }) };
}

export function ecKey(curve: 'P-256' | 'P-384' = 'P-256'): {
  privateKey: KeyObject;
  publicKey: KeyObject;
  spki: Buffer;
} {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
  return { privateKey, publicKey, spki: publicKey.export({ type: 'spki', format: 'der' }) };
}

/** A Signer over a node KeyObject, as src/keystore/software.ts provides in the product. */
export function testSigner(curve: 'P-256' | 'P-384' = 'P-256'): Signer & { privateKey: KeyObject } {
  const k = ecKey(curve);
  const hash = curve === 'P-256' ? 'sha256' : 'sha384';
  return {
    storage: 'software',
    exportable: true,
    algorithm: curve === 'P-256' ? 'ES256' : 'ES384',
    privateKey: k.privateKey,
    publicKeySpki: () => k.spki,
    sign: async (data: Buffer) => sign(hash, data, { key: k.privateKey, dsaEncoding: 'der' }),
  };
}

/**
 * A PKCS#10 CSR for any node key, built by hand so tests can cover keys and algorithms
 * buildCsr() does not produce (RSA, Ed25519, P-521) and attach a SAN extensionRequest.
 */
export function rawCsr(
  privateKey: KeyObject,
  publicKey: KeyObject,
  opts: { cn?: string; sanUri?: string } = {},
): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const attrs: Buffer[] = [];
  if (opts.sanUri !== undefined) {
    const san = sequence(oid('2.5.29.17'), octetString(sequence(implicit(6, Buffer.from(opts.sanUri)))));
    attrs.push(sequence(oid('1.2.840.113549.1.9.14'), set(sequence(san))));
  }
  const cri = sequence(
    integer(0),
    encodeName(opts.cn ? [['CN', opts.cn]] : []),
    spki,
    implicit(0, Buffer.concat(attrs), true),
  );
  let alg: Buffer;
  let hash: string | null;
  switch (publicKey.asymmetricKeyType) {
    case 'rsa':
      alg = sequence(oid('1.2.840.113549.1.1.11'), nullValue());
      hash = 'sha256';
      break;
    case 'ed25519':
      alg = sequence(oid('1.3.101.112'));
      hash = null;
      break;
    default:
      alg = sequence(oid('1.2.840.10045.4.3.2'));
      hash = 'sha256';
  }
  const sig = sign(hash, cri, { key: privateKey, dsaEncoding: 'der' });
  return sequence(cri, alg, bitString(sig));
}

/** Run openssl; fail with the install command if it is missing (tests never silently skip). */
export function openssl(args: string[], input?: string | Buffer): string {
  return run(args, input).stdout.toString('utf8');
}

/** openssl with binary stdout (e.g. `-outform DER`). */
export function opensslBytes(args: string[], input?: string | Buffer): Buffer {
  return run(args, input).stdout;
}

/**
 * stdout + stderr: some verdicts only appear on stderr, and `openssl req -verify` (3.0) exits 0
 * even when the self-signature fails, so callers must read what it printed.
 */
export function opensslAll(args: string[], input?: string | Buffer): string {
  const r = run(args, input);
  return r.stdout.toString('utf8') + r.stderr.toString('utf8');
}

function run(args: string[], input?: string | Buffer): { stdout: Buffer; stderr: Buffer } {
  const r = spawnSync('openssl', args, { input });
  if (r.error !== undefined) {
    if ((r.error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new Error('openssl is not installed: run `apt-get install -y openssl`');
    throw r.error;
  }
  if (r.status !== 0)
    throw new Error(`openssl ${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}${r.stdout.toString()}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** A temp dir removed after `fn`. */
export function withTempDir<T>(fn: (dir: string, write: (name: string, data: string | Buffer) => string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-pki-'));
  try {
    return fn(dir, (name, data) => {
      const p = join(dir, name);
      writeFileSync(p, data);
      return p;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Run `fn` and return the SigilError code it throws (or fail). */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? `non-coded ${(e as Error).name}: ${(e as Error).message}`;
  }
  throw new Error('expected an error');
}
