import { createServer } from 'node:https';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dechunk, Http1Connection, Http1ConnectionError } from '../../../bench/lib/http1.js';

describe('dechunk', () => {
  it('joins the chunks of a complete body and ignores chunk extensions', () => {
    expect(dechunk(Buffer.from('3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n'))!.toString()).toBe('abcde');
  });

  it('waits (undefined) until the last chunk and its CRLF have arrived', () => {
    expect(dechunk(Buffer.from('3\r\nabc\r\n'))).toBeUndefined();
    expect(dechunk(Buffer.from('3\r\nab'))).toBeUndefined();
    expect(dechunk(Buffer.from('3\r\nabc\r\n0\r\n'))).toBeUndefined();
  });

  it('refuses a chunk size that is not hex', () => {
    expect(() => dechunk(Buffer.from('zz\r\nabc\r\n'))).toThrow(/chunk size/);
  });
});

describe('Http1Connection against a real TLS server', () => {
  let dir: string;
  let caPem: string;
  let otherCaPem: string;
  let port: number;
  let server: ReturnType<typeof createServer>;
  let connections = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sigil-http1-'));
    const ossl = (...a: string[]): void => void execFileSync('openssl', a, { cwd: dir, stdio: 'ignore' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    ossl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=t', '-days', '1');
    ossl('req', '-x509', ...ec, '-keyout', 'o.key', '-out', 'other.pem', '-subj', '/CN=o', '-days', '1');
    ossl('req', '-new', ...ec, '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
    execFileSync('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1\\n" > ext'], { cwd: dir });
    ossl(
      'x509',
      '-req',
      '-in',
      'srv.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'srv.pem',
      '-extfile',
      'ext',
    );
    caPem = readFileSync(join(dir, 'ca.pem'), 'utf8');
    otherCaPem = readFileSync(join(dir, 'other.pem'), 'utf8');
    server = createServer(
      { key: readFileSync(join(dir, 'srv.key')), cert: readFileSync(join(dir, 'srv.pem')) },
      (req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          if (req.url === '/chunked') {
            res.write('{"a":');
            res.end('1}');
          } else if (req.url === '/drop') {
            req.socket.destroy();
          } else {
            const out = JSON.stringify({ method: req.method, echo: body });
            res.writeHead(req.url === '/teapot' ? 418 : 200, { 'content-length': Buffer.byteLength(out) });
            res.end(out);
          }
        });
      },
    );
    server.on('secureConnection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });

  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends requests one after the other over one keep-alive connection and reads Content-Length and chunked bodies', async () => {
    const c = new Http1Connection({ host: '127.0.0.1', port, ca: caPem });
    const before = connections;
    for (let i = 0; i < 3; i++) {
      const r = await c.request('POST', '/x', `{"i":${i}}`);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body.toString())).toEqual({ method: 'POST', echo: `{"i":${i}}` });
    }
    const t = await c.request('POST', '/teapot', 'x');
    expect(t.status).toBe(418);
    expect((await c.request('GET', '/chunked')).body.toString()).toBe('{"a":1}');
    expect(connections - before).toBe(1);
    expect(c.connects).toBe(1);
    c.close();
  });

  it('refuses one request while another is in flight', async () => {
    const c = new Http1Connection({ host: '127.0.0.1', port, ca: caPem });
    const first = c.request('GET', '/x');
    await expect(c.request('GET', '/x')).rejects.toThrow(/already in flight/);
    await first;
    c.close();
  });

  it('fails with a connection error when the server drops the connection, and reconnects for the next request', async () => {
    const c = new Http1Connection({ host: '127.0.0.1', port, ca: caPem });
    await expect(c.request('GET', '/drop')).rejects.toBeInstanceOf(Http1ConnectionError);
    expect((await c.request('GET', '/x')).status).toBe(200);
    expect(c.connects).toBe(2);
    c.close();
  });

  it('does real TLS: a server certificate from another CA is refused', async () => {
    const c = new Http1Connection({ host: '127.0.0.1', port, ca: otherCaPem });
    await expect(c.request('GET', '/x')).rejects.toBeInstanceOf(Http1ConnectionError);
    c.close();
  });

  it('applies the caller identity check instead of the hostname check', async () => {
    const c = new Http1Connection({
      host: '127.0.0.1',
      port,
      ca: caPem,
      checkServerIdentity: () => new Error('not the issuer SPIFFE ID'),
    });
    await expect(c.request('GET', '/x')).rejects.toThrow(/not the issuer SPIFFE ID/);
    c.close();
  });
});
