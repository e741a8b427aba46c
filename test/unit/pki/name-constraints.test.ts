import { describe, expect, it } from 'vitest';
import { constructed, ia5String, implicit, oid, sequence, set, utf8String, explicit } from '../../../src/pki/der.js';
import {
  constrainedNames,
  decodeNameConstraints,
  nameConstraintViolation,
  UnsupportedNameConstraint,
} from '../../../src/pki/name-constraints.js';
import { dnMatches, parseDnPattern, readName } from '../../../src/pki/name-reader.js';
import { OID } from '../../../src/pki/oids.js';
import type { GeneralName } from '../../../src/pki/general-names.js';

const dns = (s: string): Buffer => implicit(2, Buffer.from(s));
const email = (s: string): Buffer => implicit(1, Buffer.from(s));
const uri = (s: string): Buffer => implicit(6, Buffer.from(s));
const ip = (addr: number[], mask: number[]): Buffer => implicit(7, Buffer.from([...addr, ...mask]));
const name = (...rdns: Array<[string, string]>): Buffer =>
  sequence(...rdns.map(([t, v]) => set(sequence(oid(t), utf8String(v)))));
const dn = (n: Buffer): Buffer => explicit(4, n);
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

describe('name constraints (RFC 5280 §4.2.1.10)', () => {
  it('dNSName: the base and its subdomains; a leading dot means subdomains only', () => {
    const c = nc([dns('example.com')]);
    expect(check(c, [{ kind: 'dns', value: 'example.com' }])).toBeUndefined();
    expect(check(c, [{ kind: 'dns', value: 'A.B.Example.COM' }])).toBeUndefined();
    expect(check(c, [{ kind: 'dns', value: 'badexample.com' }])).toMatch(/not within the permitted dns/);
    expect(check(nc([dns('.example.com')]), [{ kind: 'dns', value: 'example.com' }])).toBe(
      'dns "example.com" is not within the permitted dns subtrees',
    );
    expect(check(nc([], [dns('evil.example.com')]), [{ kind: 'dns', value: 'x.evil.example.com' }])).toMatch(
      /excluded/,
    );
    // Names of other forms are not constrained by DNS subtrees.
    expect(check(c, [{ kind: 'uri', value: 'spiffe://td/x' }])).toBeUndefined();
  });

  it('rfc822Name, URI host and iPAddress', () => {
    expect(check(nc([email('acme.test')]), [{ kind: 'email', value: 'ops@acme.test' }])).toBeUndefined();
    expect(check(nc([email('ops@acme.test')]), [{ kind: 'email', value: 'dev@acme.test' }])).toBe(
      'email "dev@acme.test" is not within the permitted email subtrees',
    );
    expect(check(nc([email('.acme.test')]), [{ kind: 'email', value: 'a@b.acme.test' }])).toBeUndefined();
    expect(check(nc([uri('.acme.test')]), [{ kind: 'uri', value: 'https://api.acme.test:8443/x' }])).toBeUndefined();
    // A URI without a host (urn:) cannot be within a host subtree (RFC 5280 §4.2.1.10).
    expect(check(nc([uri('acme.test')]), [{ kind: 'uri', value: 'urn:uuid:1234' }])).toBe(
      'uri "urn:uuid:1234" is not within the permitted uri subtrees',
    );
    const net = nc([ip([10, 1, 0, 0], [255, 255, 0, 0])]);
    expect(check(net, [{ kind: 'ip', value: Buffer.from([10, 1, 2, 3]) }])).toBeUndefined();
    expect(check(net, [{ kind: 'ip', value: Buffer.from([10, 2, 2, 3]) }])).toBe(
      'iPAddress 0a020203 is not within the permitted ip subtrees',
    );
  });

  it('directoryName: the subject must start with the permitted RDNs; emailAddress in the subject counts as rfc822Name', () => {
    const c = nc([dn(name([OID.organizationName, 'Acme']))]);
    const okSubject = readName(name([OID.organizationName, 'ACME '], [OID.commonName, 'gw-1']));
    expect(check(c, constrainedNames(okSubject, []))).toBeUndefined();
    const other = readName(name([OID.organizationName, 'Evil'], [OID.commonName, 'gw-1']));
    expect(check(c, constrainedNames(other, []))).toMatch(/directoryName/);
    const withEmail = readName(name([OID.commonName, 'x'], ['1.2.840.113549.1.9.1', 'a@evil.test']));
    expect(check(nc([email('acme.test')]), constrainedNames(withEmail, []))).toMatch(/email "a@evil.test"/);
  });

  it('refuses constraints it cannot evaluate instead of ignoring them', () => {
    expect(() => decodeNameConstraints(nc([constructed(0xa0, [oid('1.2.3'), explicit(0, ia5String('x'))])]))).toThrow(
      UnsupportedNameConstraint,
    );
    const withMinimum = sequence(constructed(0xa0, [sequence(dns('a.test'), implicit(0, Buffer.from([1])))]));
    expect(() => decodeNameConstraints(withMinimum)).toThrow(/minimum/);
  });

  it('DN patterns for allow rules: RFC 4514 or slash form, attribute order free', () => {
    const rdns = readName(name([OID.organizationName, 'Acme'], [OID.commonName, 'Factory CA']));
    expect(dnMatches(rdns, parseDnPattern('CN=Factory CA, O=Acme'))).toBe(true);
    expect(dnMatches(rdns, parseDnPattern('/O=acme/CN=factory ca'))).toBe(true);
    expect(dnMatches(rdns, parseDnPattern('CN=Factory CA'))).toBe(false);
    expect(() => parseDnPattern('XX=1')).toThrow(/unknown attribute/);
  });
});
