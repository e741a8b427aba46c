/**
 * One root, one intermediate per issuer (issue #15; docs/issuers.md), with REAL issuer processes
 * on one real PostgreSQL: `server init` makes issuer A ("primary"), `server add-issuer` makes B
 * with its own intermediate signed by the root. Then, in order:
 *
 * - B's directory holds its own intermediate key (0600) and no root key; `server issuers` shows
 *   both intermediates verified against the root.
 * - An agent joined at A renews at B (a leaf of B's intermediate; openssl builds the path to the
 *   root), and at A again; the bundle at either lists the root and both intermediates.
 * - Attacks: a database writer registers an intermediate of another root (B ignores it; a leaf
 *   under it is refused); a peer issuer's intermediate key mints a leaf for an existing instance
 *   (refused: the store knows no such certificate for it).
 * - Retire A: A stops by itself (change feed), an agent holding A's leaf fails over to B and is
 *   renewed there; A refuses to start again.
 * - Revoke A: B refuses the leaves A issued by name (`issuer_revoked`) within 1 s, the bundle drops
 *   A's intermediate, the root CRL lists it and `openssl verify -crl_check_all` refuses A's leaves
 *   while B's pass. Every step is in the audit log.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import { createIntermediateCa, createRootCa } from '../../src/pki/ca.js';
import { CertificateIssuer } from '../../src/pki/issue.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { randomSerial } from '../../src/pki/serial.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { paths } from '../../src/server/data-dir.js';
import { readPrivateKeyFile } from '../../src/server/key-file.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { sigil, sigilJson } from '../helpers/cli.js';
import {
  adminCall,
  initIssuerDirs,
  startIssuerProcess,
  TestAgent,
  type IssuerDirs,
  type IssuerProc,
} from '../helpers/postgres-issuers.js';
import { writeTransportAgent } from '../helpers/mosquitto.js';
import { psql, startPostgres, type Postgres } from '../helpers/postgres.js';

const exec = promisify(execFile);
const POLICY = `
kind: role
name: edge
spec:
  max_ttl: 24h
---
kind: bot
name: gw
spec:
  roles: [edge]
`;

let pg: Postgres;
let url: string;
let dirs: IssuerDirs;
let aDir: string;
let bDir: string;
let A: IssuerProc;
let B: IssuerProc;
let aInt: string;
let bInt: string;

async function sql(q: string): Promise<string> {
  const r = await psql(url, q);
  if (r.code !== 0) throw new Error(`psql: ${r.stderr}`);
  return r.stdout.trim();
}

async function join_(at: IssuerProc): Promise<TestAgent> {
  const { token } = await adminCall(at.url, dirs, 'token.create', { bot: 'gw' });
  return TestAgent.join(at.url, dirs, token);
}

async function refusal(p: Promise<unknown>): Promise<SigilError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

async function bundleAt(at: IssuerProc): Promise<{ roots: string[]; intermediates: string[] }> {
  const client = new HttpsIssuerClient({ url: at.url, pin: dirs.pin, timeoutMs: 30_000 });
  try {
    return verifyResponse(await client.bundle(), 'bundle', null, dirs.rootPem).result;
  } finally {
    client.close();
  }
}

/** `openssl verify` of an agent's leaf against the root, through the intermediate it was given. */
async function opensslVerify(chain: string[], extra: string[] = []): Promise<{ ok: boolean; out: string }> {
  const f = (n: string, s: string): string => {
    const p = join(dirs.tmp, n);
    writeFileSync(p, s);
    return p;
  };
  const args = [
    'verify',
    ...extra,
    '-CAfile',
    paths(aDir).rootCert,
    '-untrusted',
    f('int.pem', chain[1]!),
    f('leaf.pem', chain[0]!),
  ];
  try {
    const r = await exec('openssl', args);
    return { ok: true, out: r.stdout + r.stderr };
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  url = pg.url(pg.createDatabase('sigil'));
  dirs = await initIssuerDirs(url, 1);
  aDir = dirs.dirs[0]!;
  bDir = join(dirs.tmp, 'issuer-b');
  await sigilJson(['server', 'add-issuer', '--data-dir', aDir, '--name', 'b', '--out', bDir, '--store', url]);
  aInt = readFileSync(paths(aDir).intCert, 'utf8').trim() + '\n';
  bInt = readFileSync(paths(bDir).intCert, 'utf8').trim() + '\n';
  [A, B] = await Promise.all([startIssuerProcess(aDir, url), startIssuerProcess(bDir, url)]);
  await adminCall(A.url, dirs, 'apply', { yaml: POLICY });
}, 120_000);

