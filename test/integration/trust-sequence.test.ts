/**
 * An agent's SSH trust files follow a key rotation by themselves (rotate-key's `trust_sequence`):
 * a real Agent (HTTPS, token join, ssh_host and jwt outputs) against an in-process issuer that is
 * restarted on the same data directory and port after each rotate-key step. The identity answer
 * carries the issuer's trust_sequence once it ever rotated; when it moves, the next refresh
 * re-issues the ssh outputs (their trust file lists the CAs) and the jwt one (a withdrawn key may
 * have signed its token) — without it, an sshd would trust a withdrawn CA until its output's own
 * half-life (the walk of the runbook met it).
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, loadAgentModules } from '../../src/agent/agent.js';
import { RENEW_NOW_SETTING, TRUST_SEQUENCE_SETTING } from '../../src/agent/credential-status.js';
import { trustCheckStatus } from '../../src/agent/status.js';
import { readLastTrustCheck } from '../../src/agent/trust-check.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { openAgentState } from '../../src/agent/state/index.js';
import { spkiPin } from '../../src/pki/chain.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { rotateKey } from '../../src/server/rotate-key.js';
import { silentLogger } from '../../src/util/log.js';
import { startIssuer, type Harness } from './harness.js';

const POLICY = `
kind: role
name: edge
spec: { max_ttl: 24h, allowed_outputs: [ssh_host, jwt], ssh_host_principals: [gw1.example.org], jwt_audiences: [vault] }
`;

let h: Harness;
let tmp: string;
let agent: Agent;
let dir: string;
let port: number;

async function restart(): Promise<void> {
  await h.close({ keepDir: true });
  h = await startIssuer({ dir, port });
  await runAdminOp(h.ctx.stores, 'apply', { yaml: POLICY });
}

/**
 * The agent's kept-alive connection died with the old issuer: its first attempt may fail
 * `issuer_unreachable` (the daemon retries with backoff); the renewal, with the same request, follows.
 */
async function renewAfterRestart(): Promise<Awaited<ReturnType<Agent['tick']>>> {
  let r = await agent.tick({ force: true });
  for (let i = 0; i < 3 && r.action === 'failed'; i++) r = await agent.tick({ force: true });
  return r;
}

const userCaLines = () =>
  readFileSync(join(tmp, 'host', 'ssh_user_ca.pub'), 'utf8')
    .trim()
    .split('\n');
const actions = (r: Awaited<ReturnType<Agent['tick']>>) => (r.credentials ?? []).map((c) => [c.type, c.action]);

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sigil-trust-seq-'));
  h = await startIssuer();
  dir = h.dir;
  port = h.port;
  await runAdminOp(h.ctx.stores, 'apply', { yaml: POLICY });
  const yaml = `issuer: https://127.0.0.1:${port}
ca_pin: ${spkiPin(new X509Certificate(h.rootPem))}
data_dir: ${join(tmp, 'data')}
ttl: 1h
join: { method: token, token: ${await h.token()} }
outputs:
  - { type: ssh_host, path: ${join(tmp, 'host')} }
  - { type: jwt, path: ${join(tmp, 'jwt')}, audiences: [vault] }
`;
  const cfg = parseAgentConfig(yaml, join(tmp, 'agent.yaml'));
  agent = new Agent(cfg, silentLogger(), { modules: await loadAgentModules(cfg), state: openAgentState(cfg.dataDir) });
});

