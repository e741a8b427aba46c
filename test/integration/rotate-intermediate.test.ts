/**
 * `sigil server rotate-intermediate` (src/server/issuers/rotate-intermediate.ts) on a single SQLite
 * issuer: a new intermediate in place, the old one retired (its leaves renew onto the new one) or
 * revoked after a compromise (its leaves refused, listed in a root CRL that openssl honours), and
 * a run that crashed half-way finished by the next. A real issuer (HTTPS, in process) restarted on
 * its data directory after each rotation, as an operator restarts the service; openssl checks
 * every chain.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCaMaterial, paths } from '../../src/server/data-dir.js';
import { applyRegistry } from '../../src/server/issuers/runtime.js';
import { rotateIntermediate } from '../../src/server/issuers/rotate-intermediate.js';
import { retireIssuer } from '../../src/server/issuers/retire.js';
import { appendCheckpoint, checkpointHead, type Checkpoint } from '../../src/server/audit/checkpoints.js';
import { loadCheckpointSigner, loadCheckpointVerifiers } from '../../src/server/audit/signer.js';
import { verifyAuditLog } from '../../src/server/audit/verify.js';
import { createIntermediateCa, createRootCa } from '../../src/pki/ca.js';
import { toPem } from '../../src/pki/pem.js';
import { startIssuer, type Harness, type Identity } from './harness.js';

let h: Harness;
let dir: string;
let port: number;
const tmp = mkdtempSync(join(tmpdir(), 'sigil-rot-int-'));

/** As `systemctl restart sigil-server`: a new process on the same directory reads the registry first. */
async function restart(): Promise<void> {
  await h.close({ keepDir: true });
  h = await startIssuer({ dir, port });
  await h.ctx.intermediates!.refresh();
  applyRegistry(h.ctx, h.ctx.intermediates!);
}

async function renew(id: Identity): Promise<{ status: number; id?: Identity; code?: string }> {
  const { envelope, newSigner } = await h.renewEnvelope(id);
  const res = await h.post('renew', envelope);
  if (res.status !== 200) return { status: res.status, code: (res.json as { code?: string }).code };
  const requestId = JSON.parse(Buffer.from(envelope.payload, 'base64url').toString()).request_id as string;
  return { status: 200, id: h.identityFrom(res, 'renew', requestId, newSigner) };
}

/** openssl verify of a leaf against the root, with its own chain's intermediate. */
function opensslVerify(chain: string[]): { ok: boolean; out: string } {
  const f = (name: string, text: string): string => {
    const file = join(tmp, name);
    writeFileSync(file, text);
    return file;
  };
  const args = ['verify', '-CAfile', f('root.pem', h.rootPem), '-untrusted', f('int.pem', chain[1]!)];
  const r = spawnSync('openssl', [...args, f('leaf.pem', chain[0]!)], { encoding: 'utf8' });
  return { ok: r.status === 0, out: r.stdout + r.stderr };
}

const issuerOf = (pem: string): string => new X509Certificate(pem).issuer;
/** Checkpoints signed by each intermediate before it was rotated out. */
const checkpoints: Checkpoint[] = [];

beforeAll(async () => {
  const other = createIntermediateCa(createRootCa({ trustDomain: 'example.org' }), { trustDomain: 'example.org' });
  writeFileSync(join(tmp, 'rogue.pem'), toPem('CERTIFICATE', other.certDer));
  h = await startIssuer();
  dir = h.dir;
  port = h.port;
});

