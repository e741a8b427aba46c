/**
 * Path validation (join/x509-path.ts, RFC 5280 §6.1) check by check, in process, on chains made
 * for each case (@peculiar/x509) with exact dates; each refusal asserts its code and its words.
 * test/integration/x509-join.test.ts runs the same kinds of chain end to end against `openssl
 * verify`; this file pins each check alone, and its boundaries. Attacks:
 *   - a device CA that is not a CA (a leaf of the factory issuing "devices"), one whose KeyUsage
 *     lacks keyCertSign, one whose pathLenConstraint forbids the sub-CA below it;
 *   - a leaf whose key may not sign (KeyUsage without digitalSignature), an unknown critical
 *     extension, a SHA-1 signature, an RSA-1024 key;
 *   - a look-alike CA (the right name over another key) among the intermediates or the anchors;
 *   - a chain longer than the rule allows; a certificate no configured CA issued.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { parseCert, type ParsedCert } from '../../../src/join/x509-cert.js';
import { validatePath } from '../../../src/join/x509-path.js';
import { constructed, implicit, sequence } from '../../../src/pki/der.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
const at = (days: number): Date => new Date(T0 + days * DAY);
const KU = x509.KeyUsageFlags;

interface Made {
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
  parsed: ParsedCert;
  name: string;
}

/** A fresh key pair: Ed25519, RSA of `rsaBits`, or EC P-256. */
async function newKeys(o: { ed25519?: boolean; rsaBits?: number }): Promise<webcrypto.CryptoKeyPair> {
  if (o.ed25519)
    return (await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
  if (o.rsaBits)
    return (await webcrypto.subtle.generateKey(
      {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: o.rsaBits,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: 'SHA-256',
      },
      true,
      ['sign', 'verify'],
    )) as webcrypto.CryptoKeyPair;
  return (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

let serial = 0x200;
async function make(o: {
  name: string;
  issuer?: Made;
  /** BasicConstraints: cA (and pathLen); 'none' leaves the extension out. */
  bc?: { ca: boolean; pathLen?: number } | 'none';
  ku?: number | 'none';
  extra?: x509.Extension[];
  hash?: 'SHA-1' | 'SHA-256';
  rsaBits?: number;
  /** Reuse a key pair (a re-keyed or renamed CA). */
  keys?: webcrypto.CryptoKeyPair;
  /** The issuer name written in the certificate, when it is not the issuer's subject. */
  issuerName?: string;
  /** Sign with these keys instead of the issuer's (a self-issued re-key certificate). */
  signWith?: webcrypto.CryptoKeyPair;
  san?: x509.JsonGeneralNames;
  ed25519?: boolean;
}): Promise<Made> {
  const keys = o.keys ?? (await newKeys(o));
  const bc = o.bc ?? { ca: false };
  const ku = o.ku ?? (bc !== 'none' && bc.ca ? KU.keyCertSign | KU.cRLSign : KU.digitalSignature);
  const subject = `CN=${o.name}, O=Acme`;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16),
    subject,
    issuer: o.issuerName ?? o.issuer?.cert.subject ?? subject,
    notBefore: at(0),
    notAfter: at(100),
    signingAlgorithm: { ...EC, hash: o.hash ?? 'SHA-256' },
    publicKey: keys.publicKey,
    signingKey: (o.signWith ?? o.issuer?.keys ?? keys).privateKey,
    extensions: [
      ...(o.san ? [new x509.SubjectAlternativeNameExtension(o.san)] : []),
      ...(bc === 'none' ? [] : [new x509.BasicConstraintsExtension(bc.ca, bc.pathLen, true)]),
      ...(ku === 'none' ? [] : [new x509.KeyUsagesExtension(ku, true)]),
      ...(o.extra ?? []),
    ],
  });
  return { cert, keys, parsed: parseCert(Buffer.from(cert.rawData), o.name), name: subject };
}

const CA = { ca: true } as const;
function validate(leaf: Made, intermediates: Made[], anchors: Made[], when = at(10), maxIntermediates = 3) {
  return validatePath({
    leaf: leaf.parsed,
    intermediates: intermediates.map((c) => c.parsed),
    anchors: anchors.map((c) => c.parsed),
    at: when,
    maxIntermediates,
  });
}
function refusal(fn: () => unknown): SigilError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}
/** How messages name a certificate (x509-cert.ts describeCert: label, then subject). */
const d = (m: Made): string => `${m.parsed.label} (subject "${m.name}")`;

let root: Made;
let inter: Made;
let leaf: Made;
beforeAll(async () => {
  root = await make({ name: 'Path Root', bc: CA });
  inter = await make({ name: 'Path CA', issuer: root, bc: CA });
  leaf = await make({ name: 'gw-1', issuer: inter });
});

