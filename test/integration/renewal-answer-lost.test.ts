/**
 * A renewal whose answer is lost (a broker dropping it, or just the network) leaves the issuer one
 * generation ahead of the agent until the agent resends. Meanwhile nothing else may be signed with
 * the old identity: the issuer would take it for a stolen copy and lock the instance (review of
 * issue #16). Real agent, real mosquitto between it and the issuer; the broker side drops one
 * renewal answer. The Workload API's issuer client waits (`renewal_pending`), the resent renewal
 * is answered, and the Workload API works again with the new identity.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { IssuerLink } from '../../src/agent/transports.js';
import { LinkWorkloadIssuer } from '../../src/agent/workload/issuer-client.js';
import { SigilError } from '../../src/errors.js';
import { spkiPin } from '../../src/pki/chain.js';
import { MqttIssuerClient } from '../../src/transport/mqtt/client.js';
import { MqttResponder } from '../../src/transport/mqtt/responder.js';
import type { IssuerTransport } from '../../src/transport/types.js';
import { silentLogger } from '../../src/util/log.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { startIssuer, type Harness } from './harness.js';
import { applyWorkloadPolicy } from './workload-issuer-rig.js';

let h: Harness;
let broker: Broker;
let responder: MqttResponder;
const work = mkdtempSync(join(tmpdir(), 'sigil-answer-lost-'));

beforeAll(async () => {
  h = await startIssuer();
  await applyWorkloadPolicy(h);
  broker = await startMosquitto(join(work, 'broker'));
  responder = new MqttResponder({ ctx: h.ctx, url: broker.issuerUrl, clientId: 'sigil-issuer-answer-lost' });
  await responder.start();
}, 60_000);
afterAll(async () => {
  await responder?.stop();
  await broker?.stop();
  await h?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('a lost renewal answer', () => {
  it('the Workload API waits for the resent renewal instead of signing with the replaced identity (no lock)', async () => {
    const dataDir = join(work, 'agent');
    const pin = spkiPin(new X509Certificate(h.rootPem));
    const yaml = `issuer: https://127.0.0.1:${h.port}\nca_pin: ${pin}\ndata_dir: ${dataDir}\njoin: { method: token, token: ${await h.token()} }\n`;
    let agentRef: Agent | undefined;
    const mqtt = new MqttIssuerClient({
      url: broker.url,
      pin: h.ctx.ca.pin,
      rootPem: h.rootPem,
      timeoutMs: 10_000,
      session: (op) => {
        const id = agentRef?.state.getIdentity();
        return op === 'join' || !id
          ? { clientId: 'sigil-answer-lost-boot', responseId: 'bootstrap/answerlost0123456' }
          : { clientId: `sigil-${id.instanceId}`, responseId: id.instanceId };
      },
    });
    // The broker carries the renewal to the issuer and drops its answer, once.
    let dropRenewAnswer = false;
    const lossy: IssuerTransport = {
      kind: 'mqtt',
      url: mqtt.url,
      ensureRoot: () => mqtt.ensureRoot(),
      bundle: () => mqtt.bundle(),
      close: () => mqtt.close(),
      post: async (op, env, hooks) => {
        const body = await mqtt.post(op, env, hooks);
        if (op === 'renew' && dropRenewAnswer) {
          dropRenewAnswer = false;
          throw new SigilError('issuer_unreachable', 'no answer (dropped by the broker)');
        }
        return body;
      },
    };
    const agent = new Agent(parseAgentConfig(yaml, join(work, 'agent.yaml')), silentLogger(), {
      transports: [lossy],
    });
    agentRef = agent;
    try {
      expect((await agent.tick()).action).toBe('joined');
      const instanceId = agent.state.getIdentity()!.instanceId;

      dropRenewAnswer = true;
      expect((await agent.tick({ force: true })).action).toBe('failed');
      expect(agent.state.getOutbox()).toHaveLength(1); // queued for its resend
      expect((await h.ctx.stores.instances.get(instanceId))!.generation).toBe(2); // the issuer committed it

      const workloads = new LinkWorkloadIssuer({
        link: new IssuerLink([lossy]),
        state: agent.state,
        now: () => h.ctx.now(),
      });
      const before = await h.counts();
      const waited = await workloads.fetchEntries().then(
        () => 'answered',
        (e: unknown) => (e as SigilError).code,
      );
      expect(waited).toBe('renewal_pending');
      expect((await h.counts()).audit).toBe(before.audit); // nothing was sent
      expect((await h.ctx.stores.instances.get(instanceId))!.locked).toBe(false);

      // The resend gets the stored answer; then the Workload API signs with generation 2.
      expect((await agent.tick({ force: true })).action).toBe('renewed');
      expect(agent.state.getIdentity()!.generation).toBe(2);
      expect((await workloads.fetchEntries()).map((e) => e.id)).toContain('web');
      expect((await h.ctx.stores.instances.get(instanceId))!.locked).toBe(false);
    } finally {
      await agent.close();
    }
  });
});