afterAll(async () => {
  agent?.state.close();
  await h?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('trust_sequence: the ssh outputs follow a rotation at the next renewal', () => {
  it('never rotated: the answer carries no trust_sequence, the outputs are issued once', async () => {
    const r = await agent.tick();
    expect(r.action).toBe('joined');
    expect(actions(r)).toEqual([
      ['ssh_host', 'issued'],
      ['jwt', 'issued'],
    ]);
    expect(agent.state.getSetting(TRUST_SEQUENCE_SETTING)).toBeUndefined();
    expect(userCaLines()).toHaveLength(1);
    expect(actions(await agent.tick({ force: true }))).toEqual([
      ['ssh_host', 'none'],
      ['jwt', 'none'],
    ]);
  });

  it('a staged user CA: the renewal after the restart re-issues the ssh output (two CAs) and the jwt one', async () => {
    await rotateKey({ dataDir: dir, key: 'ssh-user', step: 'stage' });
    await restart();
    const r = await renewAfterRestart();
    expect(r.action).toBe('renewed');
    expect(Number(agent.state.getSetting(TRUST_SEQUENCE_SETTING))).toBeGreaterThan(0);
    expect(actions(r)).toEqual([
      ['ssh_host', 'issued'],
      ['jwt', 'issued'],
    ]);
    expect(userCaLines()[1]).toMatch(/ next-sigil-user-ca@example\.org$/);
    // Steady again: no more re-issues while the sequence stands.
    expect(actions(await agent.tick({ force: true }))).toEqual([
      ['ssh_host', 'none'],
      ['jwt', 'none'],
    ]);
  });

  it('a compromise rotation withdraws both: the next renewal leaves one CA in the trust file', async () => {
    const before = userCaLines();
    await rotateKey({ dataDir: dir, key: 'ssh-user', overlapS: 0 });
    await restart();
    const r = await renewAfterRestart();
    expect(actions(r)).toEqual([
      ['ssh_host', 'issued'],
      ['jwt', 'issued'],
    ]);
    const after = userCaLines();
    expect(after).toHaveLength(1);
    expect(before).not.toContain(after[0]);
  });
});

describe('trust_check_every: the ssh outputs follow a rotation between renewals', () => {
  /** The kept-alive connection died with the old issuer: the first check may fail, as a renewal's would. */
  async function checkAfterRestart(): Promise<boolean> {
    const check = (await agent.trustCheck())!;
    let rose = await check.runNow();
    for (let i = 0; i < 3 && !rose && readLastTrustCheck(agent.state)?.error; i++) rose = await check.runNow();
    return rose;
  }

  it('a compromise rotation: the check sees the rise, the refresh re-issues the outputs, the identity is not renewed', async () => {
    const serial = agent.state.getIdentity()!.serial;
    const kept = Number(agent.state.getSetting(TRUST_SEQUENCE_SETTING));
    const before = userCaLines();
    // The sequence is in seconds: a step in the same second as the last would not move it.
    await new Promise((r) => setTimeout(r, 1100));
    await rotateKey({ dataDir: dir, key: 'ssh-user', overlapS: 0 });
    await restart();
    // Without the check the outputs stay as they are: nothing is due.
    expect(actions(await agent.tick())).toEqual([
      ['ssh_host', 'none'],
      ['jwt', 'none'],
    ]);
    expect(await checkAfterRestart()).toBe(true);
    expect(Number(agent.state.getSetting(TRUST_SEQUENCE_SETTING))).toBeGreaterThan(kept);
    expect((await agent.credentials!.refresh()).map((c) => [c.type, c.action])).toEqual([
      ['ssh_host', 'issued'],
      ['jwt', 'issued'],
    ]);
    const after = userCaLines();
    expect(after).toHaveLength(1);
    expect(before).not.toContain(after[0]);
    expect(agent.state.getIdentity()!.serial).toBe(serial);
    // Checked again with nothing changed: nothing due.
    expect(await (await agent.trustCheck())!.runNow()).toBe(false);
  });

  it('a cron pass (`run --once`) runs the check when it is due: the trust file follows in that pass', async () => {
    const serial = agent.state.getIdentity()!.serial;
    const before = userCaLines();
    await new Promise((r) => setTimeout(r, 1100));
    await rotateKey({ dataDir: dir, key: 'ssh-user', overlapS: 0 });
    await restart();
    process.env.SIGIL_TEST_TRUST_CHECK_EVERY_MS = '2000';
    try {
      // The check is due when its stored time has come (cleared here, as a cron interval's wait
      // would); the kept-alive connection died with the restart, so a first pass may fail it.
      let r = await agent.once();
      for (let i = 0; i < 3 && before.includes(userCaLines()[0]!); i++) {
        const last = readLastTrustCheck(agent.state)!;
        agent.state.setSetting('trust.last_check', JSON.stringify({ ...last, next_at: 0 }));
        r = await agent.once();
      }
      expect(r.action).toBe('none');
      expect(actions(r)).toContainEqual(['ssh_host', 'issued']);
    } finally {
      delete process.env.SIGIL_TEST_TRUST_CHECK_EVERY_MS;
    }
    expect(before).not.toContain(userCaLines()[0]);
    expect(agent.state.getIdentity()!.serial).toBe(serial);
    // Not due again at once: the next pass makes no check (the schedule is kept in the state).
    const at = readLastTrustCheck(agent.state)!.at;
    expect((await agent.once()).action).toBe('none');
    expect(readLastTrustCheck(agent.state)!.at).toBe(at);
    // A state that never stored a check (an agent only ever run from cron): the pass checks now —
    // a daemon's first-start delay would recur in every cron'd process.
    agent.state.setSetting('trust.last_check', '');
    await agent.once();
    expect(readLastTrustCheck(agent.state)?.at).toBeGreaterThan(at);
  });

  it('the daemon runs the check on its interval and rewrites the trust file, with no renewal', async () => {
    const serial = agent.state.getIdentity()!.serial;
    const before = userCaLines();
    await new Promise((r) => setTimeout(r, 1100));
    await rotateKey({ dataDir: dir, key: 'ssh-user', overlapS: 0 });
    await restart();
    process.env.SIGIL_TEST_TRUST_CHECK_EVERY_MS = '200';
    const ac = new AbortController();
    const running = agent.run(ac.signal, { served: true });
    try {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && before.includes(userCaLines()[0]!)) await new Promise((r) => setTimeout(r, 100));
    } finally {
      ac.abort();
      await running;
      delete process.env.SIGIL_TEST_TRUST_CHECK_EVERY_MS;
    }
    expect(userCaLines()).toHaveLength(1);
    expect(before).not.toContain(userCaLines()[0]);
    expect(agent.state.getIdentity()!.serial).toBe(serial);
    expect(trustCheckStatus(agent.state)).toMatchObject({
      trust_sequence: Number(agent.state.getSetting(TRUST_SEQUENCE_SETTING)),
      last_trust_check_error: null,
    });
  });

  // Last: it leaves a failed renewal queued.
  it('a cron pass whose renewal found the issuer unreachable makes no check (it would wait out the timeouts again)', async () => {
    const last = readLastTrustCheck(agent.state)!;
    agent.state.setSetting('trust.last_check', JSON.stringify({ ...last, next_at: 0 })); // due
    agent.state.setSetting(RENEW_NOW_SETTING, agent.state.getIdentity()!.serial); // and the renewal
    await h.close({ keepDir: true });
    try {
      const r = await agent.once();
      expect(r.action === 'failed' && r.error.code).toBe('issuer_unreachable');
      expect(readLastTrustCheck(agent.state)!.at).toBe(last.at);
    } finally {
      h = await startIssuer({ dir, port });
    }
  });
});