afterAll(async () => {
  await Promise.all([A?.stop(), B?.stop()]);
  await pg?.stop();
  dirs?.cleanup();
}, 60_000);

describe('one root, one intermediate per issuer, on one PostgreSQL', () => {
  it('add-issuer: its own intermediate key (0600), signed by the root, no root key; both registered and verified', async () => {
    expect(statSync(paths(bDir).intKey).mode & 0o777).toBe(0o600);
    expect(statSync(bDir).mode & 0o777).toBe(0o700);
    expect(existsSync(paths(bDir).rootKey)).toBe(false);
    expect(bInt).not.toBe(aInt);
    expect(readFileSync(paths(bDir).intKey, 'utf8')).not.toBe(readFileSync(paths(aDir).intKey, 'utf8'));
    const v = await exec('openssl', ['verify', '-CAfile', paths(aDir).rootCert, paths(bDir).intCert]);
    expect(v.stdout).toMatch(/OK/);
    const rows = await sigilJson<Array<{ name: string; status: string; verified: string; own: boolean }>>([
      'server',
      'issuers',
      '--data-dir',
      bDir,
      '--store',
      url,
    ]);
    expect(rows.map((r) => [r.name, r.status, r.verified, r.own])).toEqual([
      ['b', 'active', 'ok', true],
      ['primary', 'active', 'ok', false],
    ]);
    // A second issuer of that name is refused.
    const again = await sigil([
      'server',
      'add-issuer',
      '--data-dir',
      aDir,
      '--name',
      'b',
      '--out',
      join(dirs.tmp, 'x'),
      '--store',
      url,
    ]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already registered/);
  });

  it('an agent joined at A renews at B and back at A; openssl builds each path to the root; bundles list both', async () => {
    const agent = await join_(A);
    expect(agent.chain[1]).toBe(aInt);
    await agent.renew(B.url);
    expect(agent.chain[1]).toBe(bInt);
    expect((await opensslVerify(agent.chain)).out).toMatch(/leaf.pem: OK/);
    await agent.renew(A.url);
    expect(agent.chain[1]).toBe(aInt);
    expect((await opensslVerify(agent.chain)).out).toMatch(/leaf.pem: OK/);
    for (const at of [A, B]) {
      const b = await bundleAt(at);
      expect(b.roots).toEqual([dirs.rootPem.trim() + '\n']);
      expect(new Set(b.intermediates)).toEqual(new Set([aInt, bInt]));
      expect(b.intermediates[0]).toBe(at === A ? aInt : bInt);
    }
  });

  it('attack: a database writer registers an intermediate of another root — B ignores it, a leaf under it is refused', async () => {
    const agent = await join_(B);
    const rogueRoot = createRootCa({ trustDomain: 'example.org' });
    const rogue = createIntermediateCa(rogueRoot, {
      trustDomain: 'example.org',
      commonName: 'example.org intermediate CA evil',
    });
    const roguePem = toPem('CERTIFICATE', rogue.certDer);
    await sql(
      `INSERT INTO issuers (name, cert_pem, status, created_at, updated_at) VALUES ('evil', '${roguePem}', 'active', 0, 0)`,
    );
    await sql("NOTIFY sigil_changes, 'issuers'");
    const now = Date.now();
    const leaf = new CertificateIssuer({ caCertDer: rogue.certDer, caKey: rogue.key }).issueSvid({
      serial: randomSerial(),
      spkiDer: agent.signer.publicKeySpki(),
      spiffeId: `spiffe://example.org/bot/gw/${agent.instanceId}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3600_000),
      subject: [['CN', agent.instanceId]],
    });
    const honest = agent.chain;
    agent.chain = [toPem('CERTIFICATE', leaf), roguePem];
    const e = await refusal(agent.renew(B.url));
    expect(e.code).toBe('chain_invalid');
    agent.chain = honest;
    // B says why it ignores the row; its bundle does not list it.
    await expect
      .poll(() => B.logs.join(''), { timeout: 10_000 })
      .toMatch(/ignoring registered intermediate \\?"evil\\?": not signed by the pinned root/);
    expect((await bundleAt(B)).intermediates).not.toContain(roguePem);
    await sql("DELETE FROM issuers WHERE name = 'evil'");
  });

  it("attack: a peer issuer's intermediate key mints a leaf for an existing instance — refused, the store knows no such certificate", async () => {
    const victim = await join_(B);
    const aKey = readPrivateKeyFile(paths(aDir).intKey);
    const now = Date.now();
    const leaf = new CertificateIssuer({ caCertDer: fromPem(aInt, 'CERTIFICATE'), caKey: aKey }).issueSvid({
      serial: randomSerial(),
      spkiDer: victim.signer.publicKeySpki(),
      spiffeId: `spiffe://example.org/bot/gw/${victim.instanceId}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3600_000),
      subject: [['CN', victim.instanceId]],
    });
    const honest = victim.chain;
    victim.chain = [toPem('CERTIFICATE', leaf), aInt];
    const e = await refusal(victim.renew(B.url));
    expect(e.code).toBe('chain_invalid');
    expect(e.message).toMatch(/is not an identity issued to instance/);
    // The victim's own serial is public (every x5c, every answer): a leaf with it around the
    // attacker's key is refused too — the record names the key (review of issue #16).
    const honestSigner = victim.signer;
    const attacker = SoftwareSigner.generate();
    const reused = new CertificateIssuer({ caCertDer: fromPem(aInt, 'CERTIFICATE'), caKey: aKey }).issueSvid({
      serial: Buffer.from(new X509Certificate(honest[0]!).serialNumber, 'hex'),
      spkiDer: attacker.publicKeySpki(),
      spiffeId: `spiffe://example.org/bot/gw/${victim.instanceId}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3600_000),
      subject: [['CN', victim.instanceId]],
    });
    victim.signer = attacker;
    victim.chain = [toPem('CERTIFICATE', reused), aInt];
    const e2 = await refusal(victim.renew(B.url));
    expect(e2.code).toBe('chain_invalid');
    expect(e2.message).toMatch(/was issued for another key than the presented certificate's/);
    victim.signer = honestSigner;
    victim.chain = honest;
    await victim.renew(B.url);
  });

  it('retire an issuer served by --workers 2: the supervisor stops every worker and says why', async () => {
    const cDir = join(dirs.tmp, 'issuer-c');
    await sigilJson(['server', 'add-issuer', '--data-dir', aDir, '--name', 'c', '--out', cDir, '--store', url]);
    const C = await startIssuerProcess(cDir, url, {
      args: ['--workers', '2'],
      readyPattern: /worker \d \(pid \d+\) listening on (https:\/\/\S+)[\s\S]*worker \d \(pid \d+\) listening on/,
    });
    const exited = new Promise<number | null>((r) => C.proc.once('exit', (code) => r(code)));
    await sigilJson(['server', 'retire-issuer', '--data-dir', aDir, '--name', 'c', '--store', url]);
    expect(await exited).not.toBe(0);
    const out = C.logs.join('');
    expect(out).toMatch(/reports the issuer retired: stopping every worker/);
    expect(out).toMatch(/issuer_retired/);
    expect(out).not.toMatch(/starting it again/);
  });

  let heldA: TestAgent;

  it('retire A: A stops by itself, an agent holding an A leaf fails over and renews at B, A refuses to start again', async () => {
    const agent = await join_(A);
    heldA = await join_(A);
    expect(heldA.chain[1]).toBe(aInt);
    // And a real agent, transports A then B: it joins at A.
    const { token } = await adminCall(A.url, dirs, 'token.create', { bot: 'gw' });
    const real = writeTransportAgent(dirs.tmp, 'real-agent', {
      pin: dirs.pin,
      token,
      transports: [`{ type: https, url: "${A.url}", timeout: 5s }`, `{ type: https, url: "${B.url}", timeout: 5s }`],
    });
    expect(await sigilJson(['agent', 'run', '--config', real.config, '--once'])).toMatchObject({ result: 'joined' });
    expect(readFileSync(join(real.outDir, 'svid.pem'), 'utf8')).toContain(aInt.trim());
    const exited = new Promise<number | null>((r) => A.proc.once('exit', (code) => r(code)));
    const t0 = performance.now();
    await sigilJson([
      'server',
      'retire-issuer',
      '--data-dir',
      bDir,
      '--name',
      'primary',
      '--reason',
      'host decommissioned',
      '--store',
      url,
    ]);
    expect(await exited).toBe(0);
    process.stdout.write(`retired A stopped ${(performance.now() - t0).toFixed(0)} ms after retire-issuer\n`);
    expect(A.logs.join('')).toMatch(/issuer retired/);
    // The agent's transport to A fails (retryable), the next one (B) renews it.
    const down = await refusal(agent.renew(A.url));
    expect(down.retryable).toBe(true);
    await agent.renew(B.url);
    expect(agent.chain[1]).toBe(bInt);
    // A retired issuer's intermediate stays live: B still lists it and accepts its leaves.
    expect((await bundleAt(B)).intermediates).toContain(aInt);
    await expect(startIssuerProcess(aDir, url)).rejects.toThrow(/issuer_retired/);
    // The real agent: A is gone, it fails over to B; its new chain (B's intermediate) verifies
    // against the bundle it wrote, with openssl.
    const renewed = await sigilJson(['agent', 'renew', '--config', real.config]);
    expect(renewed).toMatchObject({ result: 'renewed' });
    const svid = join(real.outDir, 'svid.pem');
    expect(readFileSync(svid, 'utf8')).toContain(bInt.trim());
    const v = await exec('openssl', ['verify', '-CAfile', join(real.outDir, 'bundle.pem'), '-untrusted', svid, svid]);
    expect(v.stdout).toMatch(/OK/);
  });

  it('revoke A: B refuses A leaves by name within 1 s, the bundle drops A, the root CRL lists A; all audited', async () => {
    const t0 = performance.now();
    const r = await sigilJson<{
      status: string;
      root_crl: { file: string; listed: Array<{ name: string; serial: string }> };
    }>([
      'server',
      'retire-issuer',
      '--data-dir',
      aDir,
      '--name',
      'primary',
      '--revoke',
      '--reason',
      'key stolen',
      '--store',
      url,
    ]);
    expect(r.status).toBe('revoked');
    // B hears of it through the change feed (timed from the command's return): its bundle drops A
    // (a read that changes nothing), then A's leaf is refused by name.
    const t1 = performance.now();
    while ((await bundleAt(B)).intermediates.includes(aInt)) {
      if (performance.now() - t1 > 5_000) throw new Error('B still lists A after 5 s');
    }
    const ms = performance.now() - t1;
    process.stdout.write(
      `revoke A: seen at B ${ms.toFixed(0)} ms after retire-issuer returned (${(performance.now() - t0).toFixed(0)} ms with the CLI)\n`,
    );
    expect(ms).toBeLessThan(1000);
    const e = await refusal(heldA.renew(B.url));
    expect(e.code).toBe('issuer_revoked');
    expect(e.message).toMatch(/issuer "primary", revoked at .*\(key stolen\)/);
    const left = (await bundleAt(B)).intermediates;
    expect(left[0]).toBe(bInt);
    expect(left).not.toContain(aInt);
    // The root CRL: signed by the root, lists A's intermediate.
    expect(r.root_crl.listed.map((l) => l.name)).toEqual(['primary']);
    const pemCrl = join(dirs.tmp, 'root-crl.pem');
    await exec('openssl', ['crl', '-inform', 'DER', '-in', r.root_crl.file, '-out', pemCrl]);
    const text = await exec('openssl', ['crl', '-in', pemCrl, '-CAfile', paths(aDir).rootCert, '-noout', '-text']);
    expect(text.stderr).toMatch(/verify OK/);
    expect(text.stdout.replace(/:/g, '').toLowerCase()).toContain(r.root_crl.listed[0]!.serial.toLowerCase());
    // Whole-chain checkers: A's leaf is refused (its intermediate is revoked), a B leaf passes.
    // (A consumer loads every issuer's CRL and the root's; A's last one is still within its nextUpdate.)
    const leafCrls = await Promise.all(
      [aDir, bDir].map(async (d, i) => {
        const out = join(dirs.tmp, `crl-${i}.pem`);
        await exec('openssl', ['crl', '-inform', 'DER', '-in', join(d, 'crl', 'current.crl'), '-out', out]);
        return readFileSync(out, 'utf8');
      }),
    );
    const crls = join(dirs.tmp, 'crls.pem');
    writeFileSync(crls, readFileSync(pemCrl, 'utf8') + leafCrls.join(''));
    const refusedA = await opensslVerify(heldA.chain, ['-crl_check_all', '-CRLfile', crls]);
    expect(refusedA.ok).toBe(false);
    expect(refusedA.out).toMatch(/certificate revoked/);
    const bAgent = await join_(B);
    expect((await opensslVerify(bAgent.chain, ['-crl_check_all', '-CRLfile', crls])).out).toMatch(/leaf.pem: OK/);
    // Audited: added (both), retired, revoked; the chain still verifies.
    const actions = await sql(
      "SELECT action || ':' || (details::json->>'issuer') FROM audit_log WHERE action LIKE 'issuer_%' ORDER BY seq",
    );
    expect(actions.split('\n')).toEqual([
      'issuer_added:primary',
      'issuer_added:b',
      'issuer_added:c',
      'issuer_retired:c',
      'issuer_retired:primary',
      'issuer_revoked:primary',
    ]);
    const verify = await sigil(['ctl', '--data-dir', bDir, 'audit', '--verify'], { env: { SIGIL_STORE: url } });
    expect(verify.code).toBe(0);
  });
});
