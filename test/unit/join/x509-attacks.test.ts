/**
 * Attacks on the x509 join's certificate checks, each on a PKI made for the case with exact dates
 * (@peculiar/x509, an implementation independent of Sigil's), through the functions the join runs:
 * validatePath (RFC 5280 §6.1), checkRevocation (§6.3) and checkAllowed (the rule's allow list).
 *   - a chain whose intermediate, or whose root, has expired, and a leaf not yet valid: each refused
 *     by its own date check (only an expired leaf was tested before);
 *   - a CRL that names the device CA but is signed by another key: it must neither un-revoke a
 *     revoked device (a newer forged CRL would otherwise win) nor count as "a CRL covers this CA";
 *   - a device certificate without the extended key usage the allow entry demands.
 * The end-to-end join over HTTPS with openssl-made chains is test/integration/x509-join.test.ts.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCert, type ParsedCert } from '../../../src/join/x509-cert.js';
import { checkRevocation, parseCrl, type LoadedCrl } from '../../../src/join/x509-crl.js';
import { validatePath } from '../../../src/join/x509-path.js';
import { checkAllowed } from '../../../src/join/x509/allow.js';
import { fromPem, toPem } from '../../../src/pki/pem.js';
import { OpensslPki, type Issued, type OpensslCaDir } from '../../helpers/openssl-pki.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
const at = (days: number): Date => new Date(T0 + days * DAY);
const dir = mkdtempSync(join(tmpdir(), 'sigil-x509-attacks-'));
const pki = new OpensslPki(dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Made {
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
  parsed: ParsedCert;
}

let serial = 1;
async function make(o: {
  subject: string;
  issuer?: Made;
  ca: boolean;
  from: number;
  to: number;
  eku?: string[];
}): Promise<Made> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(o.ca, undefined, true),
    new x509.KeyUsagesExtension(
      o.ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    ...(o.eku ? [new x509.ExtendedKeyUsageExtension(o.eku)] : []),
  ];
  const signer = o.issuer?.keys ?? keys;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(4, '0'),
    subject: o.subject,
    issuer: o.issuer?.cert.subject ?? o.subject,
    notBefore: at(o.from),
    notAfter: at(o.to),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: signer.privateKey,
    extensions,
  });
  return { cert, keys, parsed: parseCert(Buffer.from(cert.rawData), o.subject) };
}

function path(leaf: Made, chain: Made[], anchor: Made, when: Date) {
  return validatePath({
    leaf: leaf.parsed,
    intermediates: chain.map((c) => c.parsed),
    anchors: [anchor.parsed],
    at: when,
    maxIntermediates: 2,
  });
}

/** Key and certificate files of `m` for `openssl ca` (the CRLs come from openssl, like an operator's). */
function issuedFiles(name: string, m: Made): Promise<Issued> {
  return webcrypto.subtle.exportKey('pkcs8', m.keys.privateKey).then((pkcs8) => {
    const pem = m.cert.toString('pem');
    const cert = pki.path(`${name}.pem`);
    const keyFile = pki.path(`${name}.key`);
    writeFileSync(cert, pem);
    writeFileSync(keyFile, toPem('PRIVATE KEY', Buffer.from(pkcs8)));
    return { name, cert, key: keyFile, pem };
  });
}

const stamp = (d: Date): string => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';

/** A CRL of `ca` from `openssl ca -gencrl`, issued on day `thisUpdate`, revoking `revoked`. */
function crl(ca: OpensslCaDir, name: string, thisUpdate: number, revoked: Issued[] = []): LoadedCrl {
  for (const r of revoked) ca.revoke(r);
  const out = ca.gencrl(pki.path(`${name}.crl`), {
    lastUpdate: stamp(at(thisUpdate)),
    nextUpdate: stamp(at(thisUpdate + 30)),
  });
  return parseCrl(fromPem(readFileSync(out, 'utf8'), 'X509 CRL'), out);
}

const refused = (code: string, message?: RegExp) =>
  expect.objectContaining({ code, ...(message ? { message: expect.stringMatching(message) } : {}) });

let root: Made; // valid days 0..3650
let inter: Made; // valid days 0..1000
let leaf: Made; // valid days 10..400, EKU clientAuth
let shortRoot: Made; // valid days 0..100: a root that expires before the chain under it
let shortInter: Made; // valid days 0..50, under shortRoot
let underShort: Made; // valid days 1..300, under shortInter
let early: Made; // valid days 500..900 (not yet valid at day 20)
let noEku: Made; // serverAuth only

