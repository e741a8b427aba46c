/**
 * The agent's HTTPS client. Trust comes from the CA pin (`sha256:<hex SPKI>`), never from
 * the system store and never trust-on-first-use:
 *  1. first contact: a TLS handshake without verification only to read the presented chain;
 *     the certificate whose SPKI hash equals the pin must be a self-signed CA, and the leaf must
 *     chain to it. That root becomes the only trust anchor.
 *  2. every request: OpenSSL verifies the chain against that single root, and instead of a
 *     hostname we require the issuer's SPIFFE ID (spiffe://<td>/sigil/issuer), as SPIRE agents do.
 *  3. every response body is a JWS whose x5c chains to the same root (../../protocol/verify-response.ts).
 *  4. (agents) the chain must not pass through an intermediate the pinned root revoked — the agent's
 *     kept root CRL, {@link HttpsIssuerClient.refuseRevoked}: the thief of an intermediate key
 *     revoked by `rotate-intermediate --revoke-old` can still make a TLS certificate with the
 *     issuer's SPIFFE ID, and HTTPS error bodies are not signed (a forged `issuer_revoked` would
 *     cost a token agent its identity).
 */
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import tls, { type PeerCertificate } from 'node:tls';
import { SigilError } from '../../errors.js';
import { expectedIssuerId, spkiPin } from '../../pki/chain.js';
import { toPem } from '../../pki/pem.js';
import { serialKey } from '../../pki/serial-key.js';
import type { Jws } from '../../protocol/jws.js';
import type { IssuerTransport, PostHooks, RequestOp } from '../types.js';

export interface HttpsClientOptions {
  /** https://host:port of the issuer. */
  url: string;
  /** `sha256:<hex>` of the issuer CA root's SubjectPublicKeyInfo. */
  pin: string;
  /** Known root (PEM) from a previous contact; re-checked against the pin. */
  rootPem?: string;
  timeoutMs?: number;
}

function networkError(e: unknown, url: string): SigilError {
  if (e instanceof SigilError) return e;
  const code = (e as NodeJS.ErrnoException).code ?? 'error';
  return new SigilError('issuer_unreachable', `cannot reach the issuer at ${url}: ${code}`, { cause: e });
}

const NONE_REVOKED: ReadonlySet<string> = new Set();

/**
 * Refusal when the server's chain holds a certificate the root issued whose serial `revoked`
 * lists. Only certificates the root issued are looked up: the root CRL's serials are the root's
 * namespace, a leaf's serial is its intermediate's.
 *
 * The chain is walked as Node links it (`issuerCertificate`: by name and key identifier, in the
 * order the server sent them), which is not the path OpenSSL verified: a decoy named like the
 * revoked intermediate but not signed by the root (expired, so OpenSSL passes over it to the real
 * one) would stand in for it (review). So with a CRL kept every link must verify by signature and
 * the walk must end at the pinned root; otherwise the server is refused — a genuine issuer's
 * chain always does.
 */
function revokedOnPath(
  peer: tls.DetailedPeerCertificate,
  root: X509Certificate,
  revoked: ReadonlySet<string>,
): SigilError | undefined {
  if (revoked.size === 0) return undefined;
  const seen = new Set<string>();
  for (let c: tls.DetailedPeerCertificate | undefined = peer; c?.raw && !seen.has(c.fingerprint256);) {
    seen.add(c.fingerprint256);
    if (c.fingerprint256 === root.fingerprint256) return undefined;
    const cert = new X509Certificate(c.raw);
    const up = c.issuerCertificate?.raw ? new X509Certificate(c.issuerCertificate.raw) : undefined;
    if (!up || !cert.verify(up.publicKey)) break;
    const serial = serialKey(cert.serialNumber);
    if (up.fingerprint256 === root.fingerprint256 && revoked.has(serial))
      return new SigilError(
        'response_invalid',
        `the server's TLS chain passes through intermediate CA serial ${serial}, which the pinned root revoked (its CRL lists it): not the issuer`,
      );
    c = c.issuerCertificate;
  }
  return new SigilError(
    'response_invalid',
    "the server's TLS chain, as presented, does not verify certificate by certificate up to the pinned root: not checkable against the root CRL, refused",
  );
}

