/**
 * Name constraints (pki/name-constraints.ts, RFC 5280 §4.2.1.10) as the x509 join applies them to
 * device chains, form by form, at the edges each comparison has. Attack: a CA constrained to
 * acme.test (a partner's sub-CA, a factory line) issues a device whose name escapes it — through
 * letter case, a trailing dot, a userinfo that looks like a host, a prefix before the URI scheme,
 * an IPv4 address against an IPv6 range, a shorter DN than the permitted one, or a constraint
 * form Sigil cannot read (which must refuse, never mean "unconstrained").
 */
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { constructed, explicit, ia5String, implicit, oid, sequence, set, utf8String } from '../../../src/pki/der.js';
import type { GeneralName } from '../../../src/pki/general-names.js';
import {
  constrainedNames,
  decodeNameConstraints,
  nameConstraintViolation,
  UnsupportedNameConstraint,
} from '../../../src/pki/name-constraints.js';
import { readName } from '../../../src/pki/name-reader.js';
import { OID } from '../../../src/pki/oids.js';

const dns = (s: string): Buffer => implicit(2, Buffer.from(s));
const email = (s: string): Buffer => implicit(1, Buffer.from(s));
const uri = (s: string): Buffer => implicit(6, Buffer.from(s));
const ipc = (bytes: number[]): Buffer => implicit(7, Buffer.from(bytes));
const dirName = (...rdns: Array<[string, string]>): Buffer =>
  sequence(...rdns.map(([t, v]) => set(sequence(oid(t), utf8String(v)))));
const nc = (permitted: Buffer[], excluded: Buffer[] = []): Buffer =>
  sequence(
    ...(permitted.length
      ? [
          constructed(
            0xa0,
            permitted.map((b) => sequence(b)),
          ),
        ]
      : []),
    ...(excluded.length
      ? [
          constructed(
            0xa1,
            excluded.map((b) => sequence(b)),
          ),
        ]
      : []),
  );
const check = (ncDer: Buffer, names: GeneralName[]): string | undefined =>
  nameConstraintViolation(decodeNameConstraints(ncDer), names);
const D = (value: string): GeneralName => ({ kind: 'dns', value });
const E = (value: string): GeneralName => ({ kind: 'email', value });
const U = (value: string): GeneralName => ({ kind: 'uri', value });
const IP = (bytes: number[]): GeneralName => ({ kind: 'ip', value: Buffer.from(bytes) });

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe('decoding: what cannot be evaluated is refused, never ignored', () => {
  it('reads permitted [0] and excluded [1] into their own lists', () => {
    const got = decodeNameConstraints(nc([dns('acme.test')], [dns('evil.acme.test'), email('x.test')]));
    expect(got.permitted).toEqual([D('acme.test')]);
    expect(got.excluded).toEqual([D('evil.acme.test'), E('x.test')]);
  });

  it('a field other than [0]/[1], a subtree without a base: malformed, with the reader’s code', () => {
    const odd = thrown(() =>
      decodeNameConstraints(sequence(constructed(0xa2, [sequence(dns('a'))])), 'x509_chain_malformed'),
    );
    expect(odd).toBeInstanceOf(SigilError);
    expect((odd as SigilError).code).toBe('x509_chain_malformed');
    expect(odd.message).toBe('nameConstraints: unexpected field with tag 0xa2');
    const empty = thrown(() => decodeNameConstraints(sequence(constructed(0xa0, [sequence()]))));
    expect((empty as SigilError).code).toBe('bad_certificate');
    expect(empty.message).toBe('nameConstraints: GeneralSubtree without a base');
  });

  it('minimum or maximum in a subtree (§4.2.1.10: MUST NOT) is unsupported, named', () => {
    const min = thrown(() =>
      decodeNameConstraints(sequence(constructed(0xa0, [sequence(dns('a.test'), implicit(0, Buffer.from([1])))]))),
    );
    expect(min).toBeInstanceOf(UnsupportedNameConstraint);
    expect(min.message).toBe('GeneralSubtree with minimum (RFC 5280 §4.2.1.10 forbids it)');
    const max = thrown(() =>
      decodeNameConstraints(sequence(constructed(0xa1, [sequence(dns('a.test'), implicit(1, Buffer.from([3])))]))),
    );
    expect(max).toBeInstanceOf(UnsupportedNameConstraint);
    expect(max.message).toBe('GeneralSubtree with maximum (RFC 5280 §4.2.1.10 forbids it)');
  });

  it('a constraint of another form (otherName, registeredID) is unsupported, naming the form', () => {
    const other = thrown(() =>
      decodeNameConstraints(nc([constructed(0xa0, [oid('1.2.3'), explicit(0, ia5String('x'))])])),
    );
    expect(other).toBeInstanceOf(UnsupportedNameConstraint);
    expect(other.message).toBe('name constraint of form [0] is not supported');
    const rid = thrown(() => decodeNameConstraints(nc([implicit(8, Buffer.from([0x2a, 0x03]))])));
    expect(rid.message).toBe('name constraint of form [8] is not supported');
  });

  it('an iPAddress constraint is address and mask: 8 or 32 octets, nothing else', () => {
    expect(decodeNameConstraints(nc([ipc([10, 0, 0, 0, 255, 0, 0, 0])])).permitted).toHaveLength(1);
    expect(decodeNameConstraints(nc([ipc(Array(32).fill(0))])).permitted).toHaveLength(1);
    for (const len of [4, 16, 9]) {
      const e = thrown(() => decodeNameConstraints(nc([ipc(Array(len).fill(1))])));
      expect(e.message).toBe('nameConstraints: iPAddress constraint must be address and mask (8 or 32 octets)');
    }
  });
});

