/**
 * `workload_api.max_connections_per_uid` in agent.yaml reaches the Workload API's listener, on
 * both ways the socket is started: early, from the file alone (`sigil agent run` before the agent
 * loads: early-start.ts), and by the agent (start.ts). Out-of-range values are refused by the
 * config schema, and the early start leaves them to the agent (it starts nothing on doubt).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../../src/agent/config.js';
import { openAgentState, type AgentState } from '../../../src/agent/state/index.js';
import { readWorkloadApiPlan, startEarlyWorkloadApi } from '../../../src/agent/workload/early-start.js';
import { DEFAULT_LISTENER_LIMITS } from '../../../src/agent/workload/listener.js';
import { startWorkloadApi } from '../../../src/agent/workload/start.js';
import { TpmAccesses } from '../../../src/keystore/index.js';
import { silentLogger } from '../../../src/util/log.js';
import type { IssuerLink } from '../../../src/agent/transports.js';

let dir: string;
let state: AgentState;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-wl-limits-'));
  state = openAgentState(join(dir, 'data'));
  writeFileSync(join(dir, 'token'), 'not-a-real-token\n', { mode: 0o600 });
});
afterEach(() => {
  state.close();
  rmSync(dir, { recursive: true, force: true });
});

const yaml = (extra: string): string =>
  `issuer: https://127.0.0.1:1\nca_pin: sha256:${'0'.repeat(64)}\ndata_dir: ${join(dir, 'data')}\n` +
  `join: { method: token, token_file: ${join(dir, 'token')} }\n` +
  `workload_api:\n  socket: ${join(dir, 'run', 'api.sock')}\n${extra}`;

describe('workload_api.max_connections_per_uid', () => {
  it('is parsed, and refused outside 1…4096', () => {
    const cfg = parseAgentConfig(yaml('  max_connections_per_uid: 5\n'), join(dir, 'agent.yaml'));
    expect(cfg.workloadApi?.maxConnectionsPerUid).toBe(5);
    expect(parseAgentConfig(yaml(''), join(dir, 'agent.yaml')).workloadApi?.maxConnectionsPerUid).toBeUndefined();
    for (const bad of [0, 4097, 1.5])
      expect(() => parseAgentConfig(yaml(`  max_connections_per_uid: ${bad}\n`), join(dir, 'agent.yaml'))).toThrow(
        /max_connections_per_uid/,
      );
  });

  it('reaches the listener when the agent starts the socket', async () => {
    const cfg = parseAgentConfig(yaml('  max_connections_per_uid: 5\n'), join(dir, 'agent.yaml'));
    const server = await startWorkloadApi({
      cfg,
      state,
      link: {} as IssuerLink,
      log: silentLogger(),
      now: Date.now,
      tpm: new TpmAccesses(),
    });
    try {
      expect(server!.listener.limits.maxConnectionsPerUid).toBe(5);
      expect(server!.listener.limits.idleTimeoutMs).toBe(DEFAULT_LISTENER_LIMITS.idleTimeoutMs);
    } finally {
      await server!.close();
    }
  });

  it('reaches the listener of the early start, and an out-of-range value starts nothing early', async () => {
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, yaml('  max_connections_per_uid: 7\n'));
    expect(readWorkloadApiPlan(file)?.maxConnectionsPerUid).toBe(7);
    const early = await startEarlyWorkloadApi(file, state);
    try {
      expect(early!.server.listener.limits.maxConnectionsPerUid).toBe(7);
    } finally {
      await early!.server.close();
    }
    writeFileSync(file, yaml('  max_connections_per_uid: 0\n'));
    expect(readWorkloadApiPlan(file)).toBeUndefined();
  });
});
