/**
 * The `workload` operation over a real mosquitto broker (issue #17): the operation table's MQTT
 * adapter serves it with no code of its own, the agent's client sends it over its MQTT transport,
 * and the broker — untrusted for integrity and confidentiality — sees no JWT-SVID in clear: a JWT
 * request without an answer key is refused (answer_key_required), and every refusal comes back
 * signed and bound to its request.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IssuerLink } from '../../src/agent/transports.js';
import { LinkWorkloadIssuer } from '../../src/agent/workload/issuer-client.js';
import { SigilError } from '../../src/errors.js';
import { requestHash } from '../../src/protocol/request-hash.js';
import { verifyResponseOrError } from '../../src/protocol/verify-response.js';
import { MqttIssuerClient } from '../../src/transport/mqtt/client.js';
import { MqttResponder } from '../../src/transport/mqtt/responder.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { startIssuer, type Harness, type Identity } from './harness.js';
import { agentStateFor, applyWorkloadPolicy, csrPem, workloadEnvelope } from './workload-issuer-rig.js';

let h: Harness;
let broker: Broker;
let responder: MqttResponder;
let gw: Identity;
let db: Identity;
const work = mkdtempSync(join(tmpdir(), 'sigil-wl-mqtt-'));
const cleanups: Array<() => Promise<void> | void> = [];

/** The agent's MQTT transport as a joined agent uses it: its own client id and response topic. */
function mqttFor(id: Identity): MqttIssuerClient {
  const t = new MqttIssuerClient({
    url: broker.url,
    pin: h.ctx.ca.pin,
    rootPem: h.rootPem,
    timeoutMs: 10_000,
    session: () => ({ clientId: `sigil-${id.result.instance_id}`, responseId: id.result.instance_id }),
  });
  cleanups.push(() => t.close());
  return t;
}

function clientFor(id: Identity): LinkWorkloadIssuer {
  const agent = agentStateFor(h, id);
  cleanups.push(agent.close);
  return new LinkWorkloadIssuer({ link: new IssuerLink([mqttFor(id)]), state: agent.state, now: () => h.ctx.now() });
}

beforeAll(async () => {
  h = await startIssuer();
  await applyWorkloadPolicy(h);
  gw = await h.join();
  db = await h.join({ token: await h.token({ bot: 'db' }) });
  broker = await startMosquitto(join(work, 'broker'));
  responder = new MqttResponder({ ctx: h.ctx, url: broker.issuerUrl, clientId: 'sigil-issuer-wl-test' });
  await responder.start();
}, 60_000);
afterAll(async () => {
  for (const c of cleanups) await c();
  await responder?.stop();
  await broker?.stop();
  await h?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('workload over MQTT', () => {
  it('lists the entries of this node, signs its X.509-SVID and a sealed JWT-SVID, and serves the bundles', async () => {
    const client = clientFor(gw);
    expect((await client.fetchEntries()).map((e) => [e.id, e.spiffeId])).toEqual([['web', 'spiffe://example.org/web']]);
    const svid = await client.signX509('web', await csrPem());
    expect(new X509Certificate(svid.chainPem).subjectAltName).toBe('URI:spiffe://example.org/web, DNS:web.internal');
    const rec = await h.ctx.stores.certificates.get(svid.serial);
    expect(rec).toMatchObject({ kind: 'workload-x509-svid', instanceId: gw.result.instance_id });
    const jwt = await client.signJwt('web', ['vault']);
    expect(jwt.token.split('.')).toHaveLength(3);
    const bundles = await client.fetchBundles();
    expect(bundles.x509RootsPem).toBe(h.rootPem.trim() + '\n');
    expect((JSON.parse(bundles.jwtJwks) as { keys: Array<{ kid: string }> }).keys[0]!.kid).toBe(
      h.ctx.credentials.jwt.kid,
    );
  });

  it('a peer bot asking for another node’s entry gets a signed refusal: workload_not_for_node, audited once', async () => {
    const seq = await h.lastAuditSeq();
    const before = await h.counts();
    const err = await clientFor(db)
      .signX509('web', await csrPem())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SigilError);
    expect((err as SigilError).code).toBe('workload_not_for_node');
    expect((await h.counts()).certificates).toBe(before.certificates);
    expect((await h.auditAfter(seq)).map((r) => [r.action, r.outcome, r.code, r.remote])).toEqual([
      ['workload', 'refused', 'workload_not_for_node', `mqtt:sigil/v1/resp/${db.result.instance_id}`],
    ]);
  });

  it('a JWT-SVID asked for without an answer key is refused (answer_key_required): the broker reads answers', async () => {
    const before = await h.counts();
    const { envelope, requestId } = await workloadEnvelope(
      gw,
      { action: 'jwt', entry: 'web', audience: ['vault'] },
      h.ctx.now(),
    );
    const body = await mqttFor(gw).post('workload', envelope);
    const err = (() => {
      try {
        verifyResponseOrError(body, 'workload', requestId, requestHash(envelope), h.rootPem);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(SigilError);
    expect((err as SigilError).code).toBe('answer_key_required');
    expect((await h.counts()).certificates).toBe(before.certificates);
  });
});