export class HttpsIssuerClient implements IssuerTransport {
  readonly kind = 'https' as const;
  private readonly base: URL;
  private rootPem: string | undefined;
  private agent: https.Agent | undefined;
  readonly timeoutMs: number;
  #revoked: () => ReadonlySet<string> = () => NONE_REVOKED;
  /** The set the pooled connections (and cached TLS sessions) were checked against. */
  #checkedAgainst: ReadonlySet<string> = NONE_REVOKED;
  #rootCert: X509Certificate | undefined;

  constructor(private readonly opts: HttpsClientOptions) {
    try {
      this.base = new URL(opts.url);
    } catch {
      throw new SigilError('config_invalid', `issuer URL "${opts.url}" is not a valid URL`);
    }
    if (this.base.protocol !== 'https:')
      throw new SigilError('config_invalid', `issuer URL must use https:// (got ${this.base.protocol})`);
    if (!/^sha256:[0-9a-f]{64}$/.test(opts.pin))
      throw new SigilError(
        'config_invalid',
        'ca_pin must look like sha256:<64 hex digits> (printed by `sigil server init`)',
      );
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    if (opts.rootPem) this.setRoot(opts.rootPem);
  }

  get url(): string {
    return this.base.origin;
  }

  private learning: Promise<string> | undefined;

  /** The pinned root, once learned (the agent persists it in its state). */
  get root(): string | undefined {
    return this.rootPem;
  }

  /**
   * Refuse a server whose chain passes through a certificate the pinned root issued and revoked:
   * `fn` returns those serials (RootCrl form, pki/serial-key.ts; the agent's kept root CRL,
   * agent/root-crl-state.ts). When its set changes, pooled connections and cached TLS sessions
   * are dropped: Node skips the identity check on a resumed session.
   */
  refuseRevoked(fn: () => ReadonlySet<string>): this {
    this.#revoked = fn;
    return this;
  }

  private setRoot(pem: string): void {
    const cert = new X509Certificate(pem);
    if (spkiPin(cert) !== this.opts.pin)
      throw new SigilError('pin_mismatch', `the stored issuer root does not match ca_pin ${this.opts.pin}`);
    this.rootPem = pem;
    this.#rootCert = cert;
    this.buildAgent(cert);
  }

