/**
 * The one small HTTP(S) client the cloud and CI join methods use: the agent halves ask a
 * metadata service (AWS IMDS, GCE metadata server, Azure IMDS, the GitHub Actions token
 * service) for evidence, the issuer halves fetch key sets (JWKS). Bounded in every dimension —
 * a timeout, a body size cap, no redirects, no proxy — because metadata endpoints are
 * link-local and key-set URLs come from policy, and neither should be able to hang or flood
 * the caller.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import tls from 'node:tls';

export interface HttpRequest {
  method?: 'GET' | 'PUT';
  url: string;
  headers?: Record<string, string>;
  /** Extra trust anchors (PEM) for https URLs, on top of Node's bundled roots. */
  ca?: string;
  timeoutMs?: number;
  maxBytes?: number;
}

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export const DEFAULT_TIMEOUT_MS = 5_000;
export const DEFAULT_MAX_BYTES = 1024 * 1024;

/** One request; rejects with a plain Error (callers map it to their own code) on any failure to get an answer. */
export function httpRequest(req: HttpRequest): Promise<HttpAnswer> {
  const url = new URL(req.url);
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return Promise.reject(new Error(`unsupported URL scheme ${url.protocol}`));
  const client = url.protocol === 'https:' ? https : http;
  const maxBytes = req.maxBytes ?? DEFAULT_MAX_BYTES;
  return new Promise((resolve, reject) => {
    const r = client.request(
      url,
      {
        method: req.method ?? 'GET',
        headers: { ...(req.method === 'PUT' ? { 'content-length': '0' } : {}), ...req.headers },
        agent: false,
        timeout: req.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        // Node's `ca` replaces the default roots; keep them, so a rule's ca_file only adds trust.
        ...(url.protocol === 'https:' && req.ca !== undefined ? { ca: [...tls.rootCertificates, req.ca] } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) {
            res.destroy();
            reject(new Error(`answer larger than ${maxBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error(`no answer within ${req.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`)));
    r.on('error', reject);
    r.end();
  });
}

/** A short description of a failed request for messages: the code (ECONNREFUSED, …) or the message. */
export function describeHttpError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ?? err.message ?? String(e);
}
