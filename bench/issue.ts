/**
 * X509-SVID issuance throughput on one core, against its own limit: the raw ECDSA P-256
 * signature measured in the same run. `ratio` = certs/s ÷ raw signs/s; 1.0 would mean the DER
 * template costs nothing. @peculiar/x509 is measured for comparison (the JS ASN.1 path).
 *
 *   npx tsx bench/issue.ts            (or: npm run bench -- issue)
 *   env BENCH_SECONDS=3 (for each of (a) and (b); the peculiar phase runs a third of it, ≥ 1 s)
 *
 * Last stdout line: {"bench":"issue","certs_per_s":…,"raw_sign_per_s":…,"ratio":…,"peculiar_certs_per_s":…}
 */
import { generateKeyPairSync, randomBytes, sign, webcrypto } from 'node:crypto';
import { createIntermediateCa, createRootCa } from '../src/pki/ca.js';
import { CertificateIssuer } from '../src/pki/issue.js';
import { randomSerial } from '../src/pki/serial.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const SUBJECTS = 200;
const TRUST_DOMAIN = 'bench.example';

/** Run `fn` in batches until `seconds` elapse; operations per second. */
function measure(seconds: number, fn: () => void): number {
  for (let i = 0; i < 200; i++) fn(); // warm-up: JIT and OpenSSL caches
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  let n = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
  }
  return n / ((performance.now() - start) / 1000);
}

async function measureAsync(seconds: number, fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 20; i++) await fn();
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  let n = 0;
  while (performance.now() < deadline) {
    await fn();
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

const root = createRootCa({ trustDomain: TRUST_DOMAIN });
const inter = createIntermediateCa(root, { trustDomain: TRUST_DOMAIN });
const issuer = new CertificateIssuer({ caCertDer: inter.certDer, caKey: inter.key });
const spkis = Array.from({ length: SUBJECTS }, () =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }),
);

// (a) the limit: one P-256 signature over a TBS-sized buffer with the same KeyObject, and
// (b) full issuance rotating through pre-generated subject keys. The two are measured in
// alternating rounds so that load from other processes on the machine hits both alike.
const tbsSized = randomBytes(400);
const rawSign = (): void => {
  sign('sha256', tbsSized, { key: inter.key, dsaEncoding: 'der' });
};
let k = 0;
let bytes = 0;
const now = Date.now();
const issue = (): void => {
  const der = issuer.issueSvid({
    serial: randomSerial(),
    spkiDer: spkis[k++ % SUBJECTS]!,
    spiffeId: `spiffe://${TRUST_DOMAIN}/bot/edge-${k}`,
    notBefore: new Date(now),
    notAfter: new Date(now + 3_600_000),
  });
  bytes = der.length;
};
const ROUNDS = 6;
let rawSignPerS = 0;
let certsPerS = 0;
for (let round = 0; round < ROUNDS; round++) {
  rawSignPerS += measure(SECONDS / ROUNDS, rawSign) / ROUNDS;
  certsPerS += measure(SECONDS / ROUNDS, issue) / ROUNDS;
}
console.log(`raw crypto.sign P-256:      ${rawSignPerS.toFixed(0).padStart(7)} signs/s`);
console.log(`issueSvid:                  ${certsPerS.toFixed(0).padStart(7)} certs/s  (${bytes}-byte certificates)`);
const ratio = certsPerS / rawSignPerS;
console.log(`ratio issue/raw sign:       ${ratio.toFixed(3)}  (target >= 0.5)`);

// (c) @peculiar/x509 with WebCrypto, same profile, for comparison. Its DI container (tsyringe)
// needs the Reflect metadata API, which `reflect-metadata` provides.
await import('reflect-metadata');
const x509 = await import('@peculiar/x509');
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const caKeys = (await webcrypto.subtle.generateKey(alg, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
const subjectKeys = await Promise.all(
  Array.from(
    { length: 20 },
    async () =>
      ((await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair).publicKey,
  ),
);
const aki = await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey);
let p = 0;
const peculiarPerS = await measureAsync(Math.max(1, SECONDS / 3), async () => {
  const publicKey = subjectKeys[p++ % subjectKeys.length]!;
  await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial().toString('hex'),
    subject: '',
    issuer: 'O=Sigil, CN=bench.example intermediate CA',
    notBefore: new Date(now),
    notAfter: new Date(now + 3_600_000),
    signingAlgorithm: alg,
    publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      aki,
      new x509.SubjectAlternativeNameExtension(
        [{ type: 'url', value: `spiffe://${TRUST_DOMAIN}/bot/edge-${p}` }],
        true,
      ),
    ],
  });
});
console.log(
  `@peculiar/x509 generator:   ${peculiarPerS.toFixed(0).padStart(7)} certs/s  (${(certsPerS / peculiarPerS).toFixed(1)}x slower than issueSvid)`,
);

console.log(
  JSON.stringify({
    bench: 'issue',
    certs_per_s: Math.round(certsPerS),
    raw_sign_per_s: Math.round(rawSignPerS),
    ratio: Number(ratio.toFixed(3)),
    peculiar_certs_per_s: Math.round(peculiarPerS),
  }),
);
