// The IssuerService (server/service.ts): the issuer as one object with start()/stop() — what
// `sigil server start` builds from its flags. Two services in one process share nothing, the
// serving certificate is rotated by the service's own timer and presented on new handshakes,
// and stop() releases everything (the port, the stores) so a second start on the data dir works.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/server/data-dir.js';
import { IssuerService } from '../../src/server/service.js';
import { rotateKey } from '../../src/server/rotate-key.js';
import { createLogger } from '../../src/util/log.js';

const dirs: string[] = [];
const services: IssuerService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dataDir(trustDomain: string): string {
  const d = mkdtempSync(path.join(tmpdir(), 'sigil-service-'));
  dirs.push(d);
  const dir = path.join(d, 'issuer');
  initDataDir(dir, trustDomain);
  return dir;
}

async function started(
  dir: string,
  extra: { rotateEveryMs?: number; keyWatchMs?: number; onKeysChanged?: () => void } = {},
): Promise<IssuerService> {
  const s = IssuerService.open(
    { dataDir: dir, host: '127.0.0.1', port: 0, audit: { checkpointIntervalMs: 600_000 }, ...extra },
    createLogger({ name: 'test', level: 'silent' }),
  );
  services.push(s);
  await s.start();
  return s;
}

/** The serial number of the certificate the issuer presents on a new TLS handshake. */
function servedSerial(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      const serial = sock.getPeerCertificate().serialNumber;
      sock.end();
      resolve(serial);
    });
    sock.on('error', reject);
  });
}

describe('IssuerService', () => {
  it('listens on a free port with a certificate of its own CA, and two services in one process are independent', async () => {
    const a = await started(dataDir('a.example'));
    const b = await started(dataDir('b.example'));
    expect(a.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(a.url).not.toBe(b.url);
    expect(a.ctx.ca.trustDomain).toBe('a.example');
    expect(b.ctx.ca.trustDomain).toBe('b.example');
    // Per-issuer state: nothing shared between the two contexts.
    expect(a.ctx.methods).not.toBe(b.ctx.methods);
    expect(a.ctx.firmware).not.toBe(b.ctx.firmware);
    expect(a.ctx.publicUrl).toBe(a.url);
    // Each presents a certificate from its own CA.
    const [sa, sb] = await Promise.all([servedSerial(a.url), servedSerial(b.url)]);
    expect(sa).not.toBe(sb);
  });

  it('rotates the serving certificate on its own timer and presents the new one on new handshakes', async () => {
    const s = await started(dataDir('rot.example'), { rotateEveryMs: 150 });
    const first = await servedSerial(s.url);
    const firstId = s.ctx.server;
    await expect.poll(() => s.ctx.server !== firstId, { timeout: 5_000, interval: 50 }).toBe(true);
    await expect.poll(() => servedSerial(s.url), { timeout: 5_000, interval: 50 }).not.toBe(first);
  });

  it('reads a rotate-key step on its own timer (no restart) and exports the halted-key gauge', async () => {
    const dir = dataDir('keys.example');
    let told = 0;
    const s = await started(dir, { keyWatchMs: 50, onKeysChanged: () => told++ });
    const kid = s.ctx.credentials.jwt.kid;
    await rotateKey({ dataDir: dir, key: 'jwt' });
    await expect.poll(() => s.ctx.credentials.jwt.kid, { timeout: 5_000, interval: 50 }).not.toBe(kid);
    // Its own watch took the step: a --workers worker tells the primary (once per step).
    await expect.poll(() => told, { timeout: 5_000, interval: 20 }).toBe(1);
    expect(await s.ctx.metrics.registry.scrape()).toMatch(/^sigil_signing_key_withdrawn\{key="jwt"\} 0$/m);
    // docs/alerts.yaml alerts on it by that name.
    expect(readFileSync(new URL('../../docs/alerts.yaml', import.meta.url), 'utf8')).toContain(
      'expr: sigil_signing_key_withdrawn == 1',
    );
    expect(await s.reloadKeys()).toMatchObject({ result: 'applied', changes: [] });
    // A SIGHUP's reload (the primary's, passed on) is not reported back.
    expect(told).toBe(1);
  });

  it('stop() frees the port and the stores: the data dir starts again, and stop is idempotent', async () => {
    const dir = dataDir('restart.example');
    const s = await started(dir);
    const port = Number(new URL(s.url).port);
    await s.stop();
    await s.stop();
    const again = IssuerService.open(
      { dataDir: dir, host: '127.0.0.1', port, audit: { checkpointIntervalMs: 600_000 } },
      createLogger({ name: 'test', level: 'silent' }),
    );
    services.push(again);
    await again.start();
    expect(again.url).toBe(s.url);
  });

  it('seals stored answers under its data directory (audit.key, answer-seal.json): a restart opens them, another issuer does not', async () => {
    const dir = dataDir('seal.example');
    const s = await started(dir);
    const since = s.ctx.answerSeal.legacyBefore;
    // `server init` wrote since = 0: a new issuer has no unsealed answers to honour, and accepts
    // none (one dated just before its first start would otherwise be replayed; review of session 14).
    expect(since).toBe(0);
    const planted = {
      requestId: 'p'.repeat(22),
      requestHash: 'aa'.repeat(32),
      signer: 'k',
      op: 'renew',
      createdAt: Date.now() - 1000,
      response: '{"v":1}',
    };
    expect(() => s.ctx.answerSeal.open(planted, Date.now())).toThrow(/carries no seal/);
    expect(JSON.parse(readFileSync(path.join(dir, 'answer-seal.json'), 'utf8'))).toEqual({
      v: 1,
      since: new Date(since).toISOString(),
    });
    const fields = {
      requestId: 'r'.repeat(22),
      requestHash: 'aa'.repeat(32),
      signer: 'k',
      op: 'renew',
      createdAt: since,
    };
    const row = { ...fields, response: s.ctx.answerSeal.seal(fields, '{"v":1}') };
    await s.stop();
    const again = await started(dir);
    expect(again.ctx.answerSeal.legacyBefore).toBe(since);
    expect(again.ctx.answerSeal.open(row, since)).toBe('{"v":1}');
    const other = await started(dataDir('seal.example'));
    expect(() => other.ctx.answerSeal.open(row, since)).toThrow(/does not match its row/);
  });

  it('a port in use is a clear config error and leaves nothing running', async () => {
    const a = await started(dataDir('busy.example'));
    const port = Number(new URL(a.url).port);
    const b = IssuerService.open(
      { dataDir: dataDir('busy2.example'), host: '127.0.0.1', port, audit: { checkpointIntervalMs: 600_000 } },
      createLogger({ name: 'test', level: 'silent' }),
    );
    await expect(b.start()).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining('EADDRINUSE'),
    });
    await b.stop();
  });
});