describe('validity dates, inclusive at both ends', () => {
  it('valid at exactly notBefore and exactly notAfter; refused a millisecond outside', () => {
    expect(validate(leaf, [inter], [root], at(0)).certs.map((c) => c.label)).toEqual(['gw-1', 'Path CA', 'Path Root']);
    expect(validate(leaf, [inter], [root], at(100)).anchor.label).toBe('Path Root');
    const late = refusal(() => validate(leaf, [inter], [root], new Date(at(100).getTime() + 1)));
    expect(late.code).toBe('x509_cert_expired');
    expect(late.message).toBe(`${d(leaf)} expired at ${at(100).toISOString()}`);
    const early = refusal(() => validate(leaf, [inter], [root], new Date(at(0).getTime() - 1)));
    expect(early.code).toBe('x509_cert_not_yet_valid');
    expect(early.message).toBe(`${d(leaf)} is not valid before ${at(0).toISOString()}`);
  });
});

describe('building the path', () => {
  it('a certificate no configured CA issued: x509_untrusted_ca, and says when it is self-issued', async () => {
    const stranger = await make({ name: 'Stranger', bc: CA });
    const theirs = await make({ name: 'gw-x', issuer: stranger });
    const e = refusal(() => validate(theirs, [], [root]));
    expect(e.code).toBe('x509_untrusted_ca');
    expect(e.message).toBe(
      `no CA in the rule's ca_files and no supplied intermediate issued ${d(theirs)}; its issuer is "CN=Stranger, O=Acme"`,
    );
    const self = refusal(() => validate(stranger, [], [root]));
    expect(self.message).toBe(
      `no CA in the rule's ca_files and no supplied intermediate issued ${d(stranger)}; its issuer is "CN=Stranger, O=Acme" (it is self-issued and not one of the rule's CAs)`,
    );
  });

  it('a look-alike intermediate (right name, another key): x509_cert_signature_invalid; beside the genuine one it is skipped', async () => {
    const lookalike = await make({ name: 'Path CA', issuer: root, bc: CA });
    const e = refusal(() => validate(leaf, [lookalike], [root]));
    expect(e.code).toBe('x509_cert_signature_invalid');
    expect(e.message).toBe(
      `the signature of ${d(leaf)} does not verify with the key of its issuer "CN=Path CA, O=Acme"`,
    );
    expect(validate(leaf, [lookalike, inter], [root]).certs[1]).toBe(inter.parsed);
  });

  it('a look-alike anchor: x509_cert_signature_invalid; beside the genuine one it is skipped', async () => {
    const fakeRoot = await make({ name: 'Path Root', bc: CA });
    const e = refusal(() => validate(leaf, [inter], [fakeRoot]));
    expect(e.code).toBe('x509_cert_signature_invalid');
    expect(e.message).toMatch(/^the signature of Path CA .* its issuer "CN=Path Root, O=Acme"$/);
    expect(validate(leaf, [inter], [fakeRoot, root]).anchor).toBe(root.parsed);
  });

  it('at most max_intermediates CA certificates between leaf and anchor', async () => {
    const sub = await make({ name: 'Path Sub CA', issuer: inter, bc: CA });
    const deep = await make({ name: 'gw-deep', issuer: sub });
    expect(validate(deep, [sub, inter], [root], at(10), 2).certs).toHaveLength(4);
    const e = refusal(() => validate(deep, [sub, inter], [root], at(10), 1));
    expect(e.code).toBe('x509_chain_too_long');
    expect(e.message).toBe("the path needs more than 1 intermediate CA certificates (the rule's max_intermediates)");
    expect(validate(leaf, [], [inter], at(10), 0).certs).toHaveLength(2);
  });
});

