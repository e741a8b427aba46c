/**
 * The CRL's parts (src/server/crl/): which certificates it lists (re-derived from the store),
 * how it is signed (read back by `openssl crl -text`, an implementation that is not ours), and
 * how cRLNumber is kept.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signCrl } from '../../../src/server/crl/build.js';
import { crlPem, summarizeCrl } from '../../../src/server/crl/ctl.js';
import { CrlPublisher, changesRevocation } from '../../../src/server/crl/publisher.js';
import { CRL_REASON_CERTIFICATE_HOLD, revokedCertificates } from '../../../src/server/crl/revoked.js';
import { crlFiles, lastCrlNumber, nextCrlNumber, recordCrl } from '../../../src/server/crl/state.js';
import { initDataDir, loadCaMaterial, openIssuerStores, paths } from '../../../src/server/data-dir.js';
import type { CertificateRecord, Stores } from '../../../src/server/store/types.js';
import { AuditWatcher } from '../../../src/server/events/audit-watcher.js';

const exec = promisify(execFile);
const HOUR = 3600_000;
let dir: string;
let stores: Stores;
const T0 = Date.UTC(2026, 11, 5, 12, 0, 0);

function cert(instanceId: string, serial: string, over: Partial<CertificateRecord> = {}): CertificateRecord {
  return {
    serial,
    instanceId,
    bot: 'gw',
    generation: 1,
    notBefore: T0 - HOUR,
    notAfter: T0 + HOUR,
    kind: 'x509-svid',
    keyStorage: 'software',
    exportable: true,
    spkiHash: `sha256:${'0'.repeat(64)}`,
    requestId: `req-${serial}`,
    issuedAt: T0 - HOUR,
    ...over,
  };
}

async function instance(id: string, certs: CertificateRecord[]): Promise<void> {
  await stores.instances.create({
    id,
    bot: 'gw',
    joinMethod: 'token',
    spiffeId: `spiffe://example.org/bot/gw/${id}`,
    generation: 1,
    facts: {},
    keyStorage: 'software',
    exportable: true,
    createdAt: T0 - HOUR,
  });
  for (const c of certs) await stores.certificates.insert(c);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-crl-unit-'));
  initDataDir(join(dir, 'issuer'), 'example.org');
  stores = openIssuerStores(join(dir, 'issuer'));
  await instance('locked-1', [
    cert('locked-1', 'a1', { generation: 1 }),
    cert('locked-1', 'a2', { generation: 2 }),
    cert('locked-1', 'a3', { notAfter: T0 - 1 }), // expired
    cert('locked-1', 'a4', { kind: 'ssh-user' }), // not X.509
    cert('locked-1', 'a5', { kind: 'mqtt-transport' }),
    cert('locked-1', 'a6', { kind: 'x509-database' }),
    cert('locked-1', 'a7', { kind: 'workload-x509-svid' }), // a workload's SVID, same intermediate
    cert('locked-1', 'a8', { kind: 'workload-jwt-svid' }), // not X.509
    cert('locked-1', 'a9', { kind: 'jwt-svid' }), // not X.509
    cert('locked-1', 'aa', { kind: 'ssh-host' }), // not X.509
    cert('locked-1', 'ab', { kind: 'x509-kubernetes' }),
    cert('locked-1', 'ac', { kind: 'some-later-x509-kind' }), // unknown: listed (a needless serial matches nothing)
  ]);
  await instance('open-1', [cert('open-1', 'b1')]);
  await stores.instances.setLocked('locked-1', true, 'generation_mismatch: presented generation 1, current 2', T0 - 5);
});

afterAll(async () => {
  await stores.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('revokedCertificates', () => {
  it('lists every live X.509 certificate of a locked instance, all generations, workload SVIDs too, on hold', async () => {
    const entries = await revokedCertificates(stores, T0);
    expect(entries.map((e) => e.serial)).toEqual(['a1', 'a2', 'a5', 'a6', 'a7', 'ab', 'ac']);
    expect(entries.every((e) => e.reason === CRL_REASON_CERTIFICATE_HOLD && e.instanceId === 'locked-1')).toBe(true);
    expect(entries[0]!.cause).toBe('locked: generation_mismatch: presented generation 1, current 2');
    expect(entries[0]!.revokedAt).toBeLessThanOrEqual(T0);
  });

  it('drops them once unlocked, and a certificate once it expired', async () => {
    expect((await revokedCertificates(stores, T0 + HOUR)).map((e) => e.serial)).toEqual([]);
    await stores.instances.setLocked('locked-1', false, null, T0);
    expect(await revokedCertificates(stores, T0)).toEqual([]);
    await stores.instances.setLocked('locked-1', true, 'again', T0);
  });
});

describe('signCrl, read back by openssl', () => {
  it('is a v2 CRL of the intermediate: AKI = its SKI, cRLNumber, nextUpdate, certificateHold entries', async () => {
    const ca = loadCaMaterial(join(dir, 'issuer'));
    const entries = await revokedCertificates(stores, T0);
    const der = await signCrl(
      { certDer: ca.intermediateDer, key: ca.intermediateKey },
      { entries, now: T0, nextUpdate: T0 + 2 * HOUR, crlNumber: 1796435023123n },
    );
    const file = join(dir, 'crl.pem');
    writeFileSync(file, crlPem(der));
    const { stdout, stderr } = await exec('openssl', [
      'crl',
      '-in',
      file,
      '-noout',
      '-text',
      '-CAfile',
      paths(join(dir, 'issuer')).intCert,
    ]);
    expect(stderr).toMatch(/verify OK/);
    expect(stdout).toMatch(/Version 2/);
    expect(stdout).toMatch(/X509v3 CRL Number:\s*\n\s*1796435023123/);
    expect(stdout).toMatch(/Last Update: Dec {2}5 11:59:00 2026 GMT/); // back-dated 60 s
    expect(stdout).toMatch(/Next Update: Dec {2}5 14:00:00 2026 GMT/);
    const skiHex = /X509v3 Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(
      (await exec('openssl', ['x509', '-in', paths(join(dir, 'issuer')).intCert, '-noout', '-text'])).stdout,
    )![1]!;
    expect(stdout).toContain(skiHex);
    expect(stdout.match(/Certificate Hold/g)).toHaveLength(7);
    for (const s of ['A1', 'A2', 'A5', 'A6', 'A7', 'AB', 'AC'])
      expect(stdout).toMatch(new RegExp(`Serial Number: ${s}\\b`));
    expect(summarizeCrl(der)).toMatchObject({ crl_number: '1796435023123', next_update: '2026-12-05T14:00:00.000Z' });
  });

  it('omits the revoked list when nothing is revoked (RFC 5280 §5.1.2.6)', async () => {
    const ca = loadCaMaterial(join(dir, 'issuer'));
    const der = await signCrl(
      { certDer: ca.intermediateDer, key: ca.intermediateKey },
      { entries: [], now: T0, nextUpdate: T0 + HOUR, crlNumber: 1n },
    );
    const file = join(dir, 'empty.pem');
    writeFileSync(file, crlPem(der));
    expect((await exec('openssl', ['crl', '-in', file, '-noout', '-text'])).stdout).toMatch(/No Revoked Certificates/);
  });
});

describe('cRLNumber', () => {
  it('is max(now, last + 1), persisted; an unreadable state file is refused, not restarted at 0', () => {
    const files = crlFiles(join(dir, 'state-test'));
    expect(lastCrlNumber(files)).toBe(0n);
    expect(nextCrlNumber(files, T0)).toBe(BigInt(T0));
    recordCrl(files, Buffer.from('x'), BigInt(T0) + 10n, T0);
    expect(nextCrlNumber(files, T0)).toBe(BigInt(T0) + 11n); // clock behind the last number
    expect(nextCrlNumber(files, T0 + 60_000)).toBe(BigInt(T0 + 60_000));
    writeFileSync(files.state, 'garbage');
    expect(() => nextCrlNumber(files, T0)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
  });

  it('the publisher refuses a crl_refresh outside 1 min … 7 days', () => {
    const ca = loadCaMaterial(join(dir, 'issuer'));
    const mk = (refreshMs: number) =>
      new CrlPublisher({
        issuer: { certDer: ca.intermediateDer, key: ca.intermediateKey },
        stores,
        files: crlFiles(join(dir, 'p')),
        refreshMs,
      });
    expect(() => mk(1000)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    expect(() => mk(8 * 24 * HOUR)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    expect(mk(HOUR).refreshMs).toBe(HOUR);
  });
});

describe('CrlPublisher', () => {
  it('a CRL asked for after a lock committed lists it, even while an earlier look is still running', async () => {
    const ca = loadCaMaterial(join(dir, 'issuer'));
    // The store, with the audit head read held at a gate the test opens: the timer's look has
    // read the head *before* the lock commits and is still running when the CRL is asked for.
    let gate: Promise<void> | undefined;
    let headRead: () => void = () => undefined;
    const audit = new Proxy(stores.audit, {
      get(t, p) {
        if (p === 'head')
          return async () => {
            const h = await t.head();
            const g = gate;
            headRead();
            if (g) await g;
            return h;
          };
        const v = Reflect.get(t, p) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
    const gated = new Proxy(stores, {
      get(t, p) {
        if (p === 'audit') return audit;
        const v = Reflect.get(t, p) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
    const pub = new CrlPublisher({
      issuer: { certDer: ca.intermediateDer, key: ca.intermediateKey },
      stores: gated,
      files: crlFiles(join(dir, 'race')),
      now: () => T0,
    });
    await stores.instances.setLocked('open-1', false, null, T0);
    const first = await pub.current();
    expect(first.entries.map((e) => e.serial)).not.toContain('b1');

    let open: () => void = () => undefined;
    gate = new Promise<void>((r) => (open = r));
    const read = new Promise<void>((r) => (headRead = r));
    const timerLook = pub.check(); // the timer's look: reads the head, then waits at the gate
    await read;
    await stores.withWriteTx(async (tx) => {
      await tx.instances.setLocked('open-1', true, 'racing lock', T0);
      await tx.audit.append({ action: 'lock', outcome: 'ok', actor: 'admin', instanceId: 'open-1' }, T0);
    });
    gate = undefined;
    const asked = pub.current(); // a relying party, after the lock committed
    open();
    const served = await asked;
    await timerLook;
    expect(served.entries.map((e) => e.serial)).toContain('b1');
    expect(served.crlNumber).toBeGreaterThan(first.crlNumber);

    await stores.withWriteTx(async (tx) => {
      await tx.instances.setLocked('open-1', false, null, T0);
      await tx.audit.append({ action: 'unlock', outcome: 'ok', actor: 'admin', instanceId: 'open-1' }, T0);
    });
    expect((await pub.current()).entries.map((e) => e.serial)).not.toContain('b1');
  });
});

describe('CrlPublisher when the store cannot vouch for new rows', () => {
  it('after a failed WAL flush (the durability barrier rejects for good): serves the CRL made before while it is valid, then fails', async () => {
    const ca = loadCaMaterial(join(dir, 'issuer'));
    let failed = false;
    let now = T0;
    const watcher = new AuditWatcher({
      audit: stores.audit,
      now: () => now,
      whenDurable: () =>
        failed ? Promise.reject(new Error('store_unavailable: WAL flush failed: EIO')) : Promise.resolve(),
    });
    const pub = new CrlPublisher({
      issuer: { certDer: ca.intermediateDer, key: ca.intermediateKey },
      stores,
      files: crlFiles(join(dir, 'flush-failed')),
      now: () => now,
      watcher,
    });
    const first = await pub.current();
    // A row committed whose flush then failed: the commit is visible to reads.
    await stores.audit.append({ action: 'renew', outcome: 'ok' }, T0);
    failed = true;
    expect((await pub.current()).crlNumber).toBe(first.crlNumber);
    now = first.nextUpdate;
    await expect(pub.current()).rejects.toThrow(/WAL flush failed/);
  });
});

describe('changesRevocation', () => {
  it('is true for lock/unlock rows and generation_mismatch refusals only', () => {
    expect(changesRevocation({ action: 'lock', outcome: 'ok', code: null })).toBe(true);
    expect(changesRevocation({ action: 'unlock', outcome: 'ok', code: null })).toBe(true);
    expect(changesRevocation({ action: 'renew', outcome: 'refused', code: 'generation_mismatch' })).toBe(true);
    expect(changesRevocation({ action: 'renew', outcome: 'ok', code: null })).toBe(false);
    expect(changesRevocation({ action: 'lock', outcome: 'refused', code: 'not_found' })).toBe(false);
  });
});
