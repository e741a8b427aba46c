/**
 * GeneralName (RFC 5280 §4.2.1.6) in all the forms name constraints care about. cert-reader's
 * decodeGeneralNames keeps only what SVIDs use (URI, DNS, IP); path validation of foreign
 * certificates also needs rfc822Name and directoryName, and must notice the forms it does not
 * understand rather than skip them.
 */
import type { ErrorCode } from '../errors.js';
import { TAG } from './der.js';
import { DerReader, type DerNode } from './der-reader.js';
import { readName, type Rdn } from './name-reader.js';

export type GeneralName =
  | { kind: 'dns' | 'email' | 'uri'; value: string }
  | { kind: 'ip'; value: Buffer }
  | { kind: 'dn'; value: Rdn[] }
  /** otherName [0], x400Address [3], ediPartyName [5], registeredID [8]. */
  | { kind: 'other'; tag: number };

export function readGeneralName(r: DerReader, n: DerNode, code: ErrorCode): GeneralName {
  switch (n.tag) {
    case 0x81:
      return { kind: 'email', value: r.content(n).toString('latin1') };
    case 0x82:
      return { kind: 'dns', value: r.content(n).toString('latin1') };
    case 0x86:
      return { kind: 'uri', value: r.content(n).toString('latin1') };
    case 0x87:
      return { kind: 'ip', value: Buffer.from(r.content(n)) };
    case 0xa4: {
      // directoryName [4] is EXPLICIT (Name is a CHOICE): the content is the Name's TLV.
      const [name] = r.children(n);
      return {
        kind: 'dn',
        value: readName(Buffer.from(r.bytes(r.expect(name, TAG.SEQUENCE, 'directoryName'))), code, 'directoryName'),
      };
    }
    default:
      return { kind: 'other', tag: n.tag };
  }
}

/** SubjectAltName / IssuerAltName value: GeneralNames ::= SEQUENCE OF GeneralName. */
export function readGeneralNames(
  value: Buffer,
  code: ErrorCode = 'bad_certificate',
  what = 'subjectAltName',
): GeneralName[] {
  const r = new DerReader(value, code, what);
  return r.children(r.expect(r.root(), TAG.SEQUENCE, 'GeneralNames')).map((n) => readGeneralName(r, n, code));
}
