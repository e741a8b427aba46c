/**
 * Small servers on 127.0.0.1 for the cloud and CI join tests: an HTTPS server with its own
 * self-signed CA (made with openssl) standing in for Google's, Microsoft's or GitHub's key-set
 * endpoints — its CA goes to the verifier through the join rule's `ca_file` — and plain HTTP
 * servers standing in for metadata services (AWS/Azure IMDS, the GCE metadata server), which
 * are plain HTTP on a link-local address in real life too.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { OpensslPki } from './openssl-pki.js';

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body?: string | Buffer | object;
}

export type Handler = (req: IncomingMessage, url: URL, body: Buffer) => Reply | Promise<Reply>;

export interface LoopbackServer {
  url: string;
  port: number;
  /** Requests served, as "METHOD /path?query". */
  hits: string[];
  /** Swap the handler (e.g. rotate keys). */
  handle(h: Handler): void;
  close(): Promise<void>;
}

function serve(
  server: http.Server | https.Server,
  scheme: 'http' | 'https',
  initial: Handler,
): Promise<LoopbackServer> {
  let handler = initial;
  const hits: string[] = [];
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', `${scheme}://127.0.0.1`);
      hits.push(`${req.method} ${url.pathname}${url.search}`);
      Promise.resolve()
        .then(() => handler(req, url, Buffer.concat(chunks)))
        .then(
          (r) => {
            const body =
              r.body === undefined
                ? ''
                : typeof r.body === 'string' || Buffer.isBuffer(r.body)
                  ? r.body
                  : JSON.stringify(r.body);
            const type =
              r.body !== undefined && typeof r.body === 'object' && !Buffer.isBuffer(r.body)
                ? { 'content-type': 'application/json' }
                : {};
            res.writeHead(r.status ?? 200, { ...type, ...r.headers });
            res.end(body);
          },
          (e: unknown) => {
            res.writeHead(500);
            res.end(String(e));
          },
        );
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as AddressInfo).port;
      resolve({
        url: `${scheme}://127.0.0.1:${port}`,
        port,
        hits,
        handle: (h) => (handler = h),
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections?.();
            server.close(() => r());
          }),
      });
    });
  });
}

export function startHttpServer(handler: Handler): Promise<LoopbackServer> {
  return serve(http.createServer(), 'http', handler);
}

export interface HttpsLoopback extends LoopbackServer {
  /** PEM of the CA that issued the server's certificate. */
  caPem: string;
  /** A file holding caPem (for a join rule's ca_file). */
  caFile: string;
}

/** An HTTPS server whose certificate (IP SAN 127.0.0.1) comes from a fresh openssl CA in `dir`. */
export async function startHttpsServer(dir: string, handler: Handler, name = 'jwks'): Promise<HttpsLoopback> {
  const pki = new OpensslPki(dir);
  const ca = pki.root(`${name}-ca`, `/O=Sigil Tests/CN=${name} loopback CA`, 'ec');
  const leaf = pki.leaf(`${name}-server`, ca, '/O=Sigil Tests/CN=127.0.0.1', {
    ext: [
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature',
      'extendedKeyUsage = serverAuth',
    ],
    san: 'IP:127.0.0.1',
  });
  const server = https.createServer({ key: readFileSync(leaf.key), cert: leaf.pem });
  const s = await serve(server, 'https', handler);
  return { ...s, caPem: ca.pem, caFile: ca.cert };
}
