/**
 * The Workload API's cache (issue #17): SVIDs survive an agent restart while the issuer is
 * unreachable; SVIDs rotate at half-life by themselves and the open stream gets the new one;
 * an issuer answer that does not fit (another SPIFFE ID, another key, another CA) never
 * replaces the SVID being served.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { openAgentState, type AgentState } from '../../src/agent/state/index.js';
import { explainWorkloads, formatExplanation } from '../../src/agent/workload/explain.js';
import { WorkloadApiServer } from '../../src/agent/workload/server.js';
import { createRootCa } from '../../src/pki/ca.js';
import { toPem } from '../../src/pki/pem.js';
import { silentLogger } from '../../src/util/log.js';
import { firstMessage, header, messages, splitDer, unary, workloadClient } from '../helpers/workload-client.js';
import { entry, FakeWorkloadIssuer, TRUST_DOMAIN } from '../helpers/workload-issuer-fake.js';

const UID = process.getuid?.() ?? 0;

interface X509Response {
  svids: Array<{ spiffe_id: string; x509_svid: Buffer; x509_svid_key: Buffer }>;
}

describe.runIf(process.platform === 'linux')('Workload API cache', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  function setup(issuer: FakeWorkloadIssuer, dir: string): { server: WorkloadApiServer; state: AgentState } {
    const state = openAgentState(join(dir, 'data'));
    const server = new WorkloadApiServer({
      socket: join(dir, 'agent.sock'),
      port: issuer,
      store: state.workloads,
      log: silentLogger(),
    });
    cleanup.push(async () => {
      await server.close();
      state.close();
    });
    return { server, state };
  }

  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-wl-cache-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  it('after a restart with the issuer down, the cached SVID, bundle and JWT-SVID are served (keys in the 0600 database)', async () => {
    const dir = tempDir();
    const issuer = new FakeWorkloadIssuer();
    issuer.entries = [entry('web', [`unix:uid:${UID}`], { jwtAudiences: ['aud-a'] })];
    const first = setup(issuer, dir);
    await first.server.identities.sync();
    await first.server.start();
    const c1 = workloadClient(join(dir, 'agent.sock'));
    const before = await firstMessage<X509Response>(c1['FetchX509SVID']!({}, header()));
    c1.close();
    await first.server.close();
    first.state.close();
    cleanup.length = 1; // keep only the temp dir's removal
    expect(statSync(join(dir, 'data', 'agent.db')).mode & 0o777).toBe(0o600);

    issuer.down = true;
    const calls = { ...issuer.calls };
    const t0 = performance.now();
    const second = setup(issuer, dir);
    await second.server.start();
    const c2 = workloadClient(join(dir, 'agent.sock'));
    cleanup.push(() => c2.close());
    const after = await firstMessage<X509Response>(c2['FetchX509SVID']!({}, header()));
    const ms = performance.now() - t0;
    expect(after.svids[0]!.spiffe_id).toBe(`spiffe://${TRUST_DOMAIN}/web`);
    expect(after.svids[0]!.x509_svid.equals(before.svids[0]!.x509_svid)).toBe(true);
    expect(after.svids[0]!.x509_svid_key.equals(before.svids[0]!.x509_svid_key)).toBe(true);
    const jwt = await unary<{ svids: Array<{ svid: string }> }>(c2, 'FetchJWTSVID', { audience: ['aud-a'] });
    expect(jwt.svids).toHaveLength(1);
    // Nothing was signed while the issuer was down: all of it came from the cache.
    expect(issuer.calls.signX509).toBe(calls.signX509);
    expect(issuer.calls.signJwt).toBe(calls.signJwt);
    process.stdout.write(
      `workload API: first SVID served ${ms.toFixed(0)} ms after the restarted server was created (issuer down)\n`,
    );
  });

  it('with nothing cached and the issuer down: Unavailable, not PermissionDenied', async () => {
    const dir = tempDir();
    const issuer = new FakeWorkloadIssuer();
    issuer.down = true;
    const { server } = setup(issuer, dir);
    await server.start();
    const c = workloadClient(join(dir, 'agent.sock'));
    cleanup.push(() => c.close());
    await expect(firstMessage(c['FetchX509SVID']!({}, header()))).rejects.toMatchObject({ code: status.UNAVAILABLE });
  });

  it('an expired cached SVID is never served (the issuer down, the clock past notAfter): Unavailable', async () => {
    const dir = tempDir();
    const issuer = new FakeWorkloadIssuer();
    issuer.entries = [entry('web', [`unix:uid:${UID}`])];
    const first = setup(issuer, dir);
    await first.server.identities.sync();
    await first.server.close();
    first.state.close();
    cleanup.length = 1;
    issuer.down = true;
    const state = openAgentState(join(dir, 'data'));
    const server = new WorkloadApiServer({
      socket: join(dir, 'agent.sock'),
      port: issuer,
      store: state.workloads,
      log: silentLogger(),
      now: () => Date.now() + 2 * 3600_000,
    });
    cleanup.push(async () => {
      await server.close();
      state.close();
    });
    await server.start();
    const c = workloadClient(join(dir, 'agent.sock'));
    cleanup.push(() => c.close());
    await expect(firstMessage(c['FetchX509SVID']!({}, header()))).rejects.toMatchObject({ code: status.UNAVAILABLE });
  });

  it('rotates at half-life by itself and pushes the new SVID on the open stream', async () => {
    const dir = tempDir();
    const issuer = new FakeWorkloadIssuer();
    issuer.ttlS = 3; // renewed ~1.5 s after issue
    issuer.entries = [entry('web', [`unix:uid:${UID}`])];
    const { server } = setup(issuer, dir);
    await server.identities.sync();
    await server.start();
    const c = workloadClient(join(dir, 'agent.sock'));
    cleanup.push(() => c.close());
    const stream = c['FetchX509SVID']!({}, header());
    cleanup.push(() => stream.cancel());
    const next = messages<X509Response>(stream);
    const first = await next.next();
    const second = await next.next();
    const serial = (m: X509Response): string => new X509Certificate(splitDer(m.svids[0]!.x509_svid)[0]!).serialNumber;
    expect(serial(second)).not.toBe(serial(first));
  });

  it('`sigil agent workloads --pid`: the process’s selectors, the entry it matches and the one it does not, and why', async () => {
    const dir = tempDir();
    const issuer = new FakeWorkloadIssuer();
    issuer.entries = [
      entry('mine', [`unix:uid:${UID}`, `unix:path:${process.execPath}`], { jwtAudiences: ['aud-a'] }),
      entry('theirs', [`unix:uid:${UID}`, 'unix:path:/usr/sbin/envoy']),
    ];
    const { server, state } = setup(issuer, dir);
    await server.identities.sync();
    const x = explainWorkloads(state.workloads, { socket: '/run/sigil/agent.sock', pid: process.pid });
    expect(x.caller).toMatchObject({ pid: process.pid, uid: UID });
    expect(x.entries.map((e) => [e.id, e.matches, e.missing])).toEqual([
      ['mine', true, []],
      ['theirs', false, ['unix:path:/usr/sbin/envoy']],
    ]);
    expect(x.entries[0]!.svid?.serial).toMatch(/^[0-9a-f]+$/);
    expect(x.entries[0]!.jwt_svids.map((j) => j.audience)).toEqual([['aud-a']]);
    const text = formatExplanation(x);
    expect(text).toContain(`entry theirs  spiffe://${TRUST_DOMAIN}/theirs  no match, lacks: unix:path:/usr/sbin/envoy`);
    expect(text).toContain(`entry mine  spiffe://${TRUST_DOMAIN}/mine  MATCHES`);
  });

  it('an issuer answer for this key but another SPIFFE ID is refused and the served SVID stays', async () => {
    const dir = tempDir();
    const issuer = new FakeWorkloadIssuer();
    issuer.entries = [entry('web', [`unix:uid:${UID}`])];
    const { server, state } = setup(issuer, dir);
    await server.identities.sync();
    const served = state.workloads.svids()[0]!;
    issuer.wrongSpiffeId = `spiffe://${TRUST_DOMAIN}/admin`;
    await server.identities.sync({ force: true });
    expect(issuer.calls.signX509).toBe(2);
    expect(state.workloads.svids()[0]!.serial).toBe(served.serial);
  });

  it.each([
    [
      'names another SPIFFE ID and key',
      (i: TamperingIssuer) => (svid: { chainPem: string }) => ({ ...svid, chainPem: i.otherSvidPem() }),
    ],
    [
      'certifies another key',
      (i: TamperingIssuer) => (svid: { chainPem: string }) => ({ ...svid, chainPem: i.sameIdOtherKeyPem() }),
    ],
    [
      'does not chain to the trust bundle',
      () => (svid: { chainPem: string }) => ({ ...svid, chainPem: foreignChainPem(svid.chainPem) }),
    ],
  ])('an issuer answer that %s is refused and the served SVID stays', async (_what, tamper) => {
    const dir = tempDir();
    const issuer = new TamperingIssuer();
    issuer.entries = [entry('web', [`unix:uid:${UID}`])];
    const { server, state } = setup(issuer, dir);
    await server.identities.sync();
    const served = state.workloads.svids()[0]!;
    issuer.tamper = tamper(issuer) as never;
    await server.identities.sync({ force: true });
    expect(issuer.calls.signX509).toBe(2);
    expect(state.workloads.svids()[0]!.serial).toBe(served.serial);
  });
});

/** Answers that fit another request: another entry's SVID, or one for a key the agent never made. */
class TamperingIssuer extends FakeWorkloadIssuer {
  private other: string | undefined;
  otherSvidPem(): string {
    return this.other!;
  }
  sameIdOtherKeyPem(): string {
    return this.otherKey!;
  }
  private otherKey: string | undefined;
  override async fetchEntries() {
    const entries = await super.fetchEntries();
    if (!this.other) {
      // Pre-issue: an SVID for another ID, and one for this ID but a foreign key.
      const { SoftwareSigner } = await import('../../src/keystore/software.js');
      const { buildCsr } = await import('../../src/pki/csr.js');
      const csr = toPem('CERTIFICATE REQUEST', await buildCsr(SoftwareSigner.generate()));
      const saved = this.entries;
      this.entries = [...saved, entry('intruder', ['unix:uid:1'])];
      this.other = (await super.signX509('intruder', csr)).chainPem;
      this.otherKey = (await super.signX509('web', csr)).chainPem;
      this.calls.signX509 -= 2;
      this.entries = saved;
    }
    return entries;
  }
}

/** The same leaf re-signed by nobody we trust: a self-made CA's chain with the leaf's subject. */
function foreignChainPem(chainPem: string): string {
  const rogue = createRootCa({ trustDomain: TRUST_DOMAIN });
  return (
    chainPem.split('-----END CERTIFICATE-----')[0] + '-----END CERTIFICATE-----\n' + toPem('CERTIFICATE', rogue.certDer)
  );
}
