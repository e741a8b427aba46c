/**
 * `server add-issuer` while a key rotation is in progress (`sigil server rotate-key`): the new
 * issuer publishes the same staged and retired keys and can activate the staged one (its `.next`
 * file comes along, checked against the list); a staged key file that is not the one the list
 * publishes stops add-issuer before the new directory is left behind. A real PostgreSQL
 * (test/helpers/postgres.ts).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialKeyPaths } from '../../src/server/credential-keys.js';
import {
  createCredentialAuthorities,
  publishedJwks,
  publishedSshCaLines,
} from '../../src/server/credentials/authorities.js';
import { initDataDirWithStore, loadCaMaterial } from '../../src/server/data-dir.js';
import { addIssuer } from '../../src/server/issuers/add-issuer.js';
import { rotateKey } from '../../src/server/rotate-key.js';
import { readRotatingState, rotatingKeysPath } from '../../src/server/rotating-keys.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';

let pg: Postgres;
let tmp: string;
let url: string;
beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  url = pg.url(pg.createDatabase('sigil'));
  tmp = mkdtempSync(join(tmpdir(), 'sigil-add-rot-'));
}, 120_000);
afterAll(async () => {
  await pg?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 60_000);

const published = (dir: string, now: number) => {
  const cas = createCredentialAuthorities(loadCaMaterial(dir).credentials, 'example.org');
  return { kids: publishedJwks(cas, now).map((k) => k.kid), ssh: publishedSshCaLines(cas, 'host', now) };
};

describe('add-issuer during a rotation', () => {
  it('the new issuer publishes the same keys and activates the same staged key', async () => {
    const aDir = join(tmp, 'a');
    const bDir = join(tmp, 'b');
    await initDataDirWithStore(aDir, 'example.org', url);
    const now = Date.now();
    await rotateKey({ dataDir: aDir, key: 'ssh-host', store: url, now });
    const staged = await rotateKey({ dataDir: aDir, key: 'jwt', step: 'stage', store: url, now: now + 1000 });
    await addIssuer({ rootDir: aDir, name: 'b', outDir: bDir, store: url });
    expect(published(bDir, now + 2000)).toEqual(published(aDir, now + 2000));
    expect(readRotatingState(bDir).sequence).toBe(readRotatingState(aDir).sequence);
    const next = `${credentialKeyPaths(bDir).jwtSigning}.next`;
    expect(statSync(next).mode & 0o777).toBe(0o600);
    expect(statSync(rotatingKeysPath(bDir)).mode & 0o777).toBe(0o644);
    const onB = await rotateKey({ dataDir: bDir, key: 'jwt', store: url, now: now + 3000 });
    expect(onB.current).toBe(staged.current);
  }, 60_000);

  it('a staged key file that is not the published one stops it, leaving no directory', async () => {
    const aDir = join(tmp, 'a');
    const cDir = join(tmp, 'c');
    await rotateKey({ dataDir: aDir, key: 'ssh-user', step: 'stage', store: url });
    const next = `${credentialKeyPaths(aDir).sshUserCa}.next`;
    const before = readFileSync(next);
    writeFileSync(next, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, {
      mode: 0o600,
    });
    await expect(addIssuer({ rootDir: aDir, name: 'c', outDir: cDir, store: url })).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringMatching(/ssh_user_ca\.key\.next is not the key .* publishes as the next ssh-user key/),
    });
    expect(existsSync(cDir)).toBe(false);
    writeFileSync(next, before, { mode: 0o600 });
  }, 60_000);
});
