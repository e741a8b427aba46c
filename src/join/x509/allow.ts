/**
 * Allow rules of an x509 join rule: which of the certificates a trusted CA issued may join.
 *
 *   allow:
 *     - { subject_cn: "gw-*", issuer: "CN=Factory CA, O=Acme" }
 *     - { san_dns: "*.edge.example.com", eku: [clientAuth] }
 *
 * The device certificate must match at least one entry; an entry matches when every field it
 * gives matches (AND). Patterns are globs: `*` any run of characters, `?` one character,
 * anchored at both ends; case-sensitive except DNS names. An empty entry is refused at apply
 * time — it would allow everything, which is what leaving `allow` out already says.
 */
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { attributeValues, dnMatches, formatName, parseDnPattern, ATTRIBUTE_NAMES } from '../../pki/name-reader.js';
import { findExtension } from '../../pki/cert-reader.js';
import { DerReader } from '../../pki/der-reader.js';
import { TAG } from '../../pki/der.js';
import { OID } from '../../pki/oids.js';
import { describeCert, type ParsedCert } from '../x509-cert.js';

/** Key purposes by their RFC 5280 §4.2.1.12 names. */
export const EKU_NAMES: Record<string, string> = {
  serverAuth: OID.serverAuth,
  clientAuth: OID.clientAuth,
  codeSigning: '1.3.6.1.5.5.7.3.3',
  emailProtection: '1.3.6.1.5.5.7.3.4',
  timeStamping: '1.3.6.1.5.5.7.3.8',
  OCSPSigning: '1.3.6.1.5.5.7.3.9',
};

const glob = z.string().min(1).max(256);

export const allowEntrySchema = z
  .strictObject({
    /** Issuer DN of the device certificate, e.g. "CN=Factory CA, O=Acme" (attribute order free). */
    issuer: z.string().min(1).max(1024).optional(),
    subject_cn: glob.optional(),
    subject_ou: glob.optional(),
    /** The subject's X.520 serialNumber attribute (IEEE 802.1AR puts the device serial there). */
    subject_serial_number: glob.optional(),
    san_dns: glob.optional(),
    san_uri: glob.optional(),
    /** Certificate serial numbers, hex (colons allowed). */
    serials: z
      .array(z.string().regex(/^(0x)?[0-9A-Fa-f:]{1,128}$/, 'serials are hex'))
      .min(1)
      .max(100_000)
      .optional(),
    /** Key purposes the device certificate must all carry: names (clientAuth, …) or dotted OIDs. */
    eku: z.array(z.string().min(1)).min(1).max(16).optional(),
  })
  .superRefine((e, ctx) => {
    if (Object.keys(e).length === 0)
      ctx.addIssue({
        code: 'custom',
        message: 'an allow entry needs at least one field (leave allow out to allow every certificate the CAs issued)',
      });
    if (e.issuer !== undefined) {
      try {
        parseDnPattern(e.issuer);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['issuer'], message: (err as Error).message });
      }
    }
    for (const p of e.eku ?? []) {
      if (EKU_NAMES[p] === undefined && !/^\d+(\.\d+)+$/.test(p))
        ctx.addIssue({
          code: 'custom',
          path: ['eku'],
          message: `"${p}" is not a key purpose name (${Object.keys(EKU_NAMES).join(', ')}) or a dotted OID`,
        });
    }
  });
export type AllowEntry = z.infer<typeof allowEntrySchema>;

/** ECMAScript's case folding for a non-unicode /i regex (Canonicalize, ECMA-262 §22.2.2.7.3), per UTF-16 unit. */
function fold(c: string): string {
  const up = c.toUpperCase();
  return up.length === 1 ? up : c;
}

/**
 * `*` any run of characters (newlines too), `?` one character, everything else literal; whole
 * value. Matched directly, in O(pattern × value) at worst, so nothing is compiled or cached.
 */
