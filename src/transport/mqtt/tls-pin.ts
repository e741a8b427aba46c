/**
 * First contact with a broker whose TLS certificate was issued by the Sigil CA, before the
 * agent knows the root: read the presented chain without verifying it, accept only a
 * self-signed CA whose SubjectPublicKeyInfo hash is the configured pin, and only if the chain
 * verifies up to it. That root then verifies every later connection (and every response).
 * Same rule as the HTTPS client (transport/https/client.ts): no trust on first use.
 */
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { SigilError } from '../../errors.js';
import { spkiPin } from '../../pki/chain.js';
import { toPem } from '../../pki/pem.js';

export async function peekPinnedRoot(
  host: string,
  port: number,
  pin: string,
  timeoutMs: number,
  url: string,
): Promise<string> {
  const chain = await new Promise<X509Certificate[]>((resolve, reject) => {
    const sock = tls.connect({ host, port, rejectUnauthorized: false, timeout: timeoutMs });
    sock.once('secureConnect', () => {
      const out: X509Certificate[] = [];
      const seen = new Set<string>();
      let c: tls.DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
      while (c && c.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        out.push(new X509Certificate(c.raw));
        c = c.issuerCertificate;
      }
      sock.destroy();
      resolve(out);
    });
    sock.once('timeout', () =>
      sock.destroy(new SigilError('issuer_unreachable', `TLS handshake with the MQTT broker ${url} timed out`)),
    );
    sock.once('error', (e) =>
      reject(
        e instanceof SigilError
          ? e
          : new SigilError(
              'issuer_unreachable',
              `cannot reach the MQTT broker ${url}: ${(e as NodeJS.ErrnoException).code ?? e.message}`,
              { cause: e },
            ),
      ),
    );
  });
  const i = chain.findIndex((c) => spkiPin(c) === pin);
  if (i < 0) {
    throw new SigilError(
      'pin_mismatch',
      `the MQTT broker ${url} presents no certificate matching ca_pin ${pin}: put the Sigil root in the broker's certfile after its certificate and intermediate, or, if its certificate comes from another CA, set ca_file for this transport`,
    );
  }
  const root = chain[i]!;
  if (!root.ca || !root.checkIssued(root) || !root.verify(root.publicKey))
    throw new SigilError('pin_mismatch', 'the pinned certificate is not a self-signed CA');
  for (let k = 0; k < i; k++) {
    if (!chain[k]!.checkIssued(chain[k + 1]!) || !chain[k]!.verify(chain[k + 1]!.publicKey))
      throw new SigilError('pin_mismatch', `the TLS chain of ${url} does not verify up to the pinned root`);
  }
  return toPem('CERTIFICATE', root.raw);
}
