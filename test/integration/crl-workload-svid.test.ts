/**
 * A locked instance's workload X.509-SVIDs are on the CRL, and `openssl verify -crl_check`
 * refuses them (review of issue #16: server/crl/revoked.ts used to list the X.509 kinds by hand
 * and missed `workload-x509-svid`, so a workload's mTLS certificate from a locked machine kept
 * passing every relying party that checks the CRL).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IssuerLink } from '../../src/agent/transports.js';
import { LinkWorkloadIssuer } from '../../src/agent/workload/issuer-client.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { crlPem } from '../../src/server/crl/ctl.js';
import { CrlPublisher } from '../../src/server/crl/publisher.js';
import { crlFiles } from '../../src/server/crl/state.js';
import { loadCaMaterial } from '../../src/server/data-dir.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { startIssuer, type Harness, type Identity } from './harness.js';
import { agentStateFor, applyWorkloadPolicy, csrPem } from './workload-issuer-rig.js';

const exec = promisify(execFile);
let h: Harness;
let gw: Identity;
const work = mkdtempSync(join(tmpdir(), 'sigil-crl-workload-'));
const cleanups: Array<() => void | Promise<void>> = [];

beforeAll(async () => {
  h = await startIssuer();
  await applyWorkloadPolicy(h);
  gw = await h.join();
});
afterAll(async () => {
  for (const c of cleanups) await c();
  await h.close();
  rmSync(work, { recursive: true, force: true });
});

/** openssl's verdict on `leaf` with the CRL: its exit status and what it printed. */
async function opensslVerify(crl: string, inter: string, leaf: string): Promise<{ ok: boolean; out: string }> {
  const args = ['verify', '-crl_check', '-CRLfile', crl, '-CAfile', join(work, 'root.pem'), '-untrusted', inter, leaf];
  try {
    const { stdout, stderr } = await exec('openssl', args);
    return { ok: true, out: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('CRL: the workload X.509-SVIDs of a locked instance', () => {
  it('lists them with the identity certificate, and openssl refuses the workload certificate', async () => {
    const agent = agentStateFor(h, gw);
    const link = new IssuerLink([
      new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin: h.ctx.ca.pin, rootPem: h.rootPem }),
    ]);
    cleanups.push(() => link.close(), agent.close);
    const client = new LinkWorkloadIssuer({ link, state: agent.state, now: () => h.ctx.now() });
    const svid = await client.signX509('web', await csrPem(SoftwareSigner.generate()));
    const [leafPem, interPem] = svid.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/);
    writeFileSync(join(work, 'root.pem'), h.rootPem);
    writeFileSync(join(work, 'inter.pem'), interPem!);
    writeFileSync(join(work, 'leaf.pem'), leafPem!);

    const ca = loadCaMaterial(h.dir);
    const publisher = new CrlPublisher({
      issuer: { certDer: ca.intermediateDer, key: ca.intermediateKey },
      stores: h.ctx.stores,
      files: crlFiles(join(work, 'crl')),
    });
    cleanups.push(() => publisher.stop());
    // Before the lock: the workload certificate verifies against the (empty) CRL.
    writeFileSync(join(work, 'crl-before.pem'), crlPem((await publisher.current()).der));
    const before = await opensslVerify(join(work, 'crl-before.pem'), join(work, 'inter.pem'), join(work, 'leaf.pem'));
    expect(before.out).toMatch(/OK/);
    expect(before.ok).toBe(true);

    const instanceId = gw.result.instance_id;
    await runAdminOp(h.ctx.stores, 'lock', { target: instanceId, reason: 'workload SVIDs on the CRL' }, h.ctx.now());
    const crl = await publisher.current();
    const listed = crl.entries.map((e) => e.serial);
    const certs = await h.ctx.stores.certificates.listByInstance(instanceId);
    const workloadSerial = certs.find((c) => c.kind === 'workload-x509-svid')!.serial;
    expect(listed).toContain((await h.ctx.stores.instances.get(instanceId))!.currentSerial);
    expect(listed).toContain(workloadSerial);

    writeFileSync(join(work, 'crl.pem'), crlPem(crl.der));
    const after = await opensslVerify(join(work, 'crl.pem'), join(work, 'inter.pem'), join(work, 'leaf.pem'));
    expect(after.out).toMatch(/certificate revoked/);
    expect(after.ok).toBe(false);
  });
});