describe('the issuers', () => {
  it('an issuer that is not a CA (cA FALSE, or no BasicConstraints): x509_not_ca', async () => {
    for (const bc of [{ ca: false }, 'none'] as const) {
      const notCa = await make({ name: 'Not A CA', issuer: inter, bc, ku: KU.keyCertSign | KU.digitalSignature });
      const under = await make({ name: 'gw-under', issuer: notCa });
      const e = refusal(() => validate(under, [notCa, inter], [root]));
      expect(e.code).toBe('x509_not_ca');
      expect(e.message).toBe(`${d(notCa)} issued a certificate but is not a CA (BasicConstraints cA is not TRUE)`);
    }
  });

  it('an anchor that is not a CA is refused too (only a v1 anchor, without extensions, is taken as one)', async () => {
    const notCaRoot = await make({ name: 'Leafy Root', bc: { ca: false }, ku: KU.keyCertSign });
    const under = await make({ name: 'gw-l', issuer: notCaRoot });
    expect(refusal(() => validate(under, [], [notCaRoot])).code).toBe('x509_not_ca');
  });

  it('pathLenConstraint counts the CAs below: 0 refuses a sub-CA, 1 allows it', async () => {
    for (const [pathLen, ok] of [
      [0, false],
      [1, true],
    ] as const) {
      const limited = await make({ name: `Limited ${pathLen}`, issuer: root, bc: { ca: true, pathLen } });
      const sub = await make({ name: `Sub of ${pathLen}`, issuer: limited, bc: CA });
      const l = await make({ name: 'gw-pl', issuer: sub });
      if (ok) expect(validate(l, [sub, limited], [root]).certs).toHaveLength(4);
      else {
        const e = refusal(() => validate(l, [sub, limited], [root]));
        expect(e.code).toBe('x509_path_length_exceeded');
        expect(e.message).toBe(`${d(limited)} has pathLenConstraint 0 but 1 CA certificates follow it`);
      }
    }
    // pathLen 0 directly above the leaf: no CA follows it.
    const zero = await make({ name: 'Zero CA', issuer: root, bc: { ca: true, pathLen: 0 } });
    expect(validate(await make({ name: 'gw-z', issuer: zero }), [zero], [root]).certs).toHaveLength(3);
  });

  it('an issuer whose KeyUsage lacks keyCertSign: x509_key_usage; without KeyUsage it may issue', async () => {
    const crlOnly = await make({ name: 'CRL Only CA', issuer: root, bc: CA, ku: KU.cRLSign | KU.digitalSignature });
    const l = await make({ name: 'gw-k', issuer: crlOnly });
    const e = refusal(() => validate(l, [crlOnly], [root]));
    expect(e.code).toBe('x509_key_usage');
    expect(e.message).toBe(`${d(crlOnly)} issued a certificate but its KeyUsage lacks keyCertSign`);
    const noKu = await make({ name: 'No KU CA', issuer: root, bc: CA, ku: 'none' });
    expect(validate(await make({ name: 'gw-n', issuer: noKu }), [noKu], [root]).certs).toHaveLength(3);
  });
});

describe('the leaf, and every certificate', () => {
  it('a leaf whose KeyUsage lacks digitalSignature: x509_key_usage; a leaf without KeyUsage passes', async () => {
    const encipher = await make({ name: 'gw-enc', issuer: inter, ku: KU.keyEncipherment });
    const e = refusal(() => validate(encipher, [inter], [root]));
    expect(e.code).toBe('x509_key_usage');
    expect(e.message).toBe(
      `${d(encipher)}: its KeyUsage lacks digitalSignature, so its key may not sign the join challenge`,
    );
    expect(validate(await make({ name: 'gw-noku', issuer: inter, ku: 'none' }), [inter], [root]).certs).toHaveLength(3);
  });

  it('an unknown critical extension: x509_critical_extension; the same not critical, or a critical policy, passes', async () => {
    const odd = new x509.Extension('1.3.6.1.4.1.99999.1', true, Uint8Array.of(0x05, 0x00));
    const l = await make({ name: 'gw-crit', issuer: inter, extra: [odd] });
    const e = refusal(() => validate(l, [inter], [root]));
    expect(e.code).toBe('x509_critical_extension');
    expect(e.message).toBe(`${d(l)} has critical extension 1.3.6.1.4.1.99999.1, which Sigil does not process`);
    const mild = new x509.Extension('1.3.6.1.4.1.99999.1', false, Uint8Array.of(0x05, 0x00));
    expect(validate(await make({ name: 'gw-mild', issuer: inter, extra: [mild] }), [inter], [root]).certs).toHaveLength(
      3,
    );
    const policies = new x509.CertificatePolicyExtension(['2.5.29.32.0'], true);
    expect(
      validate(await make({ name: 'gw-pol', issuer: inter, extra: [policies] }), [inter], [root]).certs,
    ).toHaveLength(3);
  });

  it('a SHA-1 signature on a leaf is refused; on the self-signed anchor it is not checked', async () => {
    const sha1 = await make({ name: 'gw-sha1', issuer: inter, hash: 'SHA-1' });
    const e = refusal(() => validate(sha1, [inter], [root]));
    expect(e.code).toBe('x509_signature_algorithm');
    expect(e.message).toBe(
      `${d(sha1)} is signed with 1.2.840.10045.4.1; accepted are ECDSA and RSA (PKCS#1 v1.5 or PSS) with SHA-256/384/512`,
    );
    const oldRoot = await make({ name: 'Old Root', bc: CA, hash: 'SHA-1' });
    const l = await make({ name: 'gw-old', issuer: oldRoot });
    expect(validate(l, [], [oldRoot]).certs).toHaveLength(2);
  });

  it('an RSA key under 2048 bits: x509_weak_key; 2048 bits pass', async () => {
    const weak = await make({ name: 'gw-rsa1024', issuer: inter, rsaBits: 1024 });
    const e = refusal(() => validate(weak, [inter], [root]));
    expect(e.code).toBe('x509_weak_key');
    expect(e.message).toBe(`${d(weak)}: RSA key of 1024 bits (accepted: 2048..16384)`);
    expect(
      validate(await make({ name: 'gw-rsa2048', issuer: inter, rsaBits: 2048 }), [inter], [root]).certs,
    ).toHaveLength(3);
  });
});