describe('the names a certificate is checked by', () => {
  it('every SAN, then the subject as a directoryName (if not empty), then its emailAddress attributes', () => {
    const subject = readName(dirName([OID.commonName, 'gw-1'], ['1.2.840.113549.1.9.1', 'gw@acme.test']));
    expect(constrainedNames(subject, [D('gw.acme.test'), U('spiffe://acme.test/gw')])).toEqual([
      D('gw.acme.test'),
      U('spiffe://acme.test/gw'),
      { kind: 'dn', value: subject },
      E('gw@acme.test'),
    ]);
    expect(constrainedNames([], [D('x')])).toEqual([D('x')]);
  });

  it('names of a form Sigil does not constrain are skipped', () => {
    expect(check(nc([dns('acme.test')]), [{ kind: 'other', tag: 0xa0 }])).toBeUndefined();
  });
});

describe('dNSName', () => {
  it('any of several permitted subtrees will do; none refuses', () => {
    const c = nc([dns('acme.test'), dns('acme.example')]);
    expect(check(c, [D('gw.acme.example')])).toBeUndefined();
    expect(check(c, [D('gw.evil.test')])).toBe('dns "gw.evil.test" is not within the permitted dns subtrees');
  });

  it('an excluded subtree of the same form hits only the names within it, and is named', () => {
    const c = nc([], [dns('evil.acme.test')]);
    expect(check(c, [D('gw.acme.test')])).toBeUndefined();
    expect(check(c, [D('x.evil.acme.test')])).toBe(
      'dns "x.evil.acme.test" is within the excluded subtree dns "evil.acme.test"',
    );
  });

  it('trailing dots on either side, letter case, and the empty base (every name)', () => {
    expect(check(nc([dns('acme.test.')]), [D('GW.Acme.Test.')])).toBeUndefined();
    expect(check(nc([dns('ACME.test')]), [D('gw.acme.test')])).toBeUndefined();
    expect(check(nc([dns('')]), [D('anything.example')])).toBeUndefined();
    expect(check(nc([], [dns('')]), [D('anything.example')])).toBe(
      'dns "anything.example" is within the excluded subtree dns ""',
    );
    // ".acme.test": subdomains only; "acme.test" itself and "xacme.test" are outside.
    expect(check(nc([dns('.acme.test')]), [D('a.acme.test')])).toBeUndefined();
    expect(check(nc([dns('.acme.test')]), [D('xacme.test')])).toMatch(/not within/);
    expect(check(nc([dns('acme.test')]), [D('xacme.test')])).toMatch(/not within/);
  });
});

