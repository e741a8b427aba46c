/**
 * PKCS#11 URIs (RFC 7512), minimally: the path attributes that select a token and a key, and
 * the query attributes that say where the module and the PIN are.
 *
 *   pkcs11:token=sigil;object=agent-key;id=%01%02;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sigil/pin
 *
 * `pin-value` (§2.4) is refused: a PIN written into a URI ends up in configs, process lists and
 * logs. Sigil reads PINs only from a file or an environment variable.
 */
import { SigilError } from '../../errors.js';

export interface Pkcs11Uri {
  token?: string;
  /** CKA_LABEL of the key. */
  object?: string;
  /** CKA_ID of the key, as bytes. */
  id?: Buffer;
  type?: 'private' | 'public' | 'cert' | 'secret-key' | 'data';
  modulePath?: string;
  /** From `pin-source=file:/path` (RFC 7512 §2.4 `pin-source` as a file URI or absolute path). */
  pinFile?: string;
}

const PATH_ATTRS = new Set([
  'token',
  'object',
  'id',
  'type',
  'manufacturer',
  'model',
  'serial',
  'library-manufacturer',
  'library-description',
  'library-version',
  'slot-description',
  'slot-id',
  'slot-manufacturer',
]);
const TYPES = new Set(['private', 'public', 'cert', 'secret-key', 'data']);

/** Percent-decode to bytes (§2.3: pk11-pchar or pct-encoded). */
function pctBytes(s: string, attr: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '%') {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex))
        throw new SigilError('config_invalid', `PKCS#11 URI: bad percent-encoding in "${attr}"`);
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      out.push(...Buffer.from(c, 'utf8'));
    }
  }
  return Buffer.from(out);
}

export function parsePkcs11Uri(uri: string): Pkcs11Uri {
  if (typeof uri !== 'string' || !uri.startsWith('pkcs11:'))
    throw new SigilError('config_invalid', 'a PKCS#11 key URI must start with "pkcs11:" (RFC 7512)');
  const rest = uri.slice('pkcs11:'.length);
  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q + 1);
  const out: Pkcs11Uri = {};
  const seen = new Set<string>();
  for (const part of path.split(';').filter((p) => p.length > 0)) {
    const eq = part.indexOf('=');
    if (eq <= 0)
      throw new SigilError('config_invalid', `PKCS#11 URI: path attribute "${part.slice(0, 40)}" has no value`);
    const name = part.slice(0, eq);
    const value = part.slice(eq + 1);
    if (!PATH_ATTRS.has(name))
      throw new SigilError('config_invalid', `PKCS#11 URI: unknown path attribute "${name.slice(0, 40)}"`);
    if (seen.has(name)) throw new SigilError('config_invalid', `PKCS#11 URI: attribute "${name}" appears twice`);
    seen.add(name);
    if (name === 'token') out.token = pctBytes(value, name).toString('utf8');
    else if (name === 'object') out.object = pctBytes(value, name).toString('utf8');
    else if (name === 'id') out.id = pctBytes(value, name);
    else if (name === 'type') {
      if (!TYPES.has(value))
        throw new SigilError(
          'config_invalid',
          `PKCS#11 URI: type "${value.slice(0, 20)}" is not one of ${[...TYPES].join(', ')}`,
        );
      out.type = value as Pkcs11Uri['type'];
    }
    // Other path attributes narrow the token further; Sigil selects by token label only.
  }
  for (const part of query.split('&').filter((p) => p.length > 0)) {
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : pctBytes(part.slice(eq + 1), name).toString('utf8');
    if (name === 'pin-value')
      throw new SigilError(
        'config_invalid',
        'PKCS#11 URI: pin-value is refused; give the PIN in a file (pin-source=file:/path, or pin_file) or an environment variable (pin_env)',
      );
    if (name === 'module-path') out.modulePath = value;
    else if (name === 'pin-source') {
      const file = value.startsWith('file:') ? value.slice('file:'.length).replace(/^\/\/(?=\/)/, '') : value;
      if (!file.startsWith('/'))
        throw new SigilError('config_invalid', 'PKCS#11 URI: pin-source must be an absolute file path or a file: URI');
      out.pinFile = file;
    }
    // module-name and vendor attributes are accepted and ignored.
  }
  return out;
}

/** Percent-encode everything but RFC 3986 unreserved characters (always a valid pk11-pchar). */
function pct(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/**
 * The RFC 7512 URI of a private key: `pkcs11:token=…;object=…;id=…;type=private`, the form
 * workloads (OpenSSL's pkcs11 provider, p11-kit) take. Path attributes only: neither the module
 * nor where the PIN is, and never the PIN.
 */
export function formatPkcs11Uri(key: { tokenLabel: string; keyLabel?: string; keyId?: string }): string {
  const parts = [`token=${pct(Buffer.from(key.tokenLabel, 'utf8'))}`];
  if (key.keyLabel !== undefined) parts.push(`object=${pct(Buffer.from(key.keyLabel, 'utf8'))}`);
  // Every byte of the id percent-encoded, as RFC 7512 §2.3 recommends for binary attributes.
  if (key.keyId !== undefined)
    parts.push(`id=${[...Buffer.from(key.keyId, 'hex')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')}`);
  parts.push('type=private');
  return `pkcs11:${parts.join(';')}`;
}
