import { X509Certificate, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createIntermediateCa } from '../../../src/pki/ca.js';
import { certSigningKey, encodeTbs, signTbs } from '../../../src/pki/certificate.js';
import { spiffeIdOf, spkiPin, verifyChain } from '../../../src/pki/chain.js';
import { integer, octetString, sequence, time } from '../../../src/pki/der.js';
import { basicConstraints, extension, keyUsage, subjectAltName } from '../../../src/pki/extensions.js';
import { CertificateIssuer } from '../../../src/pki/issue.js';
import { encodeName, subjectNameDer, type NameSpec } from '../../../src/pki/name.js';
import { randomSerial } from '../../../src/pki/serial.js';
import { codeOf, ecKey, hierarchy, TD } from './helpers.js';

const h = hierarchy();
const NOW = Date.now();
const at = new Date(NOW);
const HOUR = 3_600_000;

function leaf(
  issuer = h.issuer,
  over: { notBefore?: number; notAfter?: number; subject?: NameSpec } = {},
): { der: Buffer; key: KeyObject } {
  const k = ecKey();
  const der = issuer.issueSvid({
    serial: randomSerial(),
    spkiDer: k.spki,
    spiffeId: `spiffe://${TD}/bot/edge-7`,
    notBefore: new Date(over.notBefore ?? NOW - 60_000),
    notAfter: new Date(over.notAfter ?? NOW + HOUR),
    subject: over.subject,
  });
  return { der, key: k.privateKey };
}

/** A certificate built by hand, for shapes CertificateIssuer refuses to make. */
function handMade(
  issuerCertDer: Buffer,
  issuerKey: KeyObject,
  extensions: Buffer[],
  subject: NameSpec = [['CN', 'hand-made']],
): { der: Buffer; key: KeyObject } {
  const k = ecKey();
  const sk = certSigningKey(issuerKey);
  const tbs = encodeTbs({
    serial: integer(randomSerial()),
    algorithmId: sk.algorithmId,
    issuer: subjectNameDer(issuerCertDer),
    notBefore: time(new Date(NOW - 60_000)),
    notAfter: time(new Date(NOW + HOUR)),
    subject: encodeName(subject),
    spki: k.spki,
    extensions,
  });
  return { der: signTbs(tbs, sk), key: k.privateKey };
}

