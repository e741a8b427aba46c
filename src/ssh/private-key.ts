/**
 * The OpenSSH private key file (PROTOCOL.key, "openssh-key-v1"), unencrypted: what
 * `ssh-keygen -N ''` writes and what ssh and sshd read for every key type (older OpenSSH
 * releases cannot read an Ed25519 key in PKCS#8, so the agent writes this format).
 *
 *   "openssh-key-v1\0"  string cipher "none"  string kdf "none"  string kdf options ""
 *   uint32 1  string public key blob
 *   string private section: uint32 check, uint32 check (equal), type-specific private fields,
 *          string comment, padding 1,2,3,… to a multiple of 8
 */
import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { SigilError, type ErrorCode } from '../errors.js';
import { fromPem } from '../pki/pem.js';
import { parseSshPublicKeyBlob, sshPublicKeyFromKeyObject, type SshPublicKey } from './public-key.js';
import { SshReader, SshWriter } from './wire.js';

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
export const OPENSSH_PEM_LABEL = 'OPENSSH PRIVATE KEY';

/** Encode an Ed25519 or ECDSA private key as an unencrypted OpenSSH private key file. */
export function encodeOpenSshPrivateKey(key: KeyObject, comment = ''): string {
  if (key.type !== 'private') throw new TypeError('encodeOpenSshPrivateKey needs a private key');
  const pub = sshPublicKeyFromKeyObject(key);
  const jwk = key.export({ format: 'jwk' });
  const check = randomBytes(4).readUInt32BE();
  const priv = new SshWriter().uint32(check).uint32(check);
  const fields = new SshReader(pub.blob, 'internal', 'public key');
  const type = fields.text('type');
  if (type === 'ssh-ed25519') {
    const pk = fields.string('pk');
    // The "private key" is seed || public key (64 bytes), as OpenSSH stores it.
    priv
      .string(type)
      .string(pk)
      .string(Buffer.concat([Buffer.from(jwk.d!, 'base64url'), pk]));
  } else if (type.startsWith('ecdsa-sha2-')) {
    priv.string(type).string(fields.string('curve')).string(fields.string('Q')).mpint(Buffer.from(jwk.d!, 'base64url'));
  } else {
    throw new TypeError(`OpenSSH private key files are written for Ed25519 and ECDSA keys only, not ${type}`);
  }
  priv.string(comment);
  let section = priv.toBuffer();
  const pad = (8 - (section.length % 8)) % 8;
  section = Buffer.concat([section, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = new SshWriter()
    .raw(MAGIC)
    .string('none')
    .string('none')
    .string('')
    .uint32(1)
    .string(pub.blob)
    .string(section)
    .toBuffer();
  const b64 = body.toString('base64');
  let out = `-----BEGIN ${OPENSSH_PEM_LABEL}-----\n`;
  // ssh-keygen wraps at 70 columns.
  for (let i = 0; i < b64.length; i += 70) out += b64.slice(i, i + 70) + '\n';
  return out + `-----END ${OPENSSH_PEM_LABEL}-----\n`;
}

/** The public key in the clear header of an OpenSSH private key file (no decryption needed). */
export function openSshPrivateKeyPublic(
  pem: string,
  code: ErrorCode = 'config_invalid',
  what = 'OpenSSH private key',
): SshPublicKey {
  const der = fromPem(pem, OPENSSH_PEM_LABEL, code);
  if (!der.subarray(0, MAGIC.length).equals(MAGIC)) throw new SigilError(code, `${what}: not an openssh-key-v1 file`);
  const r = new SshReader(der.subarray(MAGIC.length), code, what);
  r.text('cipher');
  r.text('kdf');
  r.string('kdf options');
  if (r.uint32('key count') !== 1) r.fail('exactly one key expected');
  return parseSshPublicKeyBlob(r.string('public key'), code, what);
}

/**
 * Decode an unencrypted OpenSSH private key file into a KeyObject (Ed25519 and ECDSA), checking
 * the private key matches the public one. Used to load a host key the agent wrote earlier.
 */
export function decodeOpenSshPrivateKey(
  pem: string,
  code: ErrorCode = 'config_invalid',
  what = 'OpenSSH private key',
): KeyObject {
  const der = fromPem(pem, OPENSSH_PEM_LABEL, code);
  if (!der.subarray(0, MAGIC.length).equals(MAGIC)) throw new SigilError(code, `${what}: not an openssh-key-v1 file`);
  const r = new SshReader(der.subarray(MAGIC.length), code, what);
  if (r.text('cipher') !== 'none' || r.text('kdf') !== 'none')
    r.fail('the key is encrypted (Sigil writes and reads unencrypted keys only)');
  r.string('kdf options');
  if (r.uint32('key count') !== 1) r.fail('exactly one key expected');
  const pub = parseSshPublicKeyBlob(r.string('public key'), code, what);
  const p = new SshReader(r.string('private section'), code, what);
  if (p.uint32('check') !== p.uint32('check')) r.fail('the check integers differ');
  const type = p.text('type');
  let key: KeyObject;
  const pubJwk = pub.key.export({ format: 'jwk' });
  if (type === 'ssh-ed25519') {
    p.string('pk');
    const sk = p.string('sk');
    if (sk.length !== 64) r.fail('the Ed25519 private key must be 64 bytes');
    key = createPrivateKey({ key: { ...pubJwk, d: sk.subarray(0, 32).toString('base64url') }, format: 'jwk' });
  } else if (type.startsWith('ecdsa-sha2-')) {
    p.string('curve');
    p.string('Q');
    const d = p.mpintUnsigned('d');
    const size = Buffer.from(pubJwk.x!, 'base64url').length;
    const padded = Buffer.concat([Buffer.alloc(Math.max(0, size - d.length)), d]);
    key = createPrivateKey({ key: { ...pubJwk, d: padded.toString('base64url') }, format: 'jwk' });
  } else {
    return r.fail(`key type ${type} is not supported`);
  }
  if (!sshPublicKeyFromKeyObject(key).blob.equals(pub.blob)) r.fail('the private key does not match the public key');
  return key;
}
