/**
 * SSH signature blobs (RFC 4253 §6.6): `string format, string signature`.
 *   ssh-ed25519           the 64-byte Ed25519 signature (RFC 8709 §6)
 *   ecdsa-sha2-nistpNNN   string(mpint r, mpint s), hash by curve size (RFC 5656 §3.1.1-2)
 *   rsa-sha2-256/512      the PKCS#1 v1.5 signature (RFC 8332 §3); used only when verifying
 *
 * A Sigil SSH CA key is Ed25519 or ECDSA; {@link sshSign} signs with it, {@link sshVerify}
 * checks a certificate's signature (the agent checks what it receives, tests check both ways).
 */
import { sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { SigilError, type ErrorCode } from '../errors.js';
import type { SshPublicKey } from './public-key.js';
import { SshReader, SshWriter } from './wire.js';

const ECDSA_HASH: Record<string, { hash: string; coord: number }> = {
  'ecdsa-sha2-nistp256': { hash: 'sha256', coord: 32 },
  'ecdsa-sha2-nistp384': { hash: 'sha384', coord: 48 },
  'ecdsa-sha2-nistp521': { hash: 'sha512', coord: 66 },
};

/** The signature format a CA key signs with; Ed25519 and ECDSA only. */
export function signatureFormat(ca: SshPublicKey): string {
  if (ca.type === 'ssh-ed25519' || ca.type in ECDSA_HASH) return ca.type;
  throw new TypeError(`an SSH CA key must be Ed25519 or ECDSA, not ${ca.type}`);
}

/** Sign `data` with the CA private key; returns the signature blob. */
export function sshSign(caKey: KeyObject, ca: SshPublicKey, data: Buffer): Buffer {
  const format = signatureFormat(ca);
  if (format === 'ssh-ed25519')
    return new SshWriter()
      .string(format)
      .string(cryptoSign(null, data, caKey))
      .toBuffer();
  const { hash, coord } = ECDSA_HASH[format]!;
  const rs = cryptoSign(hash, data, { key: caKey, dsaEncoding: 'ieee-p1363' });
  const inner = new SshWriter().mpint(rs.subarray(0, coord)).mpint(rs.subarray(coord)).toBuffer();
  return new SshWriter().string(format).string(inner).toBuffer();
}

/** Verify a signature blob made by `signer` over `data`; false when it does not verify. */
export function sshVerify(
  signer: SshPublicKey,
  data: Buffer,
  signatureBlob: Buffer,
  code: ErrorCode = 'bad_certificate',
): boolean {
  const r = new SshReader(signatureBlob, code, 'SSH signature');
  const format = r.text('signature format');
  const sig = r.string('signature');
  r.end();
  if (signer.type === 'ssh-ed25519') return format === 'ssh-ed25519' && cryptoVerify(null, data, signer.key, sig);
  if (signer.type === 'ssh-rsa') {
    const hash = format === 'rsa-sha2-512' ? 'sha512' : format === 'rsa-sha2-256' ? 'sha256' : undefined;
    // ssh-rsa (SHA-1) signatures are refused, as OpenSSH ≥ 8.8 does.
    return hash !== undefined && cryptoVerify(hash, data, signer.key, sig);
  }
  const spec = ECDSA_HASH[signer.type];
  if (!spec || format !== signer.type) return false;
  const inner = new SshReader(sig, code, 'ECDSA signature');
  const rr = inner.mpintUnsigned('r');
  const ss = inner.mpintUnsigned('s');
  inner.end();
  if (rr.length > spec.coord || ss.length > spec.coord)
    throw new SigilError(code, 'SSH signature: ECDSA integer too long for the curve');
  const p1363 = Buffer.alloc(2 * spec.coord);
  rr.copy(p1363, spec.coord - rr.length);
  ss.copy(p1363, 2 * spec.coord - ss.length);
  return cryptoVerify(spec.hash, data, { key: signer.key, dsaEncoding: 'ieee-p1363' }, p1363);
}
