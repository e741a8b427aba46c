/**
 * SPIFFE ID syntax (SPIFFE-ID spec §2): `spiffe://<trust domain><path>`.
 * - trust domain (§2.1): lowercase letters, digits, '.', '-', '_'; at most 255 characters.
 * - path (§2.2): '/'-separated segments of letters, digits, '.', '-', '_'; no empty, '.' or
 *   '..' segments, no trailing '/'; no query, fragment, port, userinfo or percent-encoding.
 * - whole ID (§2.3): at most 2048 bytes.
 * IDs are compared as strings, so anything not canonical is refused rather than normalised.
 */
import { SigilError, type ErrorCode } from '../errors.js';

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export interface SpiffeId {
  trustDomain: string;
  /** '' for the trust domain's own ID, else starts with '/'. */
  path: string;
}

export function parseSpiffeId(id: string, code: ErrorCode = 'bad_request'): SpiffeId {
  if (typeof id !== 'string') throw new TypeError('SPIFFE ID must be a string');
  if (!id.startsWith('spiffe://'))
    throw new SigilError(code, `invalid SPIFFE ID "${id.slice(0, 80)}": scheme must be spiffe://`);
  if (Buffer.byteLength(id) > 2048) throw new SigilError(code, 'invalid SPIFFE ID: longer than 2048 bytes');
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  checkTrustDomain(trustDomain, code);
  if (path !== '') {
    const segments = path.slice(1).split('/');
    for (const s of segments) {
      if (s === '' || s === '.' || s === '..' || !SEGMENT.test(s)) {
        throw new SigilError(
          code,
          `invalid SPIFFE ID "${id.slice(0, 200)}": path segment "${s}" is empty, relative or has characters outside [A-Za-z0-9._-]`,
        );
      }
    }
  }
  return { trustDomain, path };
}

export function checkTrustDomain(td: string, code: ErrorCode = 'bad_request'): void {
  if (typeof td !== 'string' || !TRUST_DOMAIN.test(td)) {
    throw new SigilError(
      code,
      `invalid trust domain "${String(td).slice(0, 80)}": use 1..255 lowercase letters, digits, '.', '-' or '_'`,
    );
  }
}

/** `spiffe://<td>` — the ID of the trust domain itself, used on signing certificates. */
export function trustDomainId(td: string, code: ErrorCode = 'bad_request'): string {
  checkTrustDomain(td, code);
  return `spiffe://${td}`;
}
