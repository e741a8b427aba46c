/**
 * One registry row whose PEM holds a certificate followed by trailing bytes (a database writer's)
 * used to make every refresh throw, so a running issuer kept its old view: a revocation recorded
 * afterwards — in the database, and in a root CRL copied into DATA_DIR/crl/root.crl — was never
 * applied while the row was there (security review of issue #16). Now the row is refused alone
 * and the refresh goes on. docs/issuers.md: a row that does not verify is "ignored (logged once)";
 * the root CRL is read "at every refresh" and wins "whatever the database says".
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createIntermediateCa, type CaMaterial as PkiCa } from '../../src/pki/ca.js';
import { CertificateIssuer } from '../../src/pki/issue.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { randomSerial } from '../../src/pki/serial.js';
import { readAuditKey } from '../../src/server/audit/audit-key.js';
import { initDataDirWithStore, loadCaMaterial, paths } from '../../src/server/data-dir.js';
import { createIssuerContext } from '../../src/server/issuer.js';
import { intermediateCommonName } from '../../src/server/issuers/names.js';
import { signRootCrl } from '../../src/server/issuers/root-crl.js';
import { rootCrlFile } from '../../src/server/issuers/root-crl-file.js';
import { applyRegistry, startRegistry } from '../../src/server/issuers/runtime.js';
import { checkPresentedChain } from '../../src/server/ops/authenticate.js';
import { readPrivateKeyFile } from '../../src/server/key-file.js';
import { openPostgresStores, type PostgresStores } from '../../src/server/store/postgres/index.js';
import { silentLogger as mkSilent } from '../../src/util/log.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';

const TD = 'example.org';
const log = mkSilent();
let pg: Postgres;
let dir: string;
let db: string;
let stores: PostgresStores;

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  db = pg.createDatabase('poison');
  const url = pg.url(db);
  dir = join(mkdtempSync(join(tmpdir(), 'sigil-registry-attack-')), 'issuer');
  await initDataDirWithStore(dir, TD, url);
  stores = openPostgresStores(url, { audit: { key: readAuditKey(paths(dir).auditKey)! }, checkAuditKey: true });
}, 60_000);

afterAll(async () => {
  await stores?.close();
  await pg?.stop();
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

function leaf(ca: PkiCa): Buffer {
  const spkiDer = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
  const now = Date.now();
  return new CertificateIssuer({ caCertDer: ca.certDer, caKey: ca.key }).issueSvid({
    serial: randomSerial(),
    spkiDer,
    spiffeId: `spiffe://${TD}/bot/edge/i1`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3600_000),
    subject: [['CN', 'i1']],
  });
}

it('a malformed registry row is refused alone: a later revocation (database and root CRL) still applies', async () => {
  const ctx = createIssuerContext({ ca: loadCaMaterial(dir), stores, log });
  const root = { certDer: fromPem(ctx.ca.rootPem, 'CERTIFICATE'), key: readPrivateKeyFile(paths(dir).rootKey) };
  const b = createIntermediateCa(root, { trustDomain: TD, commonName: intermediateCommonName(TD, 'b') });
  await stores.issuers.register({ name: 'b', certPem: toPem('CERTIFICATE', b.certDer), createdAt: Date.now() });
  const rt = await startRegistry(ctx, { log, refreshMs: 3600_000, dataDir: dir });
  try {
    const stolen = leaf(b);
    expect(checkPresentedChain(ctx, [stolen], 'renew').instanceId).toBe('i1');

    // The database writer: one row, a real certificate with two bytes after it.
    const poison = toPem('CERTIFICATE', Buffer.concat([b.certDer, Buffer.from([0, 0])]));
    pg.admin(
      `INSERT INTO issuers (name, cert_pem, status, reason, created_at, updated_at) VALUES ('zz', '${poison}', 'active', NULL, 0, 0)`,
      db,
    );

    // The operator revokes b and copies the root-signed CRL to this issuer.
    await stores.issuers.setStatus('b', 'revoked', 'key stolen', Date.now());
    const crl = await signRootCrl(
      stores,
      { certDer: root.certDer, key: root.key, trustDomain: TD },
      { now: Date.now() },
    );
    mkdirSync(join(dir, 'crl'), { recursive: true });
    writeFileSync(rootCrlFile(dir), crl.der);

    await ctx.intermediates!.refresh(); // does not throw: the bad row is refused alone
    applyRegistry(ctx, ctx.intermediates!);
    expect(() => checkPresentedChain(ctx, [stolen], 'renew')).toThrow(/revoked/);
  } finally {
    rt.stop();
  }
}, 60_000);
