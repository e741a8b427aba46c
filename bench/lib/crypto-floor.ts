/**
 * The crypto floor of one certificate renewal with node:crypto on this machine: what no issuer
 * can avoid per renewal — 3 ECDSA P-256 verifies (the presented leaf's signature by the CA, the
 * request JWS, the CSR's self-signature) and 2 signs (the certificate, the response JWS) — with
 * keys already imported. Measured as CPU time of this thread, so other load on the machine does
 * not inflate it (wall time would).
 */
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';

export interface CryptoFloor {
  /** CPU microseconds for 3 verifies + 2 signs. */
  usPerRenewal: number;
  verifyUs: number;
  signUs: number;
}

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Run `fn` in batches for about `ms` of CPU time; CPU µs per call. */
function cpuPerCall(ms: number, fn: () => void): number {
  for (let i = 0; i < 100; i++) fn();
  const c0 = cpuUs();
  let n = 0;
  while (cpuUs() - c0 < ms * 1000) {
    for (let i = 0; i < 50; i++) fn();
    n += 50;
  }
  return (cpuUs() - c0) / n;
}

/** `ms`: CPU time spent measuring, split between sign and verify over alternating rounds. */
export function measureCryptoFloor(ms = 1000): CryptoFloor {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  // A TBS certificate / JWS signing input is a few hundred bytes; hashing it is part of the cost.
  const data = randomBytes(600);
  const sig = sign('sha256', data, { key: privateKey, dsaEncoding: 'der' });
  const rounds = 4;
  let signUs = 0;
  let verifyUs = 0;
  for (let r = 0; r < rounds; r++) {
    signUs +=
      cpuPerCall(ms / (2 * rounds), () => sign('sha256', data, { key: privateKey, dsaEncoding: 'der' })) / rounds;
    verifyUs +=
      cpuPerCall(ms / (2 * rounds), () => {
        if (!verify('sha256', data, { key: publicKey, dsaEncoding: 'der' }, sig)) throw new Error('verify failed');
      }) / rounds;
  }
  return { usPerRenewal: 3 * verifyUs + 2 * signUs, verifyUs, signUs };
}
