/**
 * When the daemon wakes (agent.ts nextWake): backing off after failures, an expiry still gets
 * an attempt of its own — a token agent reports reattest_required then, a TPM/x509 agent
 * re-joins — instead of waiting out a backoff that may run minutes past it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../../src/agent/agent.js';
import { parseAgentConfig } from '../../../src/agent/config.js';
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

function agentAt(clock: { now: number }): Agent {
  dir = mkdtempSync(join(tmpdir(), 'sigil-wake-'));
  const yaml = `issuer: https://127.0.0.1:9\nca_pin: sha256:${'ab'.repeat(32)}\ndata_dir: data\njoin: { method: token, token: ${'T'.repeat(43)} }\n`;
  const cfg = parseAgentConfig(yaml, join(dir, 'agent.yaml'));
  const state = openAgentState(cfg.dataDir);
  state.saveIdentity(fakeIdentity({ notAfter: EXPIRY, renewAfter: EXPIRY - 1_800_000 }));
  return new Agent(cfg, silentLogger(), { state, now: () => clock.now });
}

describe('Agent.nextWake while backing off', () => {
  it('wakes at the expiry even when the next backoff attempt is later, once', () => {
    const clock = { now: EXPIRY - 5_000 };
    agent = agentAt(clock);
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

  it('an attempt due before the expiry comes first', () => {
    const clock = { now: EXPIRY - 20_000 };
    agent = agentAt(clock);
    agent.state.setStatus({
      consecutiveFailures: 2,
      lastError: 'issuer_unreachable: down',
      lastAttemptAt: EXPIRY - 20_000,
      nextAttemptAt: EXPIRY - 16_000,
      transport: null,
    });
    expect(agent.nextWake()).toBe(EXPIRY - 16_000);
  });
});
