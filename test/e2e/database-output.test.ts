/**
 * The database output against a real PostgreSQL: TLS with a server certificate from the Sigil
 * CA, `hostssl all all 127.0.0.1/32 cert clientcert=verify-full`, ssl_ca_file = the Sigil root.
 * psql with the output's files (sslmode=verify-full) connects as the role's database user and is
 * refused as any other user; the issuer refuses a database user beyond the role.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toPem } from '../../src/pki/pem.js';
import { randomSerial } from '../../src/pki/serial.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { credentialAgent, type CredentialAgent } from '../helpers/credential-agent.js';
import { psql, requirePostgres, startPostgres, type Postgres } from '../helpers/postgres.js';
import { startIssuer, type Harness } from '../integration/harness.js';

let h: Harness;
let agent: CredentialAgent;
let pg: Postgres;
let dbDir: string;

beforeAll(async () => {
  requirePostgres();
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `
kind: role
name: db-app
spec: { max_ttl: 1h, allowed_outputs: [database], db_users: [app] }
---
kind: bot
name: dbbot
spec: { roles: [db-app] }
`,
  });
  // The server's own certificate, from the same CA (a workload SVID for localhost / 127.0.0.1).
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const serverCert = h.ctx.engine.issueSvid({
    serial: randomSerial(),
    spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
    spiffeId: 'spiffe://example.org/service/postgres',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3600_000),
    subject: [['CN', 'localhost']],
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  pg = await startPostgres({
    serverCertPem: toPem('CERTIFICATE', serverCert) + h.ctx.ca.intermediatePem,
    serverKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    clientCaPem: h.rootPem,
  });
  pg.admin('CREATE ROLE app LOGIN; CREATE ROLE other LOGIN;');
  agent = await credentialAgent(h, { bot: 'dbbot' });
  dbDir = join(agent.dir, 'db');
});

afterAll(async () => {
  await pg?.stop();
  agent?.close();
  await h?.close();
});

const conninfo = (dir: string, user: string): string =>
  `host=localhost hostaddr=127.0.0.1 port=${pg.port} dbname=postgres user=${user} sslmode=verify-full ` +
  `sslrootcert=${join(dir, 'ca.crt')} sslcert=${join(dir, 'tls.crt')} sslkey=${join(dir, 'tls.key')}`;

const WHO = "select current_user || ' ' || (select client_dn from pg_stat_ssl where pid = pg_backend_pid())";

describe('database output with real PostgreSQL', () => {
  it('writes tls.key (0600), tls.crt and ca.crt (0644), runs the reload hook, and psql connects as the role user', async () => {
    const marker = join(agent.dir, 'reloaded');
    const [o] = await agent
      .outputs([
        {
          type: 'database',
          path: dbDir,
          db_user: 'app',
          reload: { command: `echo "$SIGIL_OUTPUT_TYPE $SIGIL_OUTPUT_PATH" > ${marker}` },
        },
      ])
      .refresh();
    expect(o).toMatchObject({ action: 'issued' });
    expect(statSync(join(dbDir, 'tls.key')).mode & 0o777).toBe(0o600);
    for (const f of ['tls.crt', 'ca.crt']) expect(statSync(join(dbDir, f)).mode & 0o777).toBe(0o644);
    expect(readFileSync(marker, 'utf8').trim()).toBe(`database ${dbDir}`);
    const r = await psql(conninfo(dbDir, 'app'), WHO);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('app /CN=app');
  });

  it('PostgreSQL refuses the same certificate for another user', async () => {
    const r = await psql(conninfo(dbDir, 'other'), 'select 1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate authentication failed for user "other"/);
  });

  it('PostgreSQL refuses a connection without a client certificate', async () => {
    const r = await psql(
      `host=localhost hostaddr=127.0.0.1 port=${pg.port} dbname=postgres user=app sslmode=verify-full sslrootcert=${join(dbDir, 'ca.crt')} sslcert=/nonexistent sslkey=/nonexistent`,
      'select 1',
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate/);
  });

  it('the issuer refuses a database user beyond the role; nothing is written', async () => {
    const dir = join(agent.dir, 'db-postgres');
    const [o] = await agent.outputs([{ type: 'database', path: dir, db_user: 'postgres' }]).refresh();
    expect(o!.action === 'failed' && [o.error.code, o.error.message]).toEqual([
      'role_denied',
      'role db-app does not allow database user postgres (db_users)',
    ]);
    expect(() => statSync(join(dir, 'tls.key'))).toThrow();
  });

  it('a rotation writes a new key and certificate that PostgreSQL accepts', async () => {
    const oldKey = readFileSync(join(dbDir, 'tls.key'), 'utf8');
    const [o] = await agent.outputs([{ type: 'database', path: dbDir, db_user: 'app' }]).refresh({ force: true });
    expect(o).toMatchObject({ action: 'issued' });
    expect(readFileSync(join(dbDir, 'tls.key'), 'utf8')).not.toBe(oldKey);
    const r = await psql(conninfo(dbDir, 'app'), WHO);
    expect(r.code, r.stderr).toBe(0);
    expect(pg.log()).toMatch(/connection authorized: user=app database=postgres.* SSL enabled/);
  });
});
