/**
 * SSH public keys: the wire blob (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4), the one-line
 * `authorized_keys` / `.pub` form (`<type> <base64 blob> [comment]`, sshd(8) AUTHORIZED_KEYS
 * FILE FORMAT), and conversion to and from node:crypto KeyObjects (through JWK, so no ASN.1).
 *
 * Accepted subject keys: Ed25519, ECDSA P-256/P-384/P-521 and RSA ≥ 2048 bits — what
 * /etc/ssh/ssh_host_* and ssh-keygen produce. Certificates and FIDO (sk-) keys are refused as
 * subjects: a certificate is issued for a plain key.
 */
import { createHash, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { SigilError, type ErrorCode } from '../errors.js';
import { SshReader, SshWriter } from './wire.js';

export type SshKeyType =
  'ssh-ed25519' | 'ecdsa-sha2-nistp256' | 'ecdsa-sha2-nistp384' | 'ecdsa-sha2-nistp521' | 'ssh-rsa';

const ECDSA: Record<string, { curve: string; jwkCrv: string; coord: number }> = {
  'ecdsa-sha2-nistp256': { curve: 'nistp256', jwkCrv: 'P-256', coord: 32 },
  'ecdsa-sha2-nistp384': { curve: 'nistp384', jwkCrv: 'P-384', coord: 48 },
  'ecdsa-sha2-nistp521': { curve: 'nistp521', jwkCrv: 'P-521', coord: 66 },
};
const MIN_RSA_BITS = 2048;

export interface SshPublicKey {
  type: SshKeyType;
  /** The complete wire blob, starting with the key type string. */
  blob: Buffer;
  key: KeyObject;
}

const isKeyType = (t: string): t is SshKeyType => t === 'ssh-ed25519' || t === 'ssh-rsa' || t in ECDSA;

/** Decode a public key blob; anything Sigil would not certify is `code`. */
export function parseSshPublicKeyBlob(
  blob: Buffer,
  code: ErrorCode = 'unsupported_key',
  what = 'SSH public key',
): SshPublicKey {
  // Explicitly typed so that r.fail (never) narrows `type` below.
  const r: SshReader = new SshReader(blob, code, what);
  const type = r.text('key type');
  if (type.includes('-cert-v01@openssh.com')) r.fail('a certificate was given where a plain public key is expected');
  if (!isKeyType(type)) r.fail(`key type ${type} is not supported (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa)`);
  let jwk: JsonWebKey;
  if (type === 'ssh-ed25519') {
    const pk = r.string('ed25519 key');
    if (pk.length !== 32) r.fail('an Ed25519 key must be 32 bytes');
    jwk = { kty: 'OKP', crv: 'Ed25519', x: pk.toString('base64url') };
  } else if (type === 'ssh-rsa') {
    const e = r.mpintUnsigned('rsa e');
    const n = r.mpintUnsigned('rsa n');
    if (n.length * 8 < MIN_RSA_BITS) r.fail(`RSA keys must have at least ${MIN_RSA_BITS} bits`);
    jwk = { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') };
  } else {
    const spec = ECDSA[type]!;
    if (r.text('curve') !== spec.curve) r.fail(`the curve name does not match key type ${type}`);
    const q = r.string('ecdsa point');
    if (q.length !== 1 + 2 * spec.coord || q[0] !== 0x04)
      r.fail('the ECDSA point must be uncompressed and of the curve size');
    jwk = {
      kty: 'EC',
      crv: spec.jwkCrv,
      x: q.subarray(1, 1 + spec.coord).toString('base64url'),
      y: q.subarray(1 + spec.coord).toString('base64url'),
    };
  }
  r.end();
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk, format: 'jwk' });
  } catch (e) {
    // e.g. an ECDSA point that is not on the curve.
    throw new SigilError(code, `${what}: the key is not valid (${(e as Error).message})`);
  }
  return { type, blob: Buffer.from(blob), key };
}

/** Parse `<type> <base64> [comment]` (one line of a .pub or authorized_keys file, no options). */
export function parseAuthorizedKey(
  line: string,
  code: ErrorCode = 'unsupported_key',
  what = 'SSH public key',
): SshPublicKey & { comment: string } {
  if (typeof line !== 'string') throw new SigilError(code, `${what} must be a string`);
  const m = /^\s*(\S+)\s+([A-Za-z0-9+/]+={0,2})(?:\s+(.*?))?\s*$/.exec(line);
  if (!m) throw new SigilError(code, `${what} is not in OpenSSH format "<type> <base64> [comment]"`);
  const blob = Buffer.from(m[2]!, 'base64');
  const key = parseSshPublicKeyBlob(blob, code, what);
  if (key.type !== m[1])
    throw new SigilError(code, `${what}: the type "${m[1]}" does not match the key blob (${key.type})`);
  return { ...key, comment: m[3] ?? '' };
}

/** The SSH blob of a node:crypto public (or private) key. */
export function sshPublicKeyFromKeyObject(k: KeyObject): SshPublicKey {
  const pub = k.type === 'private' ? createPublicKey(k) : k;
  const jwk = pub.export({ format: 'jwk' });
  const w = new SshWriter();
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') {
    w.string('ssh-ed25519').string(Buffer.from(jwk.x!, 'base64url'));
  } else if (jwk.kty === 'EC') {
    const type = Object.keys(ECDSA).find((t) => ECDSA[t]!.jwkCrv === jwk.crv);
    if (!type) throw new TypeError(`unsupported EC curve ${String(jwk.crv)} for SSH`);
    const q = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
    w.string(type).string(ECDSA[type]!.curve).string(q);
  } else if (jwk.kty === 'RSA') {
    w.string('ssh-rsa').mpint(Buffer.from(jwk.e!, 'base64url')).mpint(Buffer.from(jwk.n!, 'base64url'));
  } else {
    throw new TypeError(`unsupported key type ${String(jwk.kty)} for SSH`);
  }
  return parseSshPublicKeyBlob(w.toBuffer(), 'internal');
}

/** `<type> <base64> [comment]`, no trailing newline. */
export function formatAuthorizedKey(blob: Buffer, comment = ''): string {
  const type = new SshReader(blob, 'internal', 'SSH key blob').text('key type');
  return `${type} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}

/** `SHA256:<base64, unpadded>` as ssh-keygen -l prints it. */
export function sshFingerprint(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}
