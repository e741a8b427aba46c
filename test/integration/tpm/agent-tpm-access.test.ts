/**
 * One agent, one TpmAccess per TPM (keystore/tpm-access.ts TpmAccesses): everything an agent
 * runs on its TPM — identity keys, the tpm join's evidence, a `key: tpm` credential output —
 * queues behind one connection at a time. swtpm has no resource manager: uses that do not wait
 * for each other mix up their transient objects (the TPM answers TPM_RC_OBJECT_MEMORY, 0x902)
 * or are refused. Two agents in one process share nothing.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, loadAgentModules } from '../../../src/agent/agent.js';
import { parseAgentConfig } from '../../../src/agent/config.js';
import type { AgentJoinMethod } from '../../../src/agent/join-method.js';
import type { IdentityKeys } from '../../../src/agent/identity-keys.js';
import type { TpmAccesses } from '../../../src/keystore/tpm-access.js';
import type { TpmSigner } from '../../../src/keystore/tpm.js';
import type { IssuerTransport } from '../../../src/transport/types.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import { silentLogger } from '../../../src/util/log.js';
import { startSim, type Sim } from './sim.js';

let sims: Sim[] = [];
let tmp: string;
/** Connections open at once, per TCTI, and the most seen. */
const open = new Map<string, number>();
let maxOpen = 0;
const realOpen = Tpm.open.bind(Tpm);
const realClose = Tpm.prototype.close;
const tctiOf = new WeakMap<Tpm, string>();

beforeAll(async () => {
  sims = await Promise.all([startSim(), startSim()]);
  tmp = mkdtempSync(join(tmpdir(), 'sigil-agent-tpm-'));
  Tpm.open = async (...a: Parameters<typeof realOpen>) => {
    const tpm = await realOpen(...a);
    const n = (open.get(a[0]) ?? 0) + 1;
    open.set(a[0], n);
    tctiOf.set(tpm, a[0]);
    maxOpen = Math.max(maxOpen, n);
    return tpm;
  };
  Tpm.prototype.close = function (this: Tpm) {
    const t = tctiOf.get(this)!;
    open.set(t, open.get(t)! - 1);
    return realClose.call(this);
  };
});
afterAll(async () => {
  Tpm.open = realOpen;
  Tpm.prototype.close = realClose;
  await Promise.all(sims.map((s) => s.stop()));
  rmSync(tmp, { recursive: true, force: true });
});

/** Never reached: nothing here talks to an issuer. */
const offline: IssuerTransport = {
  kind: 'https',
  url: 'https://127.0.0.1:1',
  ensureRoot: () => Promise.reject(new Error('offline')),
  post: () => Promise.reject(new Error('offline')),
  bundle: () => Promise.reject(new Error('offline')),
  close: () => undefined,
};

/** What of an agent this test looks at (private members: the wiring is what is tested). */
interface AgentInside {
  keys: IdentityKeys;
  join: AgentJoinMethod;
  tpm: TpmAccesses;
}

async function tpmAgent(name: string, sim: Sim): Promise<Agent & { inside: AgentInside }> {
  const yaml = [
    'issuer: https://127.0.0.1:1',
    `ca_pin: sha256:${'0'.repeat(64)}`,
    `data_dir: ${join(tmp, name)}`,
    `join: { method: tpm, tpm: { tcti: "${sim.tcti}", event_log: false } }`,
    'outputs:',
    `  - { type: database, path: ${join(tmp, name, 'db')}, db_user: app, key: tpm }`,
    '',
  ].join('\n');
  const cfg = parseAgentConfig(yaml, join(tmp, `${name}.yaml`));
  // The code this config names, loaded up front (as the CLI does): the members looked at exist at once.
  const agent = new Agent(cfg, silentLogger(), { transports: [offline], modules: await loadAgentModules(cfg) });
  return Object.assign(agent, { inside: agent as unknown as AgentInside });
}

describe('an agent and its TPM', () => {
  it('runs its identity keys, the join evidence and a key: tpm output on one TPM concurrently, one connection at a time, without error', async () => {
    const agent = await tpmAgent('one', sims[0]!);
    try {
      const { keys, join: method } = agent.inside;
      const [k1, k2] = await Promise.all([keys.create(), keys.create()]);
      const s1 = k1.signer as TpmSigner;
      const s2 = k2.signer as TpmSigner;
      // The same object, not two that happen to name the same TCTI.
      expect(s1.access).toBe(s2.access);
      expect(s1.access).toBe(agent.inside.tpm.for(sims[0]!.tcti));
      maxOpen = 0;
      const work: Promise<unknown>[] = [];
      for (let i = 0; i < 4; i++) work.push(s1.sign(randomBytes(64)), s2.sign(randomBytes(64)));
      work.push(method.method.evidence({ requestId: 'r1', spkiDer: s1.publicKeySpki() }));
      work.push(agent.credentials!.destinations[0]!.prepare());
      const out = await Promise.allSettled(work);
      expect(out.filter((r) => r.status === 'rejected')).toEqual([]);
      expect(maxOpen).toBe(1);
    } finally {
      await agent.close();
    }
  });

  it('two agents in one process share no TPM state', async () => {
    const a = await tpmAgent('a', sims[0]!);
    const b = await tpmAgent('b', sims[1]!);
    try {
      expect(a.inside.tpm).not.toBe(b.inside.tpm);
      const [ka, kb] = await Promise.all([a.inside.keys.create(), b.inside.keys.create()]);
      const sa = ka.signer as TpmSigner;
      const sb = kb.signer as TpmSigner;
      expect(sa.access.tcti).toBe(sims[0]!.tcti);
      expect(sb.access.tcti).toBe(sims[1]!.tcti);
      // Neither agent's TPMs include the other's access, whatever TCTI is asked for.
      expect(a.inside.tpm.for(sims[1]!.tcti)).not.toBe(sb.access);
      expect(b.inside.tpm.for(sims[0]!.tcti)).not.toBe(sa.access);
      maxOpen = 0;
      const sigs = await Promise.all([
        sa.sign(randomBytes(64)),
        sb.sign(randomBytes(64)),
        sa.sign(randomBytes(64)),
        sb.sign(randomBytes(64)),
      ]);
      expect(sigs).toHaveLength(4);
      expect(maxOpen).toBe(1); // each agent's TPM: one connection at a time
    } finally {
      await a.close();
      await b.close();
    }
  });
});
