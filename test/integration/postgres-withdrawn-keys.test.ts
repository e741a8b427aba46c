/**
 * The store's memory of withdrawn keys (src/server/withdrawn-keys.ts) on a real PostgreSQL with
 * two running issuers (IssuerService, real HTTPS): a compromise rotation run at issuer A halts the
 * stolen JWT key at issuer B within a key poll — before any file is copied to B — and B, restarted
 * with its old files, refuses to start; with the files copied it starts and signs with the new key.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialKeyPaths } from '../../src/server/credential-keys.js';
import { jwtSigner, publishedJwks } from '../../src/server/credentials/authorities.js';
import { initDataDirWithStore } from '../../src/server/data-dir.js';
import { addIssuer } from '../../src/server/issuers/add-issuer.js';
import { rotateKey } from '../../src/server/rotate-key.js';
import { rotatingKeysPath } from '../../src/server/rotating-keys.js';
import { IssuerService } from '../../src/server/service.js';
import { createLogger } from '../../src/util/log.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';

let pg: Postgres;
let tmp: string;
let url: string;
const services: IssuerService[] = [];
beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  url = pg.url(pg.createDatabase('sigil'));
  tmp = mkdtempSync(join(tmpdir(), 'sigil-pg-withdrawn-'));
}, 120_000);
afterAll(async () => {
  for (const s of services) await s.stop();
  await pg?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 60_000);

async function started(dataDir: string): Promise<IssuerService> {
  const s = IssuerService.open(
    {
      dataDir,
      store: url,
      host: '127.0.0.1',
      port: 0,
      audit: { checkpointIntervalMs: 600_000 },
      keyWatchMs: 50,
      ui: false,
    },
    createLogger({ name: 'test', level: 'silent' }),
  );
  services.push(s);
  await s.start();
  return s;
}

describe('a compromise rotation on one issuer of a shared store', () => {
  it('halts the stolen key on the other at once, without files; its restart is refused until the files come', async () => {
    const aDir = join(tmp, 'a');
    const bDir = join(tmp, 'b');
    await initDataDirWithStore(aDir, 'example.org', url);
    await addIssuer({ rootDir: aDir, outDir: bDir, name: 'b', store: url });
    const a = await started(aDir);
    const b = await started(bDir);
    const stolen = b.ctx.credentials.jwt.kid;
    expect(a.ctx.credentials.jwt.kid).toBe(stolen);

    await rotateKey({ dataDir: aDir, key: 'jwt', overlapS: 0, store: url });
    // A reads its own files; B has none of them, only the store.
    await expect.poll(() => b.ctx.credentials.halted.has('jwt'), { timeout: 5_000, interval: 25 }).toBe(true);
    expect(() => jwtSigner(b.ctx.credentials)).toThrow(/withdrawn by a compromise rotation/);
    expect(b.ctx.credentials.halted.get('jwt')).toMatch(/the store remembers it/);
    expect(publishedJwks(b.ctx.credentials, Date.now())).toEqual([]);
    // B's own decision is in the shared audit log, naming the key by kid.
    await expect
      .poll(
        async () =>
          (await b.ctx.stores.audit.list())
            .filter((r) => r.action === 'signing_key_halted')
            .map((r) => [r.code, r.details?.['kind'], r.details?.['key_id']]),
        { timeout: 5_000, interval: 50 },
      )
      .toEqual([['signing_key_withdrawn', 'jwt', `kid ${stolen}`]]);
    await expect.poll(() => a.ctx.credentials.jwt.kid, { timeout: 5_000, interval: 25 }).not.toBe(stolen);
    expect(a.ctx.credentials.halted.size).toBe(0);
    const fresh = a.ctx.credentials.jwt.kid;

    await b.stop();
    const again = IssuerService.open(
      { dataDir: bDir, store: url, host: '127.0.0.1', port: 0, audit: { checkpointIntervalMs: 600_000 }, ui: false },
      createLogger({ name: 'test', level: 'silent' }),
    );
    services.push(again);
    const err = (await again.start().then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: string; message?: string } | undefined;
    expect(err?.code).toBe('config_invalid');
    expect(err?.message).toMatch(/jwt signing key .* withdrawn by a compromise rotation on .*\(the store remembers it/);

    for (const f of [credentialKeyPaths(aDir).jwtSigning, rotatingKeysPath(aDir)]) cpSync(f, f.replace(aDir, bDir));
    const b2 = await started(bDir);
    expect(jwtSigner(b2.ctx.credentials).kid).toBe(fresh);
  }, 120_000);
});
