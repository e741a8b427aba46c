/**
 * Name constraints (RFC 5280 §4.2.1.10, applied as in §6.1.3 (b)–(c)).
 *
 * A CA's constraints bind every certificate below it in the path: each name of a constrained
 * form (the subject DN as directoryName, emailAddress attributes of the subject as rfc822Name,
 * and every subjectAltName entry) must fall within one of the permitted subtrees of its form,
 * if any are given, and within none of the excluded subtrees. Checking each CA's constraints
 * separately against each certificate below it is the same as §6.1's intersection of permitted
 * and union of excluded sets.
 *
 * Forms: dNSName, rfc822Name, uniformResourceIdentifier (its host), iPAddress, directoryName.
 * A constraint of any other form, or with minimum ≠ 0 / a maximum (§4.2.1.10: MUST NOT), is
 * refused as a whole — a constraint Sigil cannot evaluate must not be treated as no constraint.
 */
import type { ErrorCode } from '../errors.js';
import { TAG } from './der.js';
import { DerReader } from './der-reader.js';
import { readGeneralName, type GeneralName } from './general-names.js';
import { attributeValues, ATTRIBUTE_NAMES, rdnEqual, type Rdn } from './name-reader.js';

type Subtree = Exclude<GeneralName, { kind: 'other' }>;

export interface NameConstraints {
  permitted: Subtree[];
  excluded: Subtree[];
}

/** Thrown (as TypeError-free data) for constraints that cannot be evaluated. */
export class UnsupportedNameConstraint extends Error {}

export function decodeNameConstraints(value: Buffer, code: ErrorCode = 'bad_certificate'): NameConstraints {
  const r = new DerReader(value, code, 'nameConstraints');
  const out: NameConstraints = { permitted: [], excluded: [] };
  for (const part of r.children(r.expect(r.root(), TAG.SEQUENCE, 'NameConstraints'))) {
    if (part.tag !== 0xa0 && part.tag !== 0xa1) r.fail(`unexpected field with tag 0x${part.tag.toString(16)}`);
    const list = part.tag === 0xa0 ? out.permitted : out.excluded;
    // GeneralSubtrees [0]/[1] IMPLICIT SEQUENCE OF GeneralSubtree
    for (const st of r.children(part)) {
      const [base, ...rest] = r.children(r.expect(st, TAG.SEQUENCE, 'GeneralSubtree'));
      if (base === undefined) r.fail('GeneralSubtree without a base');
      for (const extra of rest) {
        // minimum [0] DEFAULT 0 (absent in DER when 0), maximum [1]: both MUST be absent.
        throw new UnsupportedNameConstraint(
          `GeneralSubtree with ${extra.tag === 0x80 ? 'minimum' : 'maximum'} (RFC 5280 §4.2.1.10 forbids it)`,
        );
      }
      const gn = readGeneralName(r, base, code);
      if (gn.kind === 'other')
        throw new UnsupportedNameConstraint(`name constraint of form [${gn.tag & 0x1f}] is not supported`);
      if (gn.kind === 'ip' && gn.value.length !== 8 && gn.value.length !== 32)
        r.fail('iPAddress constraint must be address and mask (8 or 32 octets)');
      list.push(gn);
    }
  }
  return out;
}

/** The names of a certificate that constraints apply to. */
export function constrainedNames(subject: Rdn[], san: GeneralName[]): GeneralName[] {
  const names: GeneralName[] = [...san];
  if (subject.length > 0) names.push({ kind: 'dn', value: subject });
  // §4.2.1.10: rfc822Name constraints also apply to emailAddress attributes of the subject.
  for (const email of attributeValues(subject, ATTRIBUTE_NAMES.EMAILADDRESS!))
    names.push({ kind: 'email', value: email });
  return names;
}

/** The first violation, described, or undefined when every name satisfies the constraints. */
export function nameConstraintViolation(nc: NameConstraints, names: readonly GeneralName[]): string | undefined {
  for (const name of names) {
    if (name.kind === 'other') continue;
    const permitted = nc.permitted.filter((p) => p.kind === name.kind);
    if (permitted.length > 0 && !permitted.some((p) => within(name, p)))
      return `${describeName(name)} is not within the permitted ${name.kind} subtrees`;
    const hit = nc.excluded.find((p) => p.kind === name.kind && within(name, p));
    if (hit !== undefined) return `${describeName(name)} is within the excluded subtree ${describeName(hit)}`;
  }
  return undefined;
}

function describeName(n: GeneralName): string {
  if (n.kind === 'dn')
    return `directoryName "${n.value
      .flat()
      .map((a) => a.value)
      .join(', ')}"`;
  if (n.kind === 'ip') return `iPAddress ${n.value.toString('hex')}`;
  if (n.kind === 'other') return `name [${n.tag & 0x1f}]`;
  return `${n.kind} "${n.value}"`;
}

function within(name: Subtree, base: Subtree): boolean {
  switch (base.kind) {
    case 'dns':
      return name.kind === 'dns' && dnsWithin(name.value, base.value);
    case 'email':
      return name.kind === 'email' && emailWithin(name.value, base.value);
    case 'uri': {
      if (name.kind !== 'uri') return false;
      const host = uriHost(name.value);
      // A URI without a host cannot be shown to satisfy a host constraint.
      return host !== undefined && hostWithin(host, base.value);
    }
    case 'ip':
      return name.kind === 'ip' && ipWithin(name.value, base.value);
    case 'dn':
      return (
        name.kind === 'dn' &&
        base.value.length <= name.value.length &&
        base.value.every((rdn, i) => rdnEqual(rdn, name.value[i]!))
      );
  }
}

/** dNSName: the base plus zero or more labels on the left; a leading "." means subdomains only. */
function dnsWithin(name: string, base: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  const b = base.toLowerCase().replace(/\.$/, '');
  if (b === '') return true;
  if (b.startsWith('.')) return n.endsWith(b);
  return n === b || n.endsWith(`.${b}`);
}

/** URI host: "host" is exactly that host; ".example.com" any host in that domain (§4.2.1.10). */
function hostWithin(host: string, base: string): boolean {
  const h = host.toLowerCase();
  const b = base.toLowerCase();
  return b.startsWith('.') ? h.endsWith(b) : h === b;
}

/** rfc822Name: a mailbox, a host (all mailboxes there) or ".domain" (mailboxes in subdomains). */
function emailWithin(name: string, base: string): boolean {
  const at = name.lastIndexOf('@');
  if (at < 0) return false;
  if (base.includes('@'))
    return (
      name.slice(0, at) === base.slice(0, base.lastIndexOf('@')) &&
      name.slice(at + 1).toLowerCase() === base.slice(base.lastIndexOf('@') + 1).toLowerCase()
    );
  return hostWithin(name.slice(at + 1), base);
}

function uriHost(uri: string): string | undefined {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)/.exec(uri);
  const host = m?.[1];
  return host ? host : undefined;
}

function ipWithin(addr: Buffer, base: Buffer): boolean {
  const len = base.length / 2;
  if (addr.length !== len) return false;
  for (let i = 0; i < len; i++) if ((addr[i]! & base[len + i]!) !== (base[i]! & base[len + i]!)) return false;
  return true;
}