/** A critical nameConstraints extension permitting the DNS subtree `permitted`. */
const dnsConstraint = (permitted: string): x509.Extension =>
  new x509.Extension('2.5.29.30', true, sequence(constructed(0xa0, [sequence(implicit(2, Buffer.from(permitted)))])));

describe('names chain the path, exactly', () => {
  it('a CA whose subject is only the first RDNs of the leaf’s issuer name does not issue it', async () => {
    const shortName = await make({ name: 'Short', issuer: root, bc: CA });
    // Signed by that CA's key, but naming the issuer "CN=Short, O=Acme, OU=Extra".
    const l = await make({ name: 'gw-s', issuer: shortName, issuerName: 'CN=Short, O=Acme, OU=Extra' });
    const e = refusal(() => validate(l, [shortName], [root]));
    expect(e.code).toBe('x509_untrusted_ca');
  });

  it('a certificate for the issuer’s key under another name does not complete the path', async () => {
    const renamed = await make({ name: 'Renamed CA', issuer: root, bc: CA, keys: inter.keys });
    expect(refusal(() => validate(leaf, [renamed], [root])).code).toBe('x509_untrusted_ca');
  });

  it('a self-signed certificate offered as its own issuer is used once, then untrusted (no loop)', async () => {
    const loop = await make({ name: 'Loop CA', bc: CA });
    const l = await make({ name: 'gw-loop', issuer: loop });
    const e = refusal(() => validate(l, [loop], [root], at(10), 5));
    expect(e.code).toBe('x509_untrusted_ca');
    expect(e.message).toMatch(/\(it is self-issued and not one of the rule's CAs\)$/);
  });
});

describe('self-issued certificates (a CA re-keying) are exempt from pathLen and name constraints (§6.1.3 (b), §6.1.4 (l))', () => {
  it('a re-key certificate under a pathLen 0 CA does not count as a CA below it', async () => {
    const limited = await make({ name: 'Rekeyed CA', issuer: root, bc: { ca: true, pathLen: 0 } });
    const newKeys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    // Subject and issuer both "Rekeyed CA": the new key, signed by the old one.
    const rekey = await make({ name: 'Rekeyed CA', issuer: limited, bc: CA, keys: newKeys, signWith: limited.keys });
    const l = await make({ name: 'gw-rk', issuer: rekey });
    expect(validate(l, [rekey, limited], [root]).certs.map((c) => c.label)).toEqual([
      'gw-rk',
      'Rekeyed CA',
      'Rekeyed CA',
      'Path Root',
    ]);
  });
});

describe('name constraints of every CA over the certificates below it', () => {
  it('a device name outside the CA’s permitted subtree: x509_name_constraints naming both', async () => {
    const constrained = await make({ name: 'Acme Only CA', issuer: root, bc: CA, extra: [dnsConstraint('acme.test')] });
    const ok = await make({ name: 'gw-ok', issuer: constrained, san: [{ type: 'dns', value: 'gw.acme.test' }] });
    expect(validate(ok, [constrained], [root]).certs).toHaveLength(3);
    const out = await make({ name: 'gw-out', issuer: constrained, san: [{ type: 'dns', value: 'gw.evil.test' }] });
    const e = refusal(() => validate(out, [constrained], [root]));
    expect(e.code).toBe('x509_name_constraints');
    expect(e.message).toBe(
      `${d(out)} violates the name constraints of ${d(constrained)}: dns "gw.evil.test" is not within the permitted dns subtrees`,
    );
  });

  it('the root’s constraints bind the intermediate and the leaf too', async () => {
    const cRoot = await make({ name: 'Constrained Root', bc: CA, extra: [dnsConstraint('acme.test')] });
    const i = await make({ name: 'Under Constrained Root', issuer: cRoot, bc: CA });
    const out = await make({ name: 'gw-deep-out', issuer: i, san: [{ type: 'dns', value: 'x.evil.test' }] });
    const e = refusal(() => validate(out, [i], [cRoot]));
    expect(e.code).toBe('x509_name_constraints');
    expect(e.message).toMatch(/^gw-deep-out .* violates the name constraints of Constrained Root /);
    const badInter = await make({
      name: 'Bad Inter',
      issuer: cRoot,
      bc: CA,
      san: [{ type: 'dns', value: 'ca.evil.test' }],
    });
    const l = await make({ name: 'gw-bi', issuer: badInter, san: [{ type: 'dns', value: 'gw.acme.test' }] });
    expect(refusal(() => validate(l, [badInter], [cRoot])).message).toMatch(/^Bad Inter .* violates/);
  });

  it('a constraint Sigil cannot evaluate refuses the path', async () => {
    const odd = new x509.Extension(
      '2.5.29.30',
      true,
      sequence(constructed(0xa0, [sequence(implicit(8, Buffer.from([0x2a, 0x03])))])),
    );
    const c = await make({ name: 'Odd NC CA', issuer: root, bc: CA, extra: [odd] });
    const l = await make({ name: 'gw-odd', issuer: c });
    const e = refusal(() => validate(l, [c], [root]));
    expect(e.code).toBe('x509_name_constraints');
    expect(e.message).toBe(
      `${d(c)}: name constraint of form [8] is not supported; a constraint Sigil cannot evaluate is refused`,
    );
  });

  it('a self-issued re-key certificate is exempt, the leaf under it is not', async () => {
    const nc = await make({ name: 'NC Rekey CA', issuer: root, bc: CA, extra: [dnsConstraint('acme.test')] });
    const newKeys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    // The re-key certificate carries a name outside the subtree: exempt, being self-issued.
    const rekey = await make({
      name: 'NC Rekey CA',
      issuer: nc,
      bc: CA,
      keys: newKeys,
      signWith: nc.keys,
      san: [{ type: 'dns', value: 'ca.evil.test' }],
    });
    const ok = await make({ name: 'gw-nr', issuer: rekey, san: [{ type: 'dns', value: 'gw.acme.test' }] });
    expect(validate(ok, [rekey, nc], [root]).certs).toHaveLength(4);
    const out = await make({ name: 'gw-nr-out', issuer: rekey, san: [{ type: 'dns', value: 'gw.evil.test' }] });
    expect(refusal(() => validate(out, [rekey, nc], [root])).code).toBe('x509_name_constraints');
  });
});

describe('key types', () => {
  it('a key of a type Sigil does not accept (Ed25519): x509_weak_key with the reason', async () => {
    const ed = await make({ name: 'gw-ed', issuer: inter, ed25519: true });
    const e = refusal(() => validate(ed, [inter], [root]));
    expect(e.code).toBe('x509_weak_key');
    expect(e.message.startsWith(`${d(ed)}: `)).toBe(true);
    expect(e.message.length).toBeGreaterThan(`${d(ed)}: `.length);
  });
});

describe('name constraints: whom they bind', () => {
  it('not the CA that carries them (its own names may lie outside), but a leaf named like its issuer', async () => {
    const c = await make({
      name: 'Self Named CA',
      issuer: root,
      bc: CA,
      extra: [dnsConstraint('acme.test')],
      san: [{ type: 'dns', value: 'ca.evil.test' }],
    });
    const ok = await make({ name: 'gw-sn', issuer: c, san: [{ type: 'dns', value: 'gw.acme.test' }] });
    expect(validate(ok, [c], [root]).certs).toHaveLength(3);
    // A leaf whose subject equals its issuer's (self-issued in form) is still bound: only
    // self-issued intermediates are exempt.
    const twin = await make({ name: 'Self Named CA', issuer: c, san: [{ type: 'dns', value: 'gw.evil.test' }] });
    expect(refusal(() => validate(twin, [c], [root])).code).toBe('x509_name_constraints');
  });

  it('a nameConstraints extension that is not valid DER is x509_chain_malformed, not a constraint refusal', async () => {
    const broken = new x509.Extension('2.5.29.30', true, Uint8Array.of(0x30, 0x05, 0xa0, 0x03));
    const c = await make({ name: 'Broken NC CA', issuer: root, bc: CA, extra: [broken] });
    const l = await make({ name: 'gw-b', issuer: c });
    expect(refusal(() => validate(l, [c], [root])).code).toBe('x509_chain_malformed');
  });
});
