/**
 * The fleet view's transport and agent version (issue #18; server/ops/agent-facts.ts): a join or
 * renewal records the carrier it came on and the version its agent claims, in the instance's
 * facts; a renewal that changes neither writes nothing more (issue #14 counts statements per
 * renewal); a garbage version is refused naming the field; an agent that sends none (one from
 * before the field) is accepted as ever.
 */
import type { IPublishPacket } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { namedSigner } from '../../../src/agent/named-signer.js';
import { createSigner } from '../../../src/keystore/index.js';
import { buildCsr } from '../../../src/pki/csr.js';
import { fromPem, toPem } from '../../../src/pki/pem.js';
import { b64u, signJws, type Jws } from '../../../src/protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../../../src/protocol/messages.js';
import { agentVersionSchema, renewRequestSchema, type RenewRequest } from '../../../src/protocol/requests.js';
import { agentFactsUpdate } from '../../../src/server/ops/agent-facts.js';
import { OPERATIONS } from '../../../src/server/ops/table.js';
import type { TxStores } from '../../../src/server/store/types.js';
import { MqttResponder } from '../../../src/transport/mqtt/responder.js';
import { newRequestId } from '../../../src/util/secret.js';
import { SIGIL_VERSION } from '../../../src/version.js';
import { startIssuer, type Harness, type Identity } from '../../integration/harness.js';

let h: Harness;
beforeEach(async () => {
  h = await startIssuer();
});
afterEach(async () => {
  vi.restoreAllMocks();
  await h?.close();
});

const facts = async (id: string) => (await h.ctx.stores.instances.get(id))!.facts;

/** The next identity from a renewal answer (any carrier's answer is the same signed JWS). */
function nextIdentity(answer: Jws, signer: Identity['signer']): Identity {
  const result = (JSON.parse(b64u.decode(answer.payload).toString('utf8')) as { result: Identity['result'] }).result;
  return { signer, chainPem: result.chain, result };
}

/** Renew `id` through the operation table, as the adapter of `carrier` hands it over. */
async function renewVia(carrier: 'https' | 'mqtt', id: Identity): Promise<Identity> {
  const { envelope, newSigner } = await h.renewEnvelope(id);
  const answer = await OPERATIONS.renew.handle(h.ctx, {
    body: envelope,
    remote: null,
    confidential: carrier === 'https',
    carrier,
  });
  return nextIdentity(answer, newSigner);
}

/** A renew envelope of `id` with the payload changed by `edit`. */
async function renewWith(id: Identity, edit: (p: Record<string, unknown>) => void): Promise<Jws> {
  const payload: RenewRequest & Record<string, unknown> = {
    v: PROTOCOL_VERSION,
    op: 'renew',
    request_id: newRequestId(),
    timestamp: h.ctx.now(),
    ...namedSigner(id.chainPem),
    csr: toPem('CERTIFICATE REQUEST', await buildCsr(createSigner('software').signer)),
    key_storage: 'software',
  };
  edit(payload);
  const x5c = id.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
  return signJws(id.signer, TYP_REQUEST, payload, x5c);
}

/** Count tx.instances.updateFacts calls of every write transaction from now on. */
/**
 * Facts writes inside the issuer's transactions: `n` counts every write of facts (an updateFacts, or
 * a recordIssue that merges facts), `statements` the updateFacts calls (a statement of their own:
 * a renewal must make none, its facts ride on its recordIssue, issue #16).
 */
function countFactWrites(): { n: number; statements: number } {
  const count = { n: 0, statements: 0 };
  const stores = h.ctx.stores;
  const original = stores.withWriteTx.bind(stores);
  vi.spyOn(stores, 'withWriteTx').mockImplementation(((fn: (tx: TxStores) => Promise<unknown>) =>
    original(async (tx) => {
      const update = tx.instances.updateFacts.bind(tx.instances);
      const issue = tx.instances.recordIssue.bind(tx.instances);
      const spied: TxStores = {
        ...tx,
        instances: Object.assign(Object.create(tx.instances) as TxStores['instances'], {
          updateFacts: (...a: Parameters<typeof update>) => {
            count.n++;
            count.statements++;
            return update(...a);
          },
          recordIssue: (...a: Parameters<typeof issue>) => {
            if (a[1].mergeFacts !== undefined) count.n++;
            return issue(...a);
          },
        }),
      };
      return fn(spied);
    })) as typeof stores.withWriteTx);
  return count;
}

