/**
 * A renewal queued before the identity expired, on an agent that reaches the issuer only over
 * MQTT (issue #12, defect 1). After the expiry the agent has only the bootstrap login, which the
 * shipped broker ACL does not let publish renewals ("Publish error: Not authorized", retryable):
 * the agent used to resend that renewal forever — still stuck 14 minutes later, even after a new
 * token was supplied. Now a queued renewal is resent after the expiry only where it can be
 * answered (HTTPS), otherwise dropped: a token agent reports reattest_required, and a newly
 * supplied token joins.
 *
 * The issuer is real (in-process, HTTPS); the "MQTT" transport is a stand-in that carries
 * requests to it like a broker would and refuses renewals after the expiry as the ACL does.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { openAgentState } from '../../src/agent/state/index.js';
import { SigilError } from '../../src/errors.js';
import { spkiPin } from '../../src/pki/chain.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import type { IssuerTransport } from '../../src/transport/types.js';
import { silentLogger } from '../../src/util/log.js';
import { startIssuer, type Harness } from './harness.js';

let h: Harness;
let tmp: string;
beforeAll(async () => {
  h = await startIssuer();
  tmp = mkdtempSync(join(tmpdir(), 'sigil-expired-renewal-'));
});
afterAll(async () => {
  await h.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** A broker in front of the issuer: `mode` decides what happens to each publish. */
function brokerTransport(mode: {
  down: boolean;
  renewDenied: boolean;
  renewsSeen: number;
  joinsSeen?: number;
}): IssuerTransport {
  const pin = spkiPin(new X509Certificate(h.rootPem));
  const https = new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin, timeoutMs: 5_000 });
  return {
    kind: 'mqtt',
    url: 'mqtt://broker.test:1883',
    ensureRoot: () => https.ensureRoot(),
    bundle: () => https.bundle(),
    close: () => https.close(),
    post: async (op, env, hooks) => {
      if (mode.down) throw new SigilError('issuer_unreachable', 'cannot connect to mqtt://broker.test:1883');
      if (op === 'join') mode.joinsSeen = (mode.joinsSeen ?? 0) + 1;
      if (op === 'renew') {
        mode.renewsSeen++;
        if (mode.renewDenied) throw new SigilError('issuer_unreachable', 'Publish error: Not authorized');
      }
      return https.post(op, env, hooks);
    },
  };
}

function agentWith(token: string, dataDir: string, clock: { now: number }, broker: IssuerTransport): Agent {
  const pin = spkiPin(new X509Certificate(h.rootPem));
  const yaml = `ca_pin: ${pin}\ndata_dir: ${dataDir}\nttl: 1h\njoin: { method: token, token: ${token} }\ntransports:\n  - { type: mqtt, url: "mqtt://broker.test:1883" }\n`;
  return new Agent(parseAgentConfig(yaml, join(tmp, `${dataDir}.yaml`)), silentLogger(), {
    transports: [broker],
    now: () => clock.now,
    state: openAgentState(join(tmp, dataDir)),
  });
}

describe('a renewal queued before the expiry, MQTT only', () => {
  it('is dropped after the expiry: reattest_required at once, and a newly supplied token joins', async () => {
    const clock = { now: Date.now() };
    const mode: { down: boolean; renewDenied: boolean; renewsSeen: number; joinsSeen?: number } = {
      down: false,
      renewDenied: false,
      renewsSeen: 0,
    };
    let agent = agentWith(await h.token(), 'gw', clock, brokerTransport(mode));
    try {
      expect((await agent.tick()).action).toBe('joined');
      const first = agent.state.getIdentity()!;

      // Broker and issuer go down; a renewal is queued before the expiry and cannot be sent.
      mode.down = true;
      expect((await agent.tick({ force: true })).action).toBe('failed');
      expect(agent.state.getOutbox().map((e) => e.op)).toEqual(['renew']);

      // Both come back after the expiry; the broker refuses renewals from the bootstrap login.
      clock.now = first.notAfter + 60_000;
      h.clock.offsetMs = clock.now - Date.now();
      mode.down = false;
      mode.renewDenied = true;
      const after = await agent.tick();
      expect(after.action === 'failed' && after.error.code).toBe('reattest_required');
      expect(agent.state.getOutbox()).toEqual([]);
      expect(mode.renewsSeen).toBe(0); // not even tried: MQTT cannot carry it any more
      expect(mode.joinsSeen).toBe(1); // and the spent token is not sent again either
      // Nothing left to resend: the next pass says the same without reaching for the broker.
      expect((await agent.tick()).action).toBe('failed');
      expect(mode.renewsSeen).toBe(0);
      await agent.close();

      // The operator supplies a new token (agent.yaml edited, agent run again): it joins.
      agent = agentWith(await h.token(), 'gw', clock, brokerTransport(mode));
      const rejoined = await agent.tick();
      expect(rejoined.action).toBe('joined');
      expect(agent.state.getIdentity()!.notAfter).toBeGreaterThan(clock.now);
    } finally {
      h.clock.offsetMs = 0;
      await agent.close();
    }
  });

  it('with an https transport too, the queued renewal is resent there once (its answer may be waiting)', async () => {
    const clock = { now: Date.now() };
    const mode = { down: false, renewDenied: false, renewsSeen: 0 };
    const pin = spkiPin(new X509Certificate(h.rootPem));
    const yaml = `ca_pin: ${pin}\ndata_dir: both\nttl: 1h\njoin: { method: token, token: ${await h.token()} }\ntransports:\n  - { type: mqtt, url: "mqtt://broker.test:1883" }\n  - { type: https, url: "https://127.0.0.1:${h.port}" }\n`;
    const https = new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin, timeoutMs: 5_000 });
    let lost = false;
    // The issuer answers the renewal, but the answer is lost on the way back.
    const httpsLossy: IssuerTransport = {
      kind: 'https',
      url: https.url,
      ensureRoot: () => https.ensureRoot(),
      bundle: () => https.bundle(),
      close: () => https.close(),
      post: async (op, env, hooks) => {
        const answer = await https.post(op, env, hooks);
        if (lost) throw new SigilError('issuer_unreachable', 'connection reset');
        return answer;
      },
    };
    const agent = new Agent(parseAgentConfig(yaml, join(tmp, 'both.yaml')), silentLogger(), {
      transports: [brokerTransport(mode), httpsLossy],
      now: () => clock.now,
      state: openAgentState(join(tmp, 'both')),
    });
    try {
      expect((await agent.tick()).action).toBe('joined');
      const first = agent.state.getIdentity()!;
      mode.down = true;
      lost = true;
      expect((await agent.tick({ force: true })).action).toBe('failed'); // answered at the issuer, lost
      expect((await h.ctx.stores.instances.get(first.instanceId))!.generation).toBe(2);
      clock.now = first.notAfter + 60_000;
      h.clock.offsetMs = clock.now - Date.now();
      lost = false;
      mode.down = false;
      mode.renewDenied = true;
      const t = await agent.tick();
      expect(t.action).toBe('renewed');
      expect(agent.state.getIdentity()).toMatchObject({ instanceId: first.instanceId, generation: 2 });
      expect(mode.renewsSeen).toBe(0);
    } finally {
      h.clock.offsetMs = 0;
      await agent.close();
    }
  });
});
