/**
 * A peer issuer that has not read a key rotation yet must not write the withdrawn CA back (review
 * of the agent's trust check). Two real issuers behind a TCP "load balancer" that the test points
 * at one or the other: A has taken a compromise rotation of the SSH user CA, B (a copy of A's
 * directory from before it) has not. A real Agent with an ssh_host output:
 *
 *   - its trust check reaches A and sees the rise; the refresh's credential request reaches B, which
 *     answers with the old trust sequence: the answer is not used (`trust_lagging`), the files on
 *     disk stay, the output is asked for again — and once A answers, the withdrawn CA is gone;
 *   - a renewal answered by B (its sequence lower than the one the agent keeps) does not lower it.
 */
import { X509Certificate } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { Agent, loadAgentModules } from '../../src/agent/agent.js';
import { credentialOutputsStatus, TRUST_SEQUENCE_SETTING } from '../../src/agent/credential-status.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { openAgentState } from '../../src/agent/state/index.js';
import { readLastTrustCheck } from '../../src/agent/trust-check.js';
import { spkiPin } from '../../src/pki/chain.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { rotateKey } from '../../src/server/rotate-key.js';
import { silentLogger } from '../../src/util/log.js';
import { startIssuer, type Harness } from './harness.js';

const POLICY = `
kind: role
name: edge
spec: { max_ttl: 24h, allowed_outputs: [ssh_host], ssh_host_principals: [gw1.example.org] }
`;
const cleanup: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

it('a lagging peer: its credential answer is not used, its renewal answer does not lower the sequence', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sigil-trust-lag-'));
  cleanup.push(() => rmSync(tmp, { recursive: true, force: true }));
  let a: Harness = await startIssuer();
  await runAdminOp(a.ctx.stores, 'apply', { yaml: POLICY });
  // The load balancer: new connections go to `target`; switching drops the open ones.
  let target = a.port;
  const socks = new Set<net.Socket>();
  const lb = net.createServer((c) => {
    const u = net.connect(target, '127.0.0.1');
    socks.add(c);
    socks.add(u);
    c.pipe(u).pipe(c);
    const end = (): void => {
      c.destroy();
      u.destroy();
    };
    c.on('error', end).on('close', end);
    u.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => lb.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise<void>((r) => lb.close(() => r())));
  const to = (port: number): void => {
    target = port;
    for (const s of socks) s.destroy();
    socks.clear();
  };
  const lbPort = (lb.address() as net.AddressInfo).port;
  const cfg = parseAgentConfig(
    `issuer: https://127.0.0.1:${lbPort}
ca_pin: ${spkiPin(new X509Certificate(a.rootPem))}
data_dir: ${join(tmp, 'data')}
ttl: 1h
join: { method: token, token: ${await a.token()} }
outputs:
  - { type: ssh_host, path: ${join(tmp, 'host')} }
`,
    join(tmp, 'agent.yaml'),
  );
  const agent = new Agent(cfg, silentLogger(), {
    modules: await loadAgentModules(cfg),
    state: openAgentState(cfg.dataDir),
  });
  cleanup.push(() => agent.state.close());
  expect((await agent.tick()).action).toBe('joined');
  const userCa = (): string => readFileSync(join(tmp, 'host', 'ssh_user_ca.pub'), 'utf8').trim();

  /** Restart A on its directory (it reads a rotate-key step at start). */
  const dirA = a.dir;
  const portA = a.port;
  const restartA = async (): Promise<void> => {
    await a.close({ keepDir: true });
    a = await startIssuer({ dir: dirA, port: portA });
    await runAdminOp(a.ctx.stores, 'apply', { yaml: POLICY });
  };
  /** The kept-alive connection died with a switch: a first attempt may fail, as a daemon's would. */
  const retry = async <T>(fn: () => Promise<T>, failed: (r: T) => boolean): Promise<T> => {
    let r = await fn();
    for (let i = 0; i < 3 && failed(r); i++) r = await fn();
    return r;
  };

  // A planned step first (a stage): both issuers will know it — sequence s1.
  await rotateKey({ dataDir: dirA, key: 'ssh-user', step: 'stage' });
  await restartA();
  expect(
    (
      await retry(
        () => agent.tick({ force: true }),
        (r) => r.action === 'failed',
      )
    ).action,
  ).toBe('renewed');
  const s1 = Number(agent.state.getSetting(TRUST_SEQUENCE_SETTING));
  expect(s1).toBeGreaterThan(0);
  const stolen = userCa();

  // B: a copy of A from now. Then A takes the compromise rotation (s2); B has not read it.
  await a.close({ keepDir: true });
  const dirB = mkdtempSync(join(tmpdir(), 'sigil-trust-lag-b-'));
  cleanup.push(() => rmSync(dirB, { recursive: true, force: true }));
  cpSync(dirA, dirB, { recursive: true });
  a = await startIssuer({ dir: dirA, port: portA });
  const b = await startIssuer({ dir: dirB });
  cleanup.push(() => b.close());
  cleanup.push(() => a.close());
  await runAdminOp(b.ctx.stores, 'apply', { yaml: POLICY });
  await new Promise((r) => setTimeout(r, 1100)); // the sequence counts seconds
  await rotateKey({ dataDir: dirA, key: 'ssh-user', overlapS: 0 });
  await restartA();

  // The trust check reaches A: a rise to s2.
  to(portA);
  const check = (await agent.trustCheck())!;
  const rose = await retry(
    () => check.runNow(),
    (r) => !r && readLastTrustCheck(agent.state)?.error != null,
  );
  expect(rose).toBe(true);
  const s2 = Number(agent.state.getSetting(TRUST_SEQUENCE_SETTING));
  expect(s2).toBeGreaterThan(s1);

  // The refresh's request reaches B: not used; the files stay; the output stays due, backing off.
  to(b.port);
  const out = await retry(
    () => agent.credentials!.refresh({ force: true }),
    (o) => o[0]?.action === 'failed' && (o[0] as { error?: { code?: string } }).error?.code !== 'trust_lagging',
  );
  expect(out.map((o) => [o.action, (o as { error?: { code?: string } }).error?.code])).toEqual([
    ['failed', 'trust_lagging'],
  ]);
  expect(userCa()).toBe(stolen);
  expect(credentialOutputsStatus(agent.state)[0]!.last_error).toMatch(
    /^trust_lagging: .*trust sequence \d+, this agent knows \d+/,
  );
  expect(agent.credentials!.nextWake()).toBeLessThan(Date.now() + 5 * 60_000);

  // A answers the next attempt: the withdrawn CA is gone.
  to(portA);
  const again = await retry(
    () => agent.credentials!.refresh({ force: true }),
    (o) => o[0]?.action === 'failed',
  );
  expect(again.map((o) => [o.action, (o as { error?: Error }).error?.message])).toEqual([['issued', undefined]]);
  expect(userCa()).not.toContain(stolen.split('\n')[0]!.split(' ')[1]!);
  expect(credentialOutputsStatus(agent.state)[0]).toMatchObject({ consecutive_failures: 0, last_error: null });

  // A renewal answered by B (each test issuer has its own copy of the store: B knows the identity
  // A issued before the copy) carries s1: the agent keeps s2.
  to(b.port);
  const renewed = await retry(
    () => agent.tick({ force: true }),
    (r) => r.action === 'failed',
  );
  expect(renewed.action).toBe('renewed');
  expect(Number(agent.state.getSetting(TRUST_SEQUENCE_SETTING))).toBe(s2);
}, 60_000);