beforeAll(async () => {
  root = await make({ subject: 'CN=Attack Root, O=Acme', ca: true, from: 0, to: 3650 });
  inter = await make({ subject: 'CN=Attack Device CA, O=Acme', issuer: root, ca: true, from: 0, to: 1000 });
  leaf = await make({
    subject: 'CN=gw-1, O=Acme',
    issuer: inter,
    ca: false,
    from: 10,
    to: 400,
    eku: ['1.3.6.1.5.5.7.3.2'],
  });
  shortRoot = await make({ subject: 'CN=Short Root, O=Acme', ca: true, from: 0, to: 100 });
  shortInter = await make({ subject: 'CN=Short CA, O=Acme', issuer: shortRoot, ca: true, from: 0, to: 50 });
  underShort = await make({ subject: 'CN=gw-2, O=Acme', issuer: shortInter, ca: false, from: 1, to: 300 });
  early = await make({ subject: 'CN=gw-3, O=Acme', issuer: inter, ca: false, from: 500, to: 900 });
  noEku = await make({
    subject: 'CN=gw-4, O=Acme',
    issuer: inter,
    ca: false,
    from: 10,
    to: 400,
    eku: ['1.3.6.1.5.5.7.3.1'],
  });
});

describe('attack: a chain used outside the validity of one of its certificates', () => {
  it('the baseline chain is valid on day 20', () => {
    expect(path(leaf, [inter], root, at(20)).certs).toHaveLength(3);
  });

  it('an expired intermediate (day 60, leaf still valid): x509_cert_expired naming the intermediate', () => {
    expect(() => path(underShort, [shortInter], shortRoot, at(60))).toThrow(
      refused('x509_cert_expired', /Short CA.*expired at/),
    );
  });

  it('an expired root (day 120, with a fresh intermediate whose own dates still hold): x509_cert_expired naming the root', async () => {
    const lateInter = await make({ subject: 'CN=Late CA, O=Acme', issuer: shortRoot, ca: true, from: 0, to: 500 });
    const lateLeaf = await make({ subject: 'CN=gw-5, O=Acme', issuer: lateInter, ca: false, from: 0, to: 400 });
    expect(() => path(lateLeaf, [lateInter], shortRoot, at(120))).toThrow(
      refused('x509_cert_expired', /Short Root.*expired at/),
    );
  });

  it('a leaf not yet valid (day 20, valid from day 500): x509_cert_not_yet_valid', () => {
    expect(() => path(early, [inter], root, at(20))).toThrow(
      refused('x509_cert_not_yet_valid', /gw-3.*not valid before/),
    );
  });

  it('an intermediate not yet valid: x509_cert_not_yet_valid', async () => {
    const futureInter = await make({ subject: 'CN=Future CA, O=Acme', issuer: root, ca: true, from: 300, to: 900 });
    const l = await make({ subject: 'CN=gw-6, O=Acme', issuer: futureInter, ca: false, from: 0, to: 900 });
    expect(() => path(l, [futureInter], root, at(20))).toThrow(
      refused('x509_cert_not_yet_valid', /Future CA.*not valid before/),
    );
  });
});

describe('attack: a CRL naming the device CA, signed by another key', () => {
  let genuine: LoadedCrl; // by the device CA, day 15, revokes leaf
  let forged: LoadedCrl; // same issuer name, another key, day 18, revokes nothing
  beforeAll(async () => {
    genuine = crl(pki.caDir(await issuedFiles('inter', inter)), 'genuine', 15, [await issuedFiles('leaf', leaf)]);
    // The forger's "CA": the device CA's very name over its own key.
    const lookalike = await make({ subject: 'CN=Attack Device CA, O=Acme', ca: true, from: 0, to: 1000 });
    forged = crl(pki.caDir(await issuedFiles('lookalike', lookalike)), 'forged', 18);
    expect(forged.issuer).toEqual(genuine.issuer);
  });

  it('the genuine CRL revokes the device: x509_revoked', async () => {
    const certs = path(leaf, [inter], root, at(20)).certs;
    await expect(checkRevocation(certs, [genuine], at(20))).rejects.toThrow(refused('x509_revoked'));
  });

  it('a newer forged CRL without the device does not un-revoke it', async () => {
    const certs = path(leaf, [inter], root, at(20)).certs;
    await expect(checkRevocation(certs, [genuine, forged], at(20))).rejects.toThrow(refused('x509_revoked'));
  });

  it('a forged CRL alone does not count as revocation information: x509_crl_unavailable (fail closed)', async () => {
    const certs = path(leaf, [inter], root, at(20)).certs;
    await expect(checkRevocation(certs, [forged], at(20))).rejects.toThrow(
      refused('x509_crl_unavailable', /signature does not verify with the CA key/),
    );
  });
});

describe('attack: a device certificate without the extended key usage its allow entry demands', () => {
  const entries = [{ subject_cn: 'gw-*', eku: ['clientAuth'] }];

  it('a clientAuth device matches the entry', () => {
    expect(() => checkAllowed(entries, leaf.parsed, 'factory')).not.toThrow();
  });

  it('a serverAuth-only device with a matching name is refused: x509_not_allowed naming the EKU', () => {
    expect(() => checkAllowed(entries, noEku.parsed, 'factory')).toThrow(
      refused('x509_not_allowed', /extended key usage lacks clientAuth/),
    );
  });

  it('a device without any EKU extension is refused too', async () => {
    const bare = await make({ subject: 'CN=gw-7, O=Acme', issuer: inter, ca: false, from: 10, to: 400 });
    expect(() => checkAllowed(entries, bare.parsed, 'factory')).toThrow(
      refused('x509_not_allowed', /extended key usage lacks clientAuth/),
    );
  });
});
