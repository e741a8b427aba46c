/**
 * When the daemon wakes (agent.ts nextWake): backing off after failures, an expiry still gets
 * an attempt of its own — a token agent reports reattest_required then, a TPM/x509 agent
 * re-joins — instead of waiting out a backoff that may run minutes past it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, loadAgentModules } from '../../../src/agent/agent.js';
import { parseAgentConfig } from '../../../src/agent/config.js';
import { buildJoinMethod, USED_CREDENTIAL_SETTING } from '../../../src/agent/join-method.js';
import { openAgentState } from '../../../src/agent/state/index.js';
import { silentLogger } from '../../../src/util/log.js';
import { fakeIdentity } from '../../helpers/agent-identity.js';

const EXPIRY = 1_700_003_600_000;
let dir: string;
let agent: Agent | undefined;

afterEach(async () => {
  await agent?.close();
  agent = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const SPENT = 'T'.repeat(43);
const NEW_TOKEN = 'N'.repeat(43);

/** A token agent whose join spent SPENT; agent.yaml now holds `token` (SPENT again, or a new one). */
async function agentAt(clock: { now: number }, token = SPENT): Promise<Agent> {
  dir = mkdtempSync(join(tmpdir(), 'sigil-wake-'));
  const yaml = (t: string): string =>
    `issuer: https://127.0.0.1:9\nca_pin: sha256:${'ab'.repeat(32)}\ndata_dir: data\njoin: { method: token, token: ${t} }\n`;
  const spent = await buildJoinMethod(parseAgentConfig(yaml(SPENT), join(dir, 'agent.yaml')));
  const cfg = parseAgentConfig(yaml(token), join(dir, 'agent.yaml'));
  const state = openAgentState(cfg.dataDir);
  state.saveIdentity(fakeIdentity({ notAfter: EXPIRY, renewAfter: EXPIRY - 1_800_000 }));
  state.setSetting(USED_CREDENTIAL_SETTING, spent.singleUseCredential!);
  return new Agent(cfg, silentLogger(), { state, now: () => clock.now, modules: await loadAgentModules(cfg) });
}

describe('Agent.nextWake while backing off', () => {
  it('wakes at the expiry even when the next backoff attempt is later, once', async () => {
    const clock = { now: EXPIRY - 5_000 };
    agent = await agentAt(clock);
    agent.state.setStatus({
      consecutiveFailures: 5,
      lastError: 'issuer_unreachable: down',
      lastAttemptAt: EXPIRY - 5_000,
      nextAttemptAt: EXPIRY + 25_000,
      transport: null,
    });
    expect(agent.nextWake()).toBe(EXPIRY);
    // At the expiry, before that attempt: still due (it was not made yet).
    clock.now = EXPIRY + 10;
    expect(agent.nextWake()).toBeLessThanOrEqual(clock.now);
    // After the attempt at the expiry: the backoff rules again.
    agent.state.setStatus({
      consecutiveFailures: 6,
      lastError: 'reattest_required: …',
      lastAttemptAt: EXPIRY + 10,
      nextAttemptAt: EXPIRY + 40_000,
      transport: null,
    });
    expect(agent.nextWake()).toBe(EXPIRY + 40_000);
  });

  it('an attempt due before the expiry comes first', async () => {
    const clock = { now: EXPIRY - 20_000 };
    agent = await agentAt(clock);
    agent.state.setStatus({
      consecutiveFailures: 2,
      lastError: 'issuer_unreachable: down',
      lastAttemptAt: EXPIRY - 20_000,
      nextAttemptAt: EXPIRY - 16_000,
      transport: null,
    });
    expect(agent.nextWake()).toBe(EXPIRY - 16_000);
  });

  /** After the expiry the spent token was refused locally: reattest_required, backing off. */
  const afterReattestRequired = {
    consecutiveFailures: 7,
    lastError: 'reattest_required: the identity expired and the token is spent; …',
    lastAttemptAt: EXPIRY + 60_000,
    nextAttemptAt: EXPIRY + 300_000,
    transport: null,
  };

  it('a daemon restarted with a new token joins at once, not at the backoff the spent one reached', async () => {
    const clock = { now: EXPIRY + 120_000 };
    agent = await agentAt(clock, NEW_TOKEN);
    agent.state.setStatus(afterReattestRequired);
    expect(agent.nextWake()).toBe(clock.now);
  });

  it('restarted with the same spent token: the backoff holds', async () => {
    const clock = { now: EXPIRY + 120_000 };
    agent = await agentAt(clock);
    agent.state.setStatus(afterReattestRequired);
    expect(agent.nextWake()).toBe(EXPIRY + 300_000);
  });

  it('the new token is tried at once only once: after a failed attempt the backoff rules', async () => {
    const clock = { now: EXPIRY + 120_000 };
    agent = await agentAt(clock, NEW_TOKEN);
    agent.state.setStatus(afterReattestRequired);
    // The attempt fails (nothing listens on port 9) — and even a failure that says
    // reattest_required again (a token the issuer refuses) must not make the daemon spin.
    const r = await agent.tick();
    expect(r.action).toBe('failed');
    agent.state.setStatus({ ...afterReattestRequired, consecutiveFailures: 8, lastAttemptAt: clock.now });
    expect(agent.nextWake()).toBe(EXPIRY + 300_000);
  });

  it('a failure other than reattest_required keeps its backoff, new token or not', async () => {
    const clock = { now: EXPIRY + 120_000 };
    agent = await agentAt(clock, NEW_TOKEN);
    agent.state.setStatus({ ...afterReattestRequired, lastError: 'issuer_unreachable: down' });
    expect(agent.nextWake()).toBe(EXPIRY + 300_000);
  });
});