describe('verifyChain', () => {
  it('accepts leaf → intermediate → root and returns the path', () => {
    const l = leaf();
    const other = hierarchy('other.example');
    const r = verifyChain({
      leaf: l.der,
      intermediates: [other.inter.certDer, h.inter.certDer],
      roots: [other.root.certDer, h.root.certDer],
      at,
    });
    expect(r.path.map((c) => c.raw)).toEqual([l.der, h.inter.certDer, h.root.certDer]);
    expect(r.leaf.raw).toEqual(l.der);
    expect(spiffeIdOf(r.leaf)).toBe(`spiffe://${TD}/bot/edge-7`);
  });

  it('a leaf issued directly by a root', () => {
    const rootIssuer = new CertificateIssuer({ caCertDer: h.root.certDer, caKey: h.root.key });
    expect(
      verifyChain({ leaf: leaf(rootIssuer).der, intermediates: [], roots: [h.root.certDer], at }).path,
    ).toHaveLength(2);
  });

  it('wrong root → chain_invalid naming the unissued certificate', () => {
    const other = hierarchy('other.example');
    const input = { leaf: leaf().der, intermediates: [h.inter.certDer], roots: [other.root.certDer], at };
    expect(codeOf(() => verifyChain(input))).toBe('chain_invalid');
    expect(() => verifyChain(input)).toThrow(
      /no trusted root or supplied intermediate issued intermediate 0 \(subject "O=Sigil, CN=example.org intermediate CA"\)/,
    );
  });

  it('missing intermediate → chain_invalid', () => {
    expect(() => verifyChain({ leaf: leaf().der, intermediates: [], roots: [h.root.certDer], at })).toThrow(
      /issued leaf certificate/,
    );
  });

  it('expired leaf → cert_expired; not yet valid → chain_invalid', () => {
    const l = leaf().der;
    const input = { leaf: l, intermediates: [h.inter.certDer], roots: [h.root.certDer] };
    expect(codeOf(() => verifyChain({ ...input, at: new Date(NOW + 2 * HOUR) }))).toBe('cert_expired');
    expect(() => verifyChain({ ...input, at: new Date(NOW + 2 * HOUR) })).toThrow(/leaf certificate .* expired at/);
    expect(codeOf(() => verifyChain({ ...input, at: new Date(NOW - HOUR) }))).toBe('chain_invalid');
    expect(() => verifyChain({ ...input, at: new Date(NOW - HOUR) })).toThrow(/is not valid before/);
  });

  it('expired intermediate → chain_invalid', () => {
    const inter = createIntermediateCa(h.root, { trustDomain: TD, ttlDays: 1 });
    const l = leaf(new CertificateIssuer({ caCertDer: inter.certDer, caKey: inter.key }), {
      notAfter: NOW + 72 * HOUR,
    });
    const input = {
      leaf: l.der,
      intermediates: [inter.certDer],
      roots: [h.root.certDer],
      at: new Date(NOW + 48 * HOUR),
    };
    expect(codeOf(() => verifyChain(input))).toBe('chain_invalid');
    expect(() => verifyChain(input)).toThrow(/intermediate 0 .* expired/);
  });

  it('a leaf presented as intermediate (SVID key signing a certificate) → chain_invalid', () => {
    const svid = leaf(h.issuer, { subject: [['CN', 'svid-1']] });
    const evil = handMade(svid.der, svid.key, [
      basicConstraints(false),
      keyUsage([0]),
      subjectAltName({ uris: [`spiffe://${TD}/admin`] }, false),
    ]);
    const input = { leaf: evil.der, intermediates: [svid.der, h.inter.certDer], roots: [h.root.certDer], at };
    expect(codeOf(() => verifyChain(input))).toBe('chain_invalid');
    expect(() => verifyChain(input)).toThrow(
      /intermediate 0 \(subject "CN=svid-1"\) issued a certificate but is not a CA/,
    );
  });

  it('pathLenConstraint is enforced (a CA below a pathLen 0 intermediate)', () => {
    const sub = handMade(
      h.inter.certDer,
      h.inter.key,
      [basicConstraints(true), keyUsage([5, 6])],
      [['CN', 'rogue sub-CA']],
    );
    const l = leaf(new CertificateIssuer({ caCertDer: sub.der, caKey: sub.key }));
    const input = { leaf: l.der, intermediates: [sub.der, h.inter.certDer], roots: [h.root.certDer], at };
    expect(codeOf(() => verifyChain(input))).toBe('chain_invalid');
    expect(() => verifyChain(input)).toThrow(/pathLenConstraint 0 but 1 CA certificates follow it/);
  });

  it('paths longer than 5 certificates → chain_invalid; 5 is fine', () => {
    const issuers = [new CertificateIssuer({ caCertDer: h.root.certDer, caKey: h.root.key })];
    const cas: Buffer[] = [];
    for (const pathLen of [3, 2, 1, 0]) {
      const k = ecKey();
      const der = issuers[issuers.length - 1]!.issueCa({
        serial: randomSerial(),
        spkiDer: k.spki,
        subject: [['CN', `ca pathLen ${pathLen}`]],
        notBefore: new Date(NOW - 60_000),
        notAfter: new Date(NOW + HOUR),
        pathLen,
      });
      cas.push(der);
      issuers.push(new CertificateIssuer({ caCertDer: der, caKey: k.privateKey }));
    }
    const six = leaf(issuers[4]).der; // leaf + 4 CAs + root
    expect(codeOf(() => verifyChain({ leaf: six, intermediates: cas, roots: [h.root.certDer], at }))).toBe(
      'chain_invalid',
    );
    expect(() => verifyChain({ leaf: six, intermediates: cas, roots: [h.root.certDer], at })).toThrow(/longer than 5/);
    const five = leaf(issuers[3]).der; // leaf + 3 CAs + root
    expect(verifyChain({ leaf: five, intermediates: cas, roots: [h.root.certDer], at }).path).toHaveLength(5);
  });

  it('unknown critical extensions → chain_invalid', () => {
    const odd = handMade(h.inter.certDer, h.inter.key, [
      basicConstraints(false),
      extension('1.2.3.4.5', true, octetString(Buffer.from('x'))),
    ]);
    const input = { leaf: odd.der, intermediates: [h.inter.certDer], roots: [h.root.certDer], at };
    expect(() => verifyChain(input)).toThrow(/critical extension 1\.2\.3\.4\.5/);
  });

  it('unparseable input → bad_certificate; no roots → chain_invalid; bad `at` → TypeError', () => {
    expect(
      codeOf(() => verifyChain({ leaf: Buffer.from('junk'), intermediates: [], roots: [h.root.certDer], at })),
    ).toBe('bad_certificate');
    expect(
      codeOf(() =>
        verifyChain({ leaf: leaf().der, intermediates: [Buffer.from('3000', 'hex')], roots: [h.root.certDer], at }),
      ),
    ).toBe('bad_certificate');
    expect(codeOf(() => verifyChain({ leaf: leaf().der, intermediates: [], roots: [], at }))).toBe('chain_invalid');
    expect(() =>
      verifyChain({ leaf: leaf().der, intermediates: [], roots: [h.root.certDer], at: new Date(NaN) }),
    ).toThrow(TypeError);
  });
});