afterAll(async () => {
  await h?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('rotate-intermediate on a SQLite issuer', () => {
  let a: Identity;
  let b: Identity;

  it('retire: the issuer signs under the new intermediate; a leaf of the old one renews onto it', async () => {
    a = await h.join();
    b = await h.join();
    const oldInt = readFileSync(paths(dir).intCert, 'utf8');
    expect(issuerOf(a.chainPem[0]!)).toBe(new X509Certificate(oldInt).subject);
    checkpoints.push((await checkpointHead(h.ctx.stores.audit, loadCheckpointSigner(dir), 'manual', Date.now()))!);
    const r = await rotateIntermediate({ dataDir: dir, revokeOld: false });
    expect(r.old).toMatchObject({ name: 'primary', status: 'retired' });
    expect(r.new.name).toBe('primary-2');
    expect(readFileSync(r.old.keptAs, 'utf8')).toBe(oldInt);
    expect(JSON.parse(readFileSync(paths(dir).meta, 'utf8')).issuer_name).toBe('primary-2');
    const ca = loadCaMaterial(dir); // key and certificate are a pair
    expect(ca.intermediatePem).not.toBe(oldInt);
    await restart();
    const renewed = await renew(a);
    expect(renewed.status).toBe(200);
    a = renewed.id!;
    expect(issuerOf(a.chainPem[0]!)).toBe(new X509Certificate(ca.intermediatePem).subject);
    expect(a.chainPem[1]!.trim()).toBe(ca.intermediatePem.trim());
    expect(opensslVerify(a.chainPem)).toMatchObject({ ok: true });
    // A new join is issued under the new intermediate too.
    expect(issuerOf((await h.join()).chainPem[0]!)).toBe(new X509Certificate(ca.intermediatePem).subject);
    // The bundle lists both, the new one first: the old one's leaves verify for relying parties until they expire.
    expect(h.ctx.intermediates!.livePems().map((p) => p.trim())).toEqual([ca.intermediatePem.trim(), oldInt.trim()]);
    const audit = await h.auditAfter(0);
    expect(audit.filter((r) => r.action === 'intermediate_rotated')).toHaveLength(1);
    expect(audit.filter((r) => r.action === 'issuer_retired')).toHaveLength(1);
  });

  it('--revoke-old: leaves of the revoked intermediate are refused issuer_revoked; the root CRL lists it for openssl', async () => {
    const revokedInt = readFileSync(paths(dir).intCert, 'utf8');
    checkpoints.push((await checkpointHead(h.ctx.stores.audit, loadCheckpointSigner(dir), 'manual', Date.now()))!);
    const r = await rotateIntermediate({ dataDir: dir, revokeOld: true, reason: 'host stolen' });
    expect(r.old).toMatchObject({ name: 'primary-2', status: 'revoked' });
    expect(r.rootCrlListed).toEqual(['primary-2']);
    expect(r.new.name).toBe('primary-3');
    await restart();
    // a's leaf was issued under primary-2: refused before any other check.
    const refused = await renew(a);
    expect(refused).toMatchObject({ status: 403, code: 'issuer_revoked' });
    // b's leaf is still from the retired primary: it renews (onto primary-3).
    const renewed = await renew(b);
    expect(renewed.status).toBe(200);
    expect(issuerOf(renewed.id!.chainPem[0]!)).toBe(new X509Certificate(readFileSync(paths(dir).intCert)).subject);
    // The root CRL, signed with the root key, lists primary-2's certificate: openssl refuses a's chain.
    const crlPem = execFileSync('openssl', ['crl', '-inform', 'DER', '-in', r.rootCrlFile!], { encoding: 'utf8' });
    expect(opensslVerify(a.chainPem).ok).toBe(true);
    // The revoked intermediate itself, checked against the root's CRL (-crl_check: the target's issuer's CRL).
    const rootCa = join(tmp, 'root-only.pem');
    writeFileSync(rootCa, h.rootPem);
    const intFile = join(tmp, 'revoked-int.pem');
    writeFileSync(intFile, revokedInt);
    const crlFile = join(tmp, 'root-crl.pem');
    writeFileSync(crlFile, crlPem);
    const v = spawnSync('openssl', ['verify', '-crl_check', '-CAfile', rootCa, '-CRLfile', crlFile, intFile], {
      encoding: 'utf8',
    });
    expect(v.status).not.toBe(0);
    expect(v.stdout + v.stderr).toMatch(/certificate revoked/);
    // The new intermediate passes the same check.
    writeFileSync(intFile, readFileSync(paths(dir).intCert, 'utf8'));
    const ok = spawnSync('openssl', ['verify', '-crl_check', '-CAfile', rootCa, '-CRLfile', crlFile, intFile], {
      encoding: 'utf8',
    });
    expect(ok.stdout + ok.stderr).toMatch(/: OK/);
  });

  it('a run that crashed after registering, or between the renames, is finished by the next run', async () => {
    const before = readFileSync(paths(dir).intCert, 'utf8');
    checkpoints.push((await checkpointHead(h.ctx.stores.audit, loadCheckpointSigner(dir), 'manual', Date.now()))!);
    await expect(rotateIntermediate({ dataDir: dir, revokeOld: false, crashAfter: 'register' })).rejects.toThrow(
      /crash after register/,
    );
    // The issuer still starts on its old pair meanwhile.
    expect(loadCaMaterial(dir).intermediatePem).toBe(before);
    await expect(rotateIntermediate({ dataDir: dir, revokeOld: false, crashAfter: 'key_rename' })).rejects.toThrow(
      /crash after the key rename/,
    );
    // Key and certificate differ now: the issuer refuses to start until the rotation is finished.
    expect(() => loadCaMaterial(dir)).toThrow(/stopped half-way; run it again/);
    const done = await rotateIntermediate({ dataDir: dir, revokeOld: false });
    await restart();
    // The pair registered by the first run, not a third one; the old one is the one retired.
    expect(done.new.name).toBe('primary-4');
    expect(done.old).toMatchObject({ name: 'primary-3', status: 'retired' });
    expect(existsSync(join(dir, 'ca', 'intermediate.rotating.json'))).toBe(false);
    expect(existsSync(join(dir, 'ca', 'intermediate.next.key'))).toBe(false);
    const ca = loadCaMaterial(dir);
    expect(ca.intermediatePem).not.toBe(before);
    const rows = await h.ctx.stores.issuers.list();
    expect(rows.map((r) => [r.name, r.status]).sort()).toEqual([
      ['primary', 'retired'],
      ['primary-2', 'revoked'],
      ['primary-3', 'retired'],
      ['primary-4', 'active'],
    ]);
  });

  it('audit checkpoints signed by each earlier intermediate (retired or revoked) still verify, locally and at the issuer', async () => {
    // Checkpoints signed by the keys of primary, primary-2 (revoked) and primary-3 were written
    // in the tests above (see below); one more by the current intermediate now.
    const file = join(tmp, 'checkpoints.jsonl');
    for (const cp of checkpoints) appendCheckpoint(file, cp);
    appendCheckpoint(
      file,
      (await checkpointHead(h.ctx.stores.audit, loadCheckpointSigner(dir), 'manual', Date.now()))!,
    );
    const local = await verifyAuditLog(h.ctx.stores.audit, {
      verifiers: loadCheckpointVerifiers(dir),
      checkpointFile: file,
    });
    expect(local.problems).toEqual([]);
    expect(local.checkpoints).toMatchObject({ lines: 4, verified: 4 });
    // The running issuer's verifiers (its registry view, revoked primary-2 included as history).
    const runtime = await verifyAuditLog(h.ctx.stores.audit, { ...h.ctx.auditEnv.verify, checkpointFile: file });
    expect(runtime.checkpoints).toMatchObject({ lines: 4, verified: 4 });
    // A certificate in ca/ that the root did not issue is no verifier.
    writeFileSync(join(dir, 'ca', 'intermediate.rogue.pem'), readFileSync(join(tmp, 'rogue.pem')));
    expect(loadCheckpointVerifiers(dir).size).toBe(4);
  });

  it('refuses without the root key, or with a key that is not the root', async () => {
    const key = paths(dir).rootKey;
    await expect(
      rotateIntermediate({ dataDir: dir, revokeOld: false, rootKey: join(tmp, 'missing.key') }),
    ).rejects.toMatchObject({ code: 'config_invalid', message: expect.stringContaining('is missing') });
    await expect(
      rotateIntermediate({ dataDir: dir, revokeOld: false, rootKey: join(dir, 'ca', 'jwt_signing.key') }),
    ).rejects.toMatchObject({ code: 'config_invalid', message: expect.stringContaining('is not the key of') });
    expect(existsSync(key)).toBe(true);
    // A progress file whose swap left a key that is not the certificate's: nothing is finished.
    const progress = join(dir, 'ca', 'intermediate.rotating.json');
    const intKey = paths(dir).intKey;
    const keyBefore = readFileSync(intKey);
    writeFileSync(progress, JSON.stringify({ from: 'primary-3', to: 'primary-4' }));
    writeFileSync(intKey, readFileSync(join(dir, 'ca', 'jwt_signing.key')), { mode: 0o600 });
    try {
      await expect(rotateIntermediate({ dataDir: dir, revokeOld: true })).rejects.toMatchObject({
        code: 'config_invalid',
        message: expect.stringContaining('is not the key of'),
      });
      expect((await h.ctx.stores.issuers.get('primary-3'))!.status).toBe('retired');
    } finally {
      writeFileSync(intKey, keyBefore, { mode: 0o600 });
      rmSync(progress, { force: true });
    }
    // A progress file that is not JSON: a coded refusal, not a SyntaxError.
    writeFileSync(progress, '{not json');
    await expect(rotateIntermediate({ dataDir: dir, revokeOld: false })).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining('is not a rotation in progress'),
    });
    rmSync(progress);
    // Reserved names: the rotation's own files.
    await expect(rotateIntermediate({ dataDir: dir, revokeOld: false, name: 'next' })).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining('reserved'),
    });
  });

  it('retire now, revoke later: retire-issuer --revoke --root-key revokes the retired (stolen) one, not the current', async () => {
    // The root key moved offline, as the runbook says.
    const offline = join(tmp, 'root.key');
    writeFileSync(offline, readFileSync(paths(dir).rootKey), { mode: 0o600 });
    rmSync(paths(dir).rootKey);
    await expect(
      retireIssuer({ dataDir: dir, name: 'primary', revoke: true, rootKey: join(dir, 'ca', 'jwt_signing.key') }),
    ).rejects.toMatchObject({ code: 'config_invalid', message: expect.stringContaining('is not the key of') });
    const r = await retireIssuer({ dataDir: dir, name: 'primary', revoke: true, rootKey: offline, reason: 'stolen' });
    expect(r.issuer.status).toBe('revoked');
    const current = (await h.ctx.stores.issuers.list()).find((x) => x.status === 'active')!;
    expect(current.certPem.trim()).toBe(readFileSync(paths(dir).intCert, 'utf8').trim());
    const crlPem = execFileSync('openssl', ['crl', '-inform', 'DER', '-in', r.rootCrlFile!], { encoding: 'utf8' });
    const crlFile = join(tmp, 'root-crl-2.pem');
    writeFileSync(crlFile, crlPem);
    const rootCa = join(tmp, 'root-only.pem');
    const check = (file: string): string => {
      const v = spawnSync('openssl', ['verify', '-crl_check', '-CAfile', rootCa, '-CRLfile', crlFile, file], {
        encoding: 'utf8',
      });
      return v.stdout + v.stderr;
    };
    expect(check(join(dir, 'ca', 'intermediate.primary.pem'))).toMatch(/certificate revoked/);
    expect(check(join(dir, 'ca', 'intermediate.primary-2.pem'))).toMatch(/certificate revoked/);
    expect(check(paths(dir).intCert)).toMatch(/: OK/);
    writeFileSync(paths(dir).rootKey, readFileSync(offline), { mode: 0o600 });
  });

  it('two runs at once: one rotates, the other is refused (conflict) and changes nothing', async () => {
    rmSync(join(dir, 'ca', 'intermediate.next.pem'), { force: true });
    rmSync(join(dir, 'ca', 'intermediate.next.key'), { force: true });
    const before = (await h.ctx.stores.issuers.list()).length;
    const both = await Promise.allSettled([
      rotateIntermediate({ dataDir: dir, revokeOld: false }),
      rotateIntermediate({ dataDir: dir, revokeOld: false }),
    ]);
    expect(both.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(both.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'conflict' } });
    expect((await h.ctx.stores.issuers.list()).length).toBe(before + 1);
    expect(loadCaMaterial(dir).intermediatePem).toBe(readFileSync(paths(dir).intCert, 'utf8'));
  });

  it('--validity-days: a short-lived intermediate (bounds a stolen key for CRL-blind relying parties); bad values change nothing', async () => {
    const before = readFileSync(paths(dir).intCert, 'utf8');
    const rows = (await h.ctx.stores.issuers.list()).length;
    for (const bad of [1, 1826, 2.5, Number.NaN])
      await expect(rotateIntermediate({ dataDir: dir, revokeOld: false, validityDays: bad })).rejects.toMatchObject({
        code: 'config_invalid',
        message: expect.stringMatching(/^--validity-days must be a whole number of days from 2 to 1825/),
      });
    expect(readFileSync(paths(dir).intCert, 'utf8')).toBe(before);
    expect((await h.ctx.stores.issuers.list()).length).toBe(rows);
    const r = await rotateIntermediate({ dataDir: dir, revokeOld: false, validityDays: 30 });
    const days = (Date.parse(r.new.notAfter) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);
    expect(Date.parse(new X509Certificate(readFileSync(paths(dir).intCert, 'utf8')).validTo)).toBe(
      Date.parse(r.new.notAfter),
    );
  });
});