describe('recorded facts', () => {
  it('a join over HTTPS records https and the agent version; a renewal over each carrier records it', async () => {
    const joined = await h.join();
    const id = joined.result.instance_id;
    expect(await facts(id)).toMatchObject({ transport: 'https', agent_version: SIGIL_VERSION });
    const second = await renewVia('mqtt', joined);
    expect((await facts(id))['transport']).toBe('mqtt');
    await renewVia('https', second);
    expect(await facts(id)).toMatchObject({ transport: 'https', agent_version: SIGIL_VERSION });
    // And the fleet read model shows them.
    const { rows } = await h.ctx.stores.fleet.page({ now: h.ctx.now(), search: id });
    expect(rows[0]).toMatchObject({ transport: 'https', agentVersion: SIGIL_VERSION });
  });

  it('a real HTTPS renewal records https (the adapter names its carrier)', async () => {
    const joined = await h.join();
    const id = joined.result.instance_id;
    await renewVia('mqtt', joined).then(async (second) => {
      const { envelope } = await h.renewEnvelope(second);
      const res = await h.post('renew', envelope);
      expect(res.status).toBe(200);
    });
    expect((await facts(id))['transport']).toBe('https');
  });

  it('a renewal through the MQTT responder records mqtt (the adapter names its carrier)', async () => {
    const joined = await h.join();
    const { envelope } = await h.renewEnvelope(joined);
    const responder = new MqttResponder({ url: 'mqtt://127.0.0.1:1', ctx: h.ctx });
    const internals = responder as unknown as {
      publish(op: string, topic: string, answer: Jws): Promise<void>;
      handle(topic: string, payload: Buffer, packet: IPublishPacket): Promise<void>;
    };
    const published: Jws[] = [];
    internals.publish = async (_op, _topic, answer) => {
      published.push(answer);
    };
    await internals.handle('sigil/v1/renew', Buffer.from(JSON.stringify(envelope)), {
      properties: {
        responseTopic: `sigil/v1/resp/${joined.result.instance_id}`,
        correlationData: Buffer.from('c'),
      },
    } as unknown as IPublishPacket);
    expect(JSON.parse(b64u.decode(published[0]!.payload).toString('utf8'))).toHaveProperty('result');
    expect((await facts(joined.result.instance_id))['transport']).toBe('mqtt');
  });

  it('a renewal that changes neither carrier nor version writes no facts; a change writes once', async () => {
    const joined = await h.join();
    const id = joined.result.instance_id;
    const writes = countFactWrites();
    const second = await renewVia('https', joined);
    expect(writes.n).toBe(0);
    const third = await renewVia('mqtt', second);
    expect(writes.n).toBe(1);
    const fourth = await renewVia('mqtt', third);
    expect(writes.n).toBe(1);
    const up = await renewWith(fourth, (p) => (p['agent_version'] = '0.2.0'));
    await OPERATIONS.renew.handle(h.ctx, { body: up, remote: null, confidential: false, carrier: 'mqtt' });
    expect(writes.n).toBe(2);
    expect(writes.statements).toBe(0);
    expect(await facts(id)).toMatchObject({ transport: 'mqtt', agent_version: '0.2.0' });
  });

  it('a new agent version is recorded; an agent that sends none (older agents) is accepted and leaves it', async () => {
    const joined = await h.join();
    const id = joined.result.instance_id;
    const up = await renewWith(joined, (p) => (p['agent_version'] = '0.2.0-rc.1'));
    await OPERATIONS.renew.handle(h.ctx, { body: up, remote: null, confidential: true, carrier: 'https' });
    expect((await facts(id))['agent_version']).toBe('0.2.0-rc.1');
  });

  it('an agent without agent_version (before the field) still renews', async () => {
    const joined = await h.join();
    const old = await renewWith(joined, (p) => delete p['agent_version']);
    expect(JSON.parse(b64u.decode(old.payload).toString('utf8'))).not.toHaveProperty('agent_version');
    const res = await h.post('renew', old);
    expect(res.status).toBe(200);
    expect((await facts(joined.result.instance_id))['agent_version']).toBe(SIGIL_VERSION);
  });

  it.each([
    ['too long', 'v'.repeat(65)],
    ['empty', ''],
    ['a control character', '1.0\n'],
    ['non-ASCII', '1.0\u202e'],
    ['not a string', 7],
  ])('an agent_version that is %s is refused with bad_request naming the field', async (_what, value) => {
    const joined = await h.join();
    const bad = await renewWith(joined, (p) => (p['agent_version'] = value));
    const res = await h.post('renew', bad);
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: 'bad_request', message: expect.stringContaining('agent_version') });
    expect((await facts(joined.result.instance_id))['agent_version']).toBe(SIGIL_VERSION);
  });
});

describe('agentFactsUpdate', () => {
  it('returns only what changed, nothing when nothing did or nothing is known', () => {
    expect(agentFactsUpdate({}, {})).toBeUndefined();
    expect(agentFactsUpdate({ transport: 'mqtt', agent_version: '1' }, { carrier: 'mqtt', agentVersion: '1' })).toBe(
      undefined,
    );
    expect(
      agentFactsUpdate({ transport: 'mqtt', agent_version: '1' }, { carrier: 'https', agentVersion: '1' }),
    ).toEqual({ transport: 'https' });
    expect(agentFactsUpdate({ transport: 'mqtt' }, { agentVersion: '2' })).toEqual({ agent_version: '2' });
  });

  it('the schema: 64 printable ASCII characters at most, optional in both requests', () => {
    expect(agentVersionSchema.safeParse('x'.repeat(64)).success).toBe(true);
    expect(agentVersionSchema.safeParse('x'.repeat(65)).success).toBe(false);
    expect(agentVersionSchema.safeParse('1.0 (build ~7)').success).toBe(true);
    expect(renewRequestSchema.shape.agent_version.safeParse(undefined).success).toBe(true);
  });
});
