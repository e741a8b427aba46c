/**
 * The in-process limits a Sigil issuance bench prints next to its own figure: certificates/s
 * from CertificateIssuer.issueSvid with the issuer's own intermediate, and raw crypto.sign/s
 * with the same key, in alternating rounds so drift on a shared machine hits both alike.
 */
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { CertificateIssuer } from '../../src/pki/issue.js';
import { randomSerial } from '../../src/pki/serial.js';
import { loadCaMaterial } from '../../src/server/data-dir.js';

function measureRate(seconds: number, fn: () => void): number {
  for (let i = 0; i < 200; i++) fn();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let n = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
  }
  return n / ((performance.now() - start) / 1000);
}

/** `seconds` in total for each of the two (4 alternating rounds). */
export function measureInProcessIssuance(
  dataDir: string,
  spiffePrefix: string,
  seconds: number,
): { certsPerS: number; rawSignPerS: number } {
  const ca = loadCaMaterial(dataDir);
  const engine = new CertificateIssuer({ caCertDer: ca.intermediateDer, caKey: ca.intermediateKey });
  const spkis = Array.from({ length: 200 }, () =>
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }),
  );
  const tbsSized = randomBytes(400);
  const now = Date.now();
  let k = 0;
  const issue = (): void => {
    engine.issueSvid({
      serial: randomSerial(),
      spkiDer: spkis[k++ % spkis.length]!,
      spiffeId: `${spiffePrefix}/inproc-${k}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
    });
  };
  const rawSign = (): void => void sign('sha256', tbsSized, { key: ca.intermediateKey, dsaEncoding: 'der' });
  const ROUNDS = 4;
  let certsPerS = 0;
  let rawSignPerS = 0;
  for (let r = 0; r < ROUNDS; r++) {
    rawSignPerS += measureRate(seconds / ROUNDS, rawSign) / ROUNDS;
    certsPerS += measureRate(seconds / ROUNDS, issue) / ROUNDS;
  }
  return { certsPerS, rawSignPerS };
}