export function globMatch(pattern: string, value: string, ignoreCase = false): boolean {
  const same = ignoreCase
    ? (a: string, b: string): boolean => a === b || fold(a) === fold(b)
    : (a: string, b: string): boolean => a === b;
  let p = 0;
  let v = 0;
  let star = -1;
  let resume = 0;
  while (v < value.length) {
    const pc = pattern[p];
    if (pc === '*') {
      star = p++;
      resume = v;
    } else if (pc !== undefined && (pc === '?' || same(pc, value[v]!))) {
      p++;
      v++;
    } else if (star >= 0) {
      p = star + 1;
      v = ++resume;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

const normSerial = (s: string): string =>
  s
    .replace(/^0x/i, '')
    .replace(/:/g, '')
    .toLowerCase()
    .replace(/^0+(?=.)/, '');

function ekuOf(leaf: ParsedCert): Set<string> | undefined {
  const ext = findExtension(leaf.fields.extensions, OID.extKeyUsage);
  if (ext === undefined) return undefined;
  const r = new DerReader(ext.value, 'x509_chain_malformed', 'extKeyUsage');
  return new Set(
    r.children(r.expect(r.root(), TAG.SEQUENCE, 'ExtKeyUsageSyntax')).map((n) => r.oid(n, 'KeyPurposeId')),
  );
}

/** Why `entry` does not match `leaf`, or undefined when it does. */
function mismatch(entry: AllowEntry, leaf: ParsedCert): string | undefined {
  const anyOf = (values: string[], pattern: string, field: string, ci = false): string | undefined =>
    values.some((v) => globMatch(pattern, v, ci))
      ? undefined
      : `${field} ${values.length ? values.map((v) => `"${v}"`).join(', ') : '(none)'} does not match "${pattern}"`;
  if (entry.issuer !== undefined && !dnMatches(leaf.issuer, parseDnPattern(entry.issuer)))
    return `issuer "${formatName(leaf.issuer)}" is not "${entry.issuer}"`;
  const checks: Array<string | undefined> = [
    entry.subject_cn === undefined
      ? undefined
      : anyOf(attributeValues(leaf.subject, OID.commonName), entry.subject_cn, 'subject CN'),
    entry.subject_ou === undefined
      ? undefined
      : anyOf(attributeValues(leaf.subject, OID.organizationalUnitName), entry.subject_ou, 'subject OU'),
    entry.subject_serial_number === undefined
      ? undefined
      : anyOf(
          attributeValues(leaf.subject, ATTRIBUTE_NAMES.SERIALNUMBER!),
          entry.subject_serial_number,
          'subject serialNumber',
        ),
    entry.san_dns === undefined
      ? undefined
      : anyOf(
          leaf.san.flatMap((n) => (n.kind === 'dns' ? [n.value] : [])),
          entry.san_dns,
          'SAN DNS',
          true,
        ),
    entry.san_uri === undefined
      ? undefined
      : anyOf(
          leaf.san.flatMap((n) => (n.kind === 'uri' ? [n.value] : [])),
          entry.san_uri,
          'SAN URI',
        ),
  ];
  const failed = checks.find((c) => c !== undefined);
  if (failed !== undefined) return failed;
  if (entry.serials !== undefined && !entry.serials.some((s) => normSerial(s) === leaf.serialHex))
    return `serial ${leaf.serialHex} is not listed`;
  if (entry.eku !== undefined) {
    const have = ekuOf(leaf) ?? new Set<string>();
    const missing = entry.eku.find((p) => !have.has(EKU_NAMES[p] ?? p));
    if (missing !== undefined) return `extended key usage lacks ${missing}`;
  }
  return undefined;
}

/** Throw `x509_not_allowed` unless some entry matches (no entries: everything is allowed). */
export function checkAllowed(entries: readonly AllowEntry[] | undefined, leaf: ParsedCert, rule: string): void {
  if (entries === undefined || entries.length === 0) return;
  const reasons: string[] = [];
  for (const e of entries) {
    const why = mismatch(e, leaf);
    if (why === undefined) return;
    reasons.push(why);
  }
  const shown = reasons.slice(0, 3).join('; ') + (reasons.length > 3 ? `; … (${reasons.length} entries)` : '');
  throw new SigilError(
    'x509_not_allowed',
    `${describeCert(leaf)} matches no allow entry of join_rule ${rule}: ${shown}`,
  );
}