  private buildAgent(root: X509Certificate): void {
    const want = expectedIssuerId(root);
    this.#checkedAgainst = this.#revoked();
    this.agent?.destroy();
    this.agent = new https.Agent({
      keepAlive: true,
      ca: this.rootPem,
      rejectUnauthorized: true,
      // Identity is the issuer's SPIFFE ID under the pinned root, not a DNS name.
      checkServerIdentity: (_host: string, peer: PeerCertificate) => {
        const uris = (peer.subjectaltname ?? '')
          .split(', ')
          .filter((s) => s.startsWith('URI:'))
          .map((s) => s.slice(4));
        if (!uris.includes(want)) {
          return new SigilError('pin_mismatch', `the server certificate does not carry the issuer SPIFFE ID ${want}`);
        }
        return revokedOnPath(peer as tls.DetailedPeerCertificate, root, this.#revoked());
      },
    });
  }

  /** First contact: learn the root from the presented chain, accepting it only if it matches the pin. */
  ensureRoot(): Promise<string> {
    if (this.rootPem) return Promise.resolve(this.rootPem);
    // Concurrent first calls share one handshake (and one pin check) rather than racing.
    this.learning ??= this.learnRoot().finally(() => (this.learning = undefined));
    return this.learning;
  }

  private async learnRoot(): Promise<string> {
    const chain = await new Promise<X509Certificate[]>((resolve, reject) => {
      const sock = tls.connect({
        host: this.base.hostname,
        port: Number(this.base.port || 443),
        rejectUnauthorized: false,
        servername: undefined,
        timeout: this.timeoutMs,
      });
      sock.once('secureConnect', () => {
        const out: X509Certificate[] = [];
        let c: tls.DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
        const seen = new Set<string>();
        while (c && c.raw && !seen.has(c.fingerprint256)) {
          seen.add(c.fingerprint256);
          out.push(new X509Certificate(c.raw));
          c = c.issuerCertificate;
        }
        sock.end();
        resolve(out);
      });
      sock.once('timeout', () =>
        sock.destroy(new SigilError('issuer_unreachable', `TLS handshake with ${this.url} timed out`)),
      );
      sock.once('error', (e) => reject(networkError(e, this.url)));
    });
    const rootIdx = chain.findIndex((c) => spkiPin(c) === this.opts.pin);
    if (rootIdx < 0)
      throw new SigilError(
        'pin_mismatch',
        `no certificate presented by ${this.url} matches ca_pin ${this.opts.pin}; check the pin printed by \`sigil server init\``,
      );
    const root = chain[rootIdx]!;
    if (!root.ca || !root.checkIssued(root) || !root.verify(root.publicKey))
      throw new SigilError('pin_mismatch', 'the pinned certificate is not a self-signed CA');
    for (let i = 0; i < rootIdx; i++) {
      if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey))
        throw new SigilError('pin_mismatch', 'the presented TLS chain does not verify up to the pinned root');
    }
    this.setRoot(toPem('CERTIFICATE', root.raw));
    return this.rootPem!;
  }

  private async call(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    extraHeaders: Record<string, string> = {},
    hooks?: PostHooks,
  ): Promise<unknown> {
    await this.ensureRoot();
    if (this.#revoked() !== this.#checkedAgainst) this.buildAgent(this.#rootCert!);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    let deadline: NodeJS.Timeout | undefined;
    return new Promise((resolve, reject) => {
      const req = https.request(
        new URL(path, this.base),
        {
          method,
          agent: this.agent,
          timeout: this.timeoutMs,
          headers: {
            accept: 'application/json',
            ...extraHeaders,
            ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > 1024 * 1024)
              req.destroy(new SigilError('response_invalid', 'issuer response larger than 1 MiB'));
            else chunks.push(c);
          });
          res.on('end', () => {
            let parsed: unknown;
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              return reject(
                new SigilError(
                  res.statusCode && res.statusCode >= 500 ? 'issuer_unreachable' : 'response_invalid',
                  `issuer answered HTTP ${res.statusCode} with a non-JSON body`,
                ),
              );
            }
            if (res.statusCode === 200) return resolve(parsed);
            const err = SigilError.fromWire(parsed);
            reject(err);
          });
          res.on('error', (e) => reject(networkError(e, this.url)));
        },
      );
      const timedOut = (): void =>
        void req.destroy(
          new SigilError('issuer_unreachable', `request to ${this.url}${path} timed out after ${this.timeoutMs} ms`),
        );
      req.on('timeout', timedOut);
      // The whole request, not only socket inactivity: over TLS Node's `timeout` fired only after
      // twice the time against a server that accepts and never answers (review: 2 s gave 4 s).
      deadline = setTimeout(timedOut, this.timeoutMs);
      req.on('error', (e) => reject(networkError(e, this.url)));
      req.end(data, hooks?.sent);
    }).finally(() => clearTimeout(deadline));
  }

  /** Any operation: `/v1/<op>` is the issuer's route for it (server/ops/table.ts). */
  post(op: RequestOp, envelope: Jws, hooks?: PostHooks): Promise<unknown> {
    return this.call('POST', `/v1/${op}`, envelope, {}, hooks);
  }

  bundle(): Promise<unknown> {
    return this.call('GET', '/v1/bundle');
  }

  /** Admin API call (`sigil ctl --server`): bearer credential, same pinned TLS. */
  async admin(op: string, args: unknown, adminToken: string): Promise<unknown> {
    const r = (await this.call('POST', `/v1/admin/${encodeURIComponent(op)}`, args, {
      authorization: `Bearer ${adminToken}`,
    })) as { result?: unknown };
    return r.result;
  }

  close(): void {
    this.agent?.destroy();
  }
}