describe('spkiPin', () => {
  it('is the same for the certificate (DER, X509Certificate), its SPKI and its key', () => {
    const pin = spkiPin(h.root.certDer);
    expect(pin).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(spkiPin(new X509Certificate(h.root.certDer))).toBe(pin);
    expect(spkiPin(h.root.key)).toBe(pin);
    expect(spkiPin(new X509Certificate(h.root.certDer).publicKey)).toBe(pin);
    expect(spkiPin(new X509Certificate(h.root.certDer).publicKey.export({ type: 'spki', format: 'der' }))).toBe(pin);
    expect(spkiPin(h.inter.certDer)).not.toBe(pin);
  });

  it('garbage → bad_certificate', () => {
    expect(codeOf(() => spkiPin(Buffer.from('junk')))).toBe('bad_certificate');
    expect(codeOf(() => spkiPin(sequence()))).toBe('bad_certificate');
  });
});

describe('spiffeIdOf', () => {
  it('reads the URI SAN of leaves and signing certificates', () => {
    expect(spiffeIdOf(leaf().der)).toBe(`spiffe://${TD}/bot/edge-7`);
    expect(spiffeIdOf(h.root.certDer)).toBe(`spiffe://${TD}`);
  });

  it('undefined without a SAN or with a non-SPIFFE URI', () => {
    expect(spiffeIdOf(handMade(h.inter.certDer, h.inter.key, [basicConstraints(false)]).der)).toBeUndefined();
    expect(
      spiffeIdOf(
        handMade(h.inter.certDer, h.inter.key, [subjectAltName({ uris: ['https://example.org/x'] }, false)]).der,
      ),
    ).toBeUndefined();
  });

  it('more than one URI SAN → bad_certificate (X509-SVID §5.2)', () => {
    const two = handMade(h.inter.certDer, h.inter.key, [
      subjectAltName({ uris: [`spiffe://${TD}/a`, `spiffe://${TD}/b`] }, false),
    ]).der;
    expect(codeOf(() => spiffeIdOf(two))).toBe('bad_certificate');
    expect(codeOf(() => spiffeIdOf(new X509Certificate(two)))).toBe('bad_certificate');
  });
});
