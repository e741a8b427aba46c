/**
 * PEM armour (RFC 7468): base64 of the DER between `-----BEGIN <label>-----` and
 * `-----END <label>-----`, wrapped at 64 characters when we write it.
 *
 * Parsing follows RFC 7468 §3's lax reading: any whitespace inside the base64 is ignored, text
 * outside the blocks is ignored (openssl writes "Certificate:" dumps there), but the base64
 * itself must be strictly valid — Buffer.from(…, 'base64') would silently skip garbage.
 */
import { SigilError, type ErrorCode } from '../errors.js';

export interface PemBlock {
  label: string;
  der: Buffer;
}

const LABEL = /^[\x21-\x2c\x2e-\x7e](?:[- ]?[\x21-\x2c\x2e-\x7e])*$/; // RFC 7468 §3 `label`

export function toPem(label: string, der: Buffer): string {
  if (!LABEL.test(label)) throw new TypeError(`invalid PEM label "${label}"`);
  const b64 = der.toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

const BLOCK = /-----BEGIN ([^\r\n]*?)-----([\s\S]*?)-----END ([^\r\n]*?)-----/g;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Every PEM block in `text`, in order. Throws `code` if there is none or one is malformed. */
export function parsePem(text: string, code: ErrorCode = 'bad_certificate'): PemBlock[] {
  if (typeof text !== 'string') throw new TypeError('PEM input must be a string');
  const blocks: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) {
    const [, begin, body, end] = m as unknown as [string, string, string, string];
    if (begin !== end) throw new SigilError(code, `PEM block "BEGIN ${begin}" is closed by "END ${end}"`);
    if (body.includes(':'))
      throw new SigilError(code, `PEM block "${begin}" has RFC 1421 headers, which are not supported`);
    const b64 = body.replace(/\s+/g, '');
    if (b64.length === 0 || !BASE64.test(b64)) throw new SigilError(code, `PEM block "${begin}" is not valid base64`);
    blocks.push({ label: begin, der: Buffer.from(b64, 'base64') });
  }
  if (blocks.length === 0) throw new SigilError(code, 'no PEM block found');
  return blocks;
}

/**
 * The DER of every block with `label` (all blocks when omitted), e.g. each certificate of a
 * bundle. Throws `code` if none matches.
 */
export function pemToDers(text: string, label?: string, code: ErrorCode = 'bad_certificate'): Buffer[] {
  const all = parsePem(text, code);
  const ders = (label === undefined ? all : all.filter((b) => b.label === label)).map((b) => b.der);
  if (ders.length === 0) {
    throw new SigilError(code, `no "${label}" PEM block found (found: ${all.map((b) => b.label).join(', ')})`);
  }
  return ders;
}

/** Exactly one block (with `label` if given). */
export function fromPem(text: string, label?: string, code: ErrorCode = 'bad_certificate'): Buffer {
  const ders = pemToDers(text, label, code);
  if (ders.length !== 1) throw new SigilError(code, `expected one ${label ?? 'PEM'} block, found ${ders.length}`);
  return ders[0]!;
}