describe('rfc822Name', () => {
  it('a mailbox: local part exact (case-sensitive), host case-insensitive', () => {
    const c = nc([email('ops@acme.test')]);
    expect(check(c, [E('ops@ACME.test')])).toBeUndefined();
    expect(check(c, [E('OPS@acme.test')])).toBe('email "OPS@acme.test" is not within the permitted email subtrees');
    expect(check(c, [E('ops@acme.testx')])).toMatch(/not within/);
    // The last @ separates the host: a local part with an @ of its own.
    expect(check(nc([email('"a@b"@acme.test')]), [E('"a@b"@acme.test')])).toBeUndefined();
  });

  it('a host: every mailbox there (any case); an address without @ is never within', () => {
    expect(check(nc([email('ACME.test')]), [E('x@acme.TEST')])).toBeUndefined();
    expect(check(nc([email('acme.test')]), [E('x@sub.acme.test')])).toMatch(/not within/);
    expect(check(nc([email('acme.test')]), [E('acme.test')])).toBe(
      'email "acme.test" is not within the permitted email subtrees',
    );
  });
});

describe('URI (its host)', () => {
  it('the host after any userinfo is what counts', () => {
    const c = nc([uri('acme.test')]);
    expect(check(c, [U('https://evil.test@acme.test/x')])).toBeUndefined();
    expect(check(c, [U('https://acme.test@evil.test/x')])).toBe(
      'uri "https://acme.test@evil.test/x" is not within the permitted uri subtrees',
    );
    expect(check(c, [U('spiffe://ACME.test/gw')])).toBeUndefined();
    expect(check(nc([uri('ACME.TEST')]), [U('https://acme.test:8443/')])).toBeUndefined();
  });

  it('a value that does not start with a scheme has no host (so is not within)', () => {
    const c = nc([uri('acme.test')]);
    expect(check(c, [U('see https://acme.test/')])).toMatch(/not within/);
    expect(check(c, [U('https:///path')])).toMatch(/not within/);
  });
});

describe('iPAddress', () => {
  it('an IPv4 address against an IPv6 range, and the reverse, is not within', () => {
    const v6 = nc([ipc([...Array(16).fill(0), ...Array(16).fill(0)])]);
    expect(check(v6, [IP([10, 0, 0, 1])])).toBe('iPAddress 0a000001 is not within the permitted ip subtrees');
    const v4 = nc([ipc([10, 0, 0, 0, 255, 0, 0, 0])]);
    expect(check(v4, [IP(Array(16).fill(0))])).toMatch(/not within/);
    expect(check(v4, [IP([10, 255, 1, 2])])).toBeUndefined();
  });
});

describe('directoryName', () => {
  const c = nc([explicit(4, dirName([OID.organizationName, 'Acme'], [OID.organizationalUnitName, 'Devices']))]);

  it('the subject must begin with every permitted RDN, in order', () => {
    const ok = readName(
      dirName([OID.organizationName, 'Acme'], [OID.organizationalUnitName, 'Devices'], [OID.commonName, 'gw']),
    );
    expect(check(c, [{ kind: 'dn', value: ok }])).toBeUndefined();
    const wrongOu = readName(
      dirName([OID.organizationName, 'Acme'], [OID.organizationalUnitName, 'Other'], [OID.commonName, 'gw']),
    );
    expect(check(c, [{ kind: 'dn', value: wrongOu }])).toBe(
      'directoryName "Acme, Other, gw" is not within the permitted dn subtrees',
    );
  });

  it('a subject that is exactly the permitted DN is within it', () => {
    const same = readName(dirName([OID.organizationName, 'Acme'], [OID.organizationalUnitName, 'Devices']));
    expect(check(c, [{ kind: 'dn', value: same }])).toBeUndefined();
  });

  it('a subject shorter than the permitted DN is not within it', () => {
    const short = readName(dirName([OID.organizationName, 'Acme']));
    expect(check(c, [{ kind: 'dn', value: short }])).toBe(
      'directoryName "Acme" is not within the permitted dn subtrees',
    );
  });
});
