/**
 * What an issuer presents over TLS, for `sigil agent configure --ca-pin-from-url`: the pin
 * (`sha256:<SPKI hash>`) of the self-signed CA at the top of its chain, after checking that the
 * chain verifies up to it. This is never trust: the caller prints the pin for a person to compare
 * with `sigil server init`'s output, or compares it with the pin they gave.
 */
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { SigilError } from '../errors.js';
import { spkiPin } from '../pki/chain.js';

export async function fetchIssuerPin(url: string, timeoutMs = 10_000): Promise<{ pin: string; subject: string }> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SigilError('config_invalid', `--ca-pin-from-url ${url}: not a URL`);
  }
  if (u.protocol !== 'https:')
    throw new SigilError('config_invalid', `--ca-pin-from-url ${url}: must be an https:// URL of the issuer`);
  const chain = await new Promise<X509Certificate[]>((resolve, reject) => {
    // No verification here on purpose: we only read the chain; the pin is checked by a person or against --ca-pin.
    const sock = tls.connect({
      host: u.hostname,
      port: Number(u.port || 443),
      rejectUnauthorized: false,
      timeout: timeoutMs,
    });
    sock.once('secureConnect', () => {
      const out: X509Certificate[] = [];
      const seen = new Set<string>();
      for (
        let c: tls.DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
        c?.raw && !seen.has(c.fingerprint256);
        c = c.issuerCertificate
      ) {
        seen.add(c.fingerprint256);
        out.push(new X509Certificate(c.raw));
      }
      sock.end();
      resolve(out);
    });
    sock.once('timeout', () =>
      sock.destroy(new SigilError('issuer_unreachable', `TLS handshake with ${url} timed out`)),
    );
    sock.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        e instanceof SigilError
          ? e
          : new SigilError('issuer_unreachable', `cannot reach ${url}: ${e.code ?? e.message}`),
      ),
    );
  });
  const rootIdx = chain.findIndex((c) => c.ca && c.checkIssued(c) && c.verify(c.publicKey));
  if (rootIdx < 0)
    throw new SigilError(
      'pin_mismatch',
      `${url} presents no self-signed CA certificate in its TLS chain (is it a Sigil issuer?)`,
    );
  for (let i = 0; i < rootIdx; i++) {
    if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey))
      throw new SigilError('pin_mismatch', `the TLS chain presented by ${url} does not verify up to its root`);
  }
  const root = chain[rootIdx]!;
  return { pin: spkiPin(root), subject: root.subject.replace(/\n/g, ', ') };
}
