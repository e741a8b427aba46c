/**
 * Valid inputs the structure-aware fuzzers start from, made in-process or with plain openssl
 * (test/helpers/openssl-pki.ts) in a temp dir: certificates with the extensions path
 * validation reads, CSRs (EC, RSA, with an extensionRequest), a CRL with a revoked entry,
 * PKCS#7 SignedData (DER and streamed BER), TPM structures and TCG event logs.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { fromPem, pemToDers } from '../../src/pki/pem.js';
import { openssl, OpensslPki } from '../helpers/openssl-pki.js';

export interface PkiSeeds {
  dir: string;
  /** Root, intermediate (with name constraints), leaves (EC with a rich SAN, RSA). */
  certs: Buffer[];
  rootDer: Buffer;
  leafDer: Buffer;
  csrs: Buffer[];
  csrPems: string[];
  crls: Buffer[];
  pkcs7: Buffer[];
  /** The certificate that signed the PKCS#7 seeds. */
  pkcs7Signer: Buffer;
}

let cached: PkiSeeds | undefined;

// Each test file that made the seeds removes them when it is done (vitest runs every file in
// a fresh module scope, so the cache never outlives its file).
afterAll(() => {
  if (cached) rmSync(cached.dir, { recursive: true, force: true });
  cached = undefined;
});

const REQ_WITH_SAN = `[req]
distinguished_name = dn
prompt = no
req_extensions = ext
[dn]
CN = device-7
O = Acme
[ext]
subjectAltName = URI:spiffe://example.org/bot/gw/1, DNS:gw.example.org
`;

export function pkiSeeds(): PkiSeeds {
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'sigil-fuzz-'));
  const pki = new OpensslPki(dir);
  const root = pki.root('root', '/O=Acme/CN=Fuzz Root', 'ec');
  // pki.intermediate() appends its extension lines after ours; the dirName section must come last.
  const inter = pki.sign(
    'inter',
    root,
    '/O=Acme/OU=Devices/CN=Fuzz Issuing',
    [
      'basicConstraints = critical,CA:TRUE,pathlen:0',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      'nameConstraints = critical,permitted;DNS:.example.org,permitted;IP:10.0.0.0/255.0.0.0,permitted;dirName:nc_dn,excluded;email:bad.example.org',
      '[nc_dn]',
      'O = Acme',
    ],
    { kind: 'rsa' },
  );
  const leaf = pki.leaf('leaf', inter, '/O=Acme/serialNumber=SN-001/CN=gw-7', {
    san: 'URI:spiffe://example.org/bot/gw/1, DNS:gw-7.example.org, IP:10.1.2.3, email:ops@example.org',
  });
  const rsaLeaf = pki.leaf('rsa-leaf', root, '/CN=rsa device', { kind: 'rsa' });
  const certs = [root, inter, leaf, rsaLeaf].map((c) => fromPem(c.pem, 'CERTIFICATE'));

  const ecKey = pki.key('csr-ec', 'ec');
  const rsaKey = pki.key('csr-rsa', 'rsa');
  const p384 = pki.key('csr-p384', 'ec384');
  const sanCfg = join(dir, 'req-san.cnf');
  writeFileSync(sanCfg, REQ_WITH_SAN);
  const sanCsr = join(dir, 'san.csr');
  openssl(['req', '-new', '-key', ecKey, '-config', sanCfg, '-out', sanCsr]);
  const csrPems = [
    pki.csr('c1', '/CN=agent', ecKey),
    pki.csr('c2', '/O=Acme/CN=rsa agent', rsaKey),
    pki.csr('c3', '/CN=p384', p384),
    sanCsr,
  ].map((f) => readFileSync(f, 'utf8'));
  const csrs = csrPems.map((p) => fromPem(p));

  const ca = pki.caDir(inter);
  const revoked = ca.issueDated('revoked', '/CN=revoked device', '20250101000000Z', '20350101000000Z');
  ca.revoke(revoked);
  const crls = [pemToDers(readFileSync(ca.gencrl(join(dir, 'inter.crl')), 'utf8'))[0]!];

  // PKCS#7 like AWS and Azure send: RSA signer, signed attributes, with and without certs,
  // definite (DER) and streamed (indefinite-length BER).
  const doc = join(dir, 'doc.json');
  writeFileSync(doc, JSON.stringify({ accountId: '123456789012', region: 'eu-west-1', instanceId: 'i-0123' }));
  const signer = pki.root('p7signer', '/CN=metadata.example', 'rsa');
  const pkcs7 = [['-nocerts', '-stream'], ['-nocerts'], [], ['-noattr']].map((extra, i) => {
    const out = join(dir, `p7-${i}.der`);
    openssl([
      'smime',
      '-sign',
      '-binary',
      '-nodetach',
      '-nosmimecap',
      '-md',
      'sha256',
      '-signer',
      signer.cert,
      '-inkey',
      signer.key,
      '-in',
      doc,
      '-outform',
      'DER',
      '-out',
      out,
      ...extra,
    ]);
    return readFileSync(out);
  });

  cached = {
    dir,
    certs,
    rootDer: certs[0]!,
    leafDer: certs[2]!,
    csrs,
    csrPems,
    crls,
    pkcs7,
    pkcs7Signer: fromPem(signer.pem, 'CERTIFICATE'),
  };
  return cached;
}
