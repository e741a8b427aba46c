/**
 * Answers are bound to their signer (issue #11, high): each test replays one attack of the
 * adversarial review against a real in-process issuer over HTTPS, and each passed on the code
 * before the fix (the attacker got the answer, or the victim adopted it).
 *
 *  (a) JWT theft: bot `other`, whose role allows no JWT, re-signs bot `gw`'s JWT request payload
 *      with its own SVID and used to get gw's JWT (from the idempotency record) — unaudited.
 *  (b) Identity swap: an attacker holding any SVID re-signs a victim's renewal payload and
 *      delivers it first; the victim's own request then got the attacker's identity for its new
 *      key, and the agent adopted it.
 *  (c) Borrowed refusal: with a locked instance's certificate, a broker obtained an
 *      `instance_locked` refusal bound to the victim's request hash; the victim dropped its
 *      request and was locked later by generation_mismatch.
 */
import { X509Certificate } from 'node:crypto';
import Database from 'better-sqlite3';
import { checkIdentityAnswer } from '../../src/agent/answer-check.js';
import { createRootCa } from '../../src/pki/ca.js';
import { CertificateIssuer } from '../../src/pki/issue.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { buildCredentialRequest } from '../../src/agent/credential-request.js';
import { namedSigner } from '../../src/agent/named-signer.js';
import { SigilError } from '../../src/errors.js';
import { IssuerLink } from '../../src/agent/transports.js';
import { LinkWorkloadIssuer } from '../../src/agent/workload/issuer-client.js';
import { ResponseVerifier } from '../../src/protocol/response-verifier.js';
import { newRequestId } from '../../src/util/secret.js';
import * as z from '../../src/util/zod-mini.js';
import { spkiPin } from '../../src/pki/chain.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { b64u, signJws, type Jws } from '../../src/protocol/jws.js';
import { TYP_REQUEST, type IdentityResult } from '../../src/protocol/messages.js';
import { requestHash } from '../../src/protocol/request-hash.js';
import { verifyResponseOrError } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { handleRenew } from '../../src/server/ops/renew.js';
import { responsePayload, signErrorResponse, signResponse } from '../../src/server/ops/respond.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import type { IssuerTransport } from '../../src/transport/types.js';
import { toSigilError } from '../../src/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { expectRefusal, startIssuer, type Harness, type Identity } from './harness.js';
import { agentStateFor, applyWorkloadPolicy, workloadEnvelope } from './workload-issuer-rig.js';

const POLICY = `
kind: role
name: tokens
spec:
  max_ttl: 1h
  allowed_outputs: [identity, jwt]
  jwt_audiences: [vault]
---
kind: role
name: plain
spec:
  max_ttl: 1h
---
kind: bot
name: gw
spec:
  roles: [tokens]
---
kind: bot
name: other
spec:
  roles: [plain]
`;

let h: Harness;
let tmp: string;
beforeAll(async () => {
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', { yaml: POLICY });
  tmp = mkdtempSync(join(tmpdir(), 'sigil-binding-'));
});
afterAll(async () => {
  await h.close();
  rmSync(tmp, { recursive: true, force: true });
});

const payloadOf = (env: Jws): Record<string, unknown> =>
  JSON.parse(b64u.decode(env.payload).toString('utf8')) as Record<string, unknown>;
const x5c = (id: Identity): Buffer[] => id.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
/** `payload` signed by `by` with its own chain: what anyone holding an SVID can do with a payload it saw. */
const resign = (payload: unknown, by: Identity): Promise<Jws> => signJws(by.signer, TYP_REQUEST, payload, x5c(by));
const refusalsAfter = async (seq: number) =>
  (await h.auditAfter(seq)).map((r) => ({
    action: r.action,
    outcome: r.outcome,
    code: r.code,
    instance: r.instanceId,
  }));

/**
 * A token agent (bot gw) of this issuer whose every request goes through `post` — a broker or
 * anything else in the middle; `https` is the real way to the issuer.
 */
async function agentThrough(
  dataDir: string,
  post: (https: HttpsIssuerClient) => IssuerTransport['post'],
): Promise<Agent> {
  const pin = spkiPin(new X509Certificate(h.rootPem));
  const yaml = `issuer: https://127.0.0.1:${h.port}\nca_pin: ${pin}\ndata_dir: ${dataDir}\njoin: { method: token, token: ${await h.token({ bot: 'gw' })} }\n`;
  const https = new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin, timeoutMs: 5_000 });
  const transport: IssuerTransport = {
    kind: 'https',
    url: https.url,
    ensureRoot: () => https.ensureRoot(),
    bundle: () => https.bundle(),
    close: () => https.close(),
    post: post(https),
  };
  return new Agent(parseAgentConfig(yaml, join(tmp, `${dataDir}.yaml`)), silentLogger(), { transports: [transport] });
}

describe('(a) a credential payload re-signed by another bot', () => {
  it('as is: refused signer_mismatch, audited with the re-signer; no JWT', async () => {
    const gw = await h.join({ token: await h.token({ bot: 'gw' }) });
    const other = await h.join({ token: await h.token({ bot: 'other' }) });
    const asked = await buildCredentialRequest({
      current: gw.signer,
      chainPem: gw.chainPem,
      now: h.ctx.now(),
      fields: { kind: 'jwt', audiences: ['vault'] },
    });
    expect((await h.post('credential', asked.envelope)).status).toBe(200);

    const seq = await h.lastAuditSeq();
    const stolen = await h.post('credential', await resign(payloadOf(asked.envelope), other));
    expectRefusal(stolen, 403, 'signer_mismatch');
    expect(stolen.text).not.toMatch(/"token"|eyJ/);
    expect(await refusalsAfter(seq)).toEqual([
      { action: 'credential', outcome: 'refused', code: 'signer_mismatch', instance: other.result.instance_id },
    ]);
  });

  it('naming itself but reusing the request id: refused request_id_conflict, audited; no JWT', async () => {
    const gw = await h.join({ token: await h.token({ bot: 'gw' }) });
    const other = await h.join({ token: await h.token({ bot: 'other' }) });
    const asked = await buildCredentialRequest({
      current: gw.signer,
      chainPem: gw.chainPem,
      now: h.ctx.now(),
      fields: { kind: 'jwt', audiences: ['vault'] },
    });
    expect((await h.post('credential', asked.envelope)).status).toBe(200);

    const seq = await h.lastAuditSeq();
    const stolen = await h.post(
      'credential',
      await resign({ ...payloadOf(asked.envelope), ...namedSigner(other.chainPem) }, other),
    );
    expectRefusal(stolen, 409, 'request_id_conflict');
    expect(JSON.parse(stolen.text).message).toMatch(/another signer/);
    expect(await refusalsAfter(seq)).toEqual([
      { action: 'credential', outcome: 'refused', code: 'request_id_conflict', instance: other.result.instance_id },
    ]);
    // The rightful signer still gets its stored answer.
    expect((await h.post('credential', asked.envelope)).status).toBe(200);
  });
});

describe('(b) a renewal payload re-signed by another identity', () => {
  it('as is, delivered first: refused signer_mismatch; the victim then renews as itself', async () => {
    const victim = await h.join({ token: await h.token({ bot: 'gw' }) });
    const attacker = await h.join({ token: await h.token({ bot: 'other' }) });
    const { envelope, newSigner } = await h.renewEnvelope(victim);
    const seq = await h.lastAuditSeq();
    expectRefusal(await h.post('renew', await resign(payloadOf(envelope), attacker)), 403, 'signer_mismatch');
    expect(await refusalsAfter(seq)).toEqual([
      { action: 'renew', outcome: 'refused', code: 'signer_mismatch', instance: attacker.result.instance_id },
    ]);
    expect((await h.ctx.stores.instances.get(attacker.result.instance_id))!.generation).toBe(1);

    const mine = h.identityFrom(
      await h.post('renew', envelope),
      'renew',
      payloadOf(envelope).request_id as string,
      newSigner,
    );
    expect(mine.result).toMatchObject({
      instance_id: victim.result.instance_id,
      spiffe_id: victim.result.spiffe_id,
      generation: 2,
    });
  });

  it('the agent refuses a renewal answer to another signer (request_hash) or for another instance (answer_mismatch), and keeps its identity and request', async () => {
    const attacker = await h.join({ token: await h.token({ bot: 'other' }) });
    let hostile: 'resign' | 'rebind' | undefined;
    // A broker in the middle: it re-signs the victim's payload with the attacker's SVID (naming
    // the attacker, so the issuer answers it) and hands the issuer's answer to the victim. With
    // 'rebind' the answer is also re-bound to the victim's exact request and signed with the
    // issuer's key — what only a faulty issuer could send — so that the agent's own check of the
    // answer's content is what stands.
    const agent = await agentThrough('victim', (https) => async (op, env, hooks) => {
      if (!hostile || op !== 'renew') return https.post(op, env, hooks);
      const answer = (await https.post(
        'renew',
        await resign({ ...payloadOf(env), ...namedSigner(attacker.chainPem) }, attacker),
      )) as Jws;
      if (hostile === 'resign') return answer;
      const p = JSON.parse(b64u.decode(answer.payload).toString('utf8')) as Record<string, unknown>;
      return signResponse(h.ctx, JSON.stringify({ ...p, request_hash: requestHash(env) }));
    });
    try {
      const joined = await agent.tick();
      expect(joined.action).toBe('joined');
      const before = agent.state.getIdentity()!;
      hostile = 'resign';
      const swapped = await agent.tick({ force: true });
      expect(swapped.action).toBe('failed');
      expect((swapped as { error: SigilError }).error.code).toBe('response_invalid');
      expect((swapped as { error: SigilError }).error.message).toMatch(/request_hash differs/);
      expect(agent.state.getIdentity()).toEqual(before);
      hostile = 'rebind';
      const rebound = await agent.tick();
      expect(rebound.action).toBe('failed');
      expect((rebound as { error: SigilError }).error.code).toBe('answer_mismatch');
      expect((rebound as { error: SigilError }).error.message).toMatch(/would change this agent's identity/);
      expect(agent.state.getIdentity()).toEqual(before);
      expect(agent.state.getStatus().lastError).toMatch(/^answer_mismatch/);
      // The attacker used the request id first: the victim's resend is refused, then a fresh request renews it as itself.
      hostile = undefined;
      const conflict = await agent.tick();
      expect(conflict.action === 'failed' && conflict.error.code).toBe('request_id_conflict');
      const renewed = await agent.tick({ force: true });
      expect(renewed.action).toBe('renewed');
      expect(agent.state.getIdentity()).toMatchObject({
        instanceId: before.instanceId,
        spiffeId: before.spiffeId,
        generation: 2,
      });
    } finally {
      await agent.close();
    }
  });

  it('the agent refuses a verified join answer that certifies another key (answer_mismatch)', async () => {
    const someoneElse = await h.join({ token: await h.token({ bot: 'gw' }) });
    // Whatever goes wrong upstream, an answer for this request id carrying another key's certificate.
    const forged = (env: Jws): Jws =>
      signResponse(
        h.ctx,
        responsePayload(
          h.ctx,
          'join',
          payloadOf(env).request_id as string,
          someoneElse.result satisfies IdentityResult,
        ),
      );
    const agent = await agentThrough('joiner', () => async (_op, env) => forged(env));
    try {
      const t = await agent.tick();
      expect(t.action === 'failed' && t.error.code).toBe('answer_mismatch');
      expect(t.action === 'failed' && t.error.message).toMatch(/certifies another key/);
      expect(agent.state.getIdentity()).toBeUndefined();
      expect(agent.state.getOutbox()).toHaveLength(1); // kept: the real answer may still come
    } finally {
      await agent.close();
    }
  });

  it('the agent refuses an answer whose certificate is not the one it describes (answer_mismatch)', async () => {
    // The real answer, with the stated serial and SPIFFE ID changed and signed again by the issuer key.
    const agent = await agentThrough('described', (https) => async (_op, env) => {
      const real = payloadOf((await https.post('join', env)) as Jws);
      const r = real.result as IdentityResult;
      return signResponse(
        h.ctx,
        responsePayload(h.ctx, 'join', real.request_id as string, {
          ...r,
          serial: 'ab'.repeat(16),
          spiffe_id: r.spiffe_id.replace(/[^/]+$/, 'someone-else'),
        }),
      );
    });
    try {
      const t = await agent.tick();
      expect(t.action === 'failed' && t.error.code).toBe('answer_mismatch');
      expect(t.action === 'failed' && t.error.message).toMatch(/is not the one it describes/);
      expect(agent.state.getIdentity()).toBeUndefined();
    } finally {
      await agent.close();
    }
  });
});

describe('(c) a refusal earned by another signer', () => {
  it.each([
    ['as is', 'signer_mismatch', false],
    ['naming itself', 'instance_locked', true],
  ])(
    "a locked instance re-signing the victim's payload (%s) gets a refusal (%s) the victim does not accept",
    async (_how, code, rename) => {
      const victim = await h.join({ token: await h.token({ bot: 'gw' }) });
      const locked = await h.join({ token: await h.token({ bot: 'gw' }) });
      await runAdminOp(h.ctx.stores, 'lock', { target: locked.result.instance_id }, h.ctx.now());
      const { envelope } = await h.renewEnvelope(victim);
      const requestId = payloadOf(envelope).request_id as string;
      const borrowed = await resign(
        { ...payloadOf(envelope), ...(rename ? namedSigner(locked.chainPem) : {}) },
        locked,
      );
      // What the MQTT responder does with it: decide, then sign the refusal bound to what it received.
      const e = await handleRenew(h.ctx, borrowed, 'test').then(
        () => {
          throw new Error('the locked instance was answered');
        },
        (err: unknown) => toSigilError(err),
      );
      expect(e.code).toBe(code);
      const refusal = signErrorResponse(h.ctx, 'renew', requestId, requestHash(borrowed), e);
      // The victim checks the refusal against the request it sent: not bound to it, so ignored.
      let seen: SigilError | undefined;
      try {
        verifyResponseOrError(refusal, 'renew', requestId, requestHash(envelope), h.rootPem);
      } catch (err) {
        seen = toSigilError(err);
      }
      expect(seen?.code).toBe('response_invalid');
      expect(seen?.message).toMatch(/not bound to request/);
      // And the victim's own request is answered normally.
      expect((await h.post('renew', envelope)).status).toBe(200);
    },
  );

  it('the request hash covers the signer: the same payload under two signers hashes differently', async () => {
    const a = await h.join({ token: await h.token({ bot: 'gw' }) });
    const b = await h.join({ token: await h.token({ bot: 'gw' }) });
    const { envelope } = await h.renewEnvelope(a);
    expect(requestHash(await resign(payloadOf(envelope), b))).not.toBe(requestHash(envelope));
    expect(requestHash(envelope)).toBe(requestHash({ protected: envelope.protected, payload: envelope.payload }));
  });
});

describe('(d) a success answer earned by another signer under the victim’s request id', () => {
  it("the victim's Workload API refuses the entries listed for a peer's node (request_hash differs)", async () => {
    // A broker holding a peer bot's identity sees gw's request and sends the issuer its own
    // request under the same id first; the issuer's signed answer names no node, only entries.
    await applyWorkloadPolicy(h);
    const gw = await h.join({ token: await h.token({ bot: 'gw' }) });
    const db = await h.join({ token: await h.token({ bot: 'db' }) });
    const viaHttps: IssuerTransport = {
      kind: 'https',
      url: 'test',
      ensureRoot: async () => h.rootPem,
      bundle: async () => (await h.request('GET', '/v1/bundle')).json,
      close: () => undefined,
      post: async (op, env) => (await h.post(op, env)).json,
    };
    const gwState = agentStateFor(h, gw);
    try {
      const honest = new LinkWorkloadIssuer({
        link: new IssuerLink([viaHttps]),
        state: gwState.state,
        now: () => h.ctx.now(),
      });
      expect((await honest.fetchEntries()).map((e) => e.id)).toEqual(['web']); // the baseline
      const frontRunning: IssuerTransport = {
        ...viaHttps,
        kind: 'mqtt',
        post: async (op, env) => {
          const id = (JSON.parse(b64u.decode(env.payload).toString('utf8')) as { request_id: string }).request_id;
          const own = await workloadEnvelope(db, { action: 'entries' }, h.ctx.now(), id);
          const answer = (await h.post(op, own.envelope)).json;
          // The answer really is the issuer's, to the victim's request id, listing db's entries.
          expect(verifyResponseOrError(answer, 'workload', id, requestHash(own.envelope), h.rootPem)).toBeDefined();
          return answer;
        },
      };
      const victim = new LinkWorkloadIssuer({
        link: new IssuerLink([frontRunning]),
        state: gwState.state,
        now: () => h.ctx.now(),
      });
      const e = await victim.fetchEntries().then(
        (entries) => new Error(`accepted the peer's entries: ${JSON.stringify(entries.map((x) => x.id))}`),
        (err: unknown) => toSigilError(err),
      );
      expect(e).toBeInstanceOf(SigilError);
      expect((e as SigilError).message).toMatch(
        /response answers another request under the id .* \(request_hash differs\)/,
      );
    } finally {
      gwState.close();
    }
  });

  it('an answer without request_hash (an issuer from before the binding) is still accepted; a malformed one is not', async () => {
    const requestId = newRequestId();
    const result = { anything: true };
    const schema = z.object({
      v: z.literal(1),
      op: z.literal('attest'),
      request_id: z.string(),
      result: z.object({ anything: z.boolean() }),
    });
    const verifier = new ResponseVerifier();
    verifier.know({ attest: schema as never });
    const old = signResponse(h.ctx, responsePayload(h.ctx, 'attest', requestId, result));
    expect(verifier.responseOrError(old, 'attest', requestId, 'ab'.repeat(32), h.rootPem).result).toEqual(result);
    const bound = signResponse(h.ctx, responsePayload(h.ctx, 'attest', requestId, result, 'ab'.repeat(32)));
    expect(verifier.responseOrError(bound, 'attest', requestId, 'ab'.repeat(32), h.rootPem).result).toEqual(result);
    expect(() => verifier.responseOrError(bound, 'attest', requestId, 'cd'.repeat(32), h.rootPem)).toThrow(
      /request_hash differs/,
    );
    const odd = JSON.stringify({ ...JSON.parse(responsePayload(h.ctx, 'attest', requestId, result)), request_hash: 7 });
    expect(() =>
      verifier.responseOrError(signResponse(h.ctx, odd), 'attest', requestId, 'ab'.repeat(32), h.rootPem),
    ).toThrow(/request_hash differs/);
  });
});

/** The database writer's tool: read the answer stored for `requestId` (issuer.db of `dir`). */
interface StoredRow {
  request_id: string;
  request_hash: string;
  signer: string;
  op: string;
  response: string;
  created_at: number;
}
function readRow(db: Database.Database, requestId: string): StoredRow {
  return db.prepare('SELECT * FROM idempotency WHERE request_id = ?').get(requestId) as StoredRow;
}
const recordOf = (r: StoredRow) => ({
  requestId: r.request_id,
  requestHash: r.request_hash,
  signer: r.signer,
  op: r.op,
  response: r.response,
  createdAt: r.created_at,
});

/**
 * Rewrite the stored answer of `requestId`: `edit` gets the answer as first sent and returns the
 * forged one. `sealKey`: re-seal it as the issuer would (a writer who also holds audit.key, e.g.
 * a peer issuer's host); without it the forged text is stored unsealed.
 */
function rewriteStoredAnswer(
  requestId: string,
  edit: (p: { result: IdentityResult }) => unknown,
  sealKey?: Harness['ctx']['answerSeal'],
): void {
  const db = new Database(join(h.dir, 'issuer.db'));
  try {
    const row = readRow(db, requestId);
    const text = h.ctx.answerSeal.open(recordOf(row), h.ctx.now());
    const forged = JSON.stringify(edit(JSON.parse(h.ctx.storedAnswers.expand(text)) as { result: IdentityResult }));
    const stored = sealKey ? sealKey.seal(recordOf(row), forged) : forged;
    db.prepare('UPDATE idempotency SET response = ? WHERE request_id = ?').run(stored, requestId);
  } finally {
    db.close();
  }
}

describe('(e) a stored answer rewritten in the database (the database writer)', () => {
  it('the issuer refuses to replay a rewritten or unsealed row (stored_answer_invalid), and answers again once it is restored', async () => {
    // Whoever can write the issuer's database but not read audit.key: the row's seal
    // (server/ops/answer-seal.ts) no longer matches, whichever column they change.
    const id = await h.join({ token: await h.token({ bot: 'gw' }) });
    const { envelope } = await h.renewEnvelope(id);
    const requestId = payloadOf(envelope).request_id as string;
    const first = await h.post('renew', envelope);
    expect(first.status).toBe(200);
    const db = new Database(join(h.dir, 'issuer.db'));
    const genuine = readRow(db, requestId);
    const set = (col: keyof StoredRow, value: string | number): void => {
      db.prepare(`UPDATE idempotency SET ${col} = ? WHERE request_id = ?`).run(value, requestId);
    };
    const refused = async (why: RegExp): Promise<void> => {
      const res = await h.post('renew', envelope);
      expect(res.status).toBe(500);
      expect(res.json).toMatchObject({ code: 'stored_answer_invalid', retryable: true });
      expect((res.json as { message: string }).message).toMatch(why);
    };
    try {
      // The answer text: a later renew_after, sealed MAC kept.
      const text = genuine.response.slice(65);
      set('response', genuine.response.slice(0, 65) + text.replace(/"renew_after":\d+/, '"renew_after":9999999999999'));
      await refused(/seal .* does not match its row/);
      // The time it was stored (the MAC covers it, so a row cannot be dated into the legacy window).
      set('response', genuine.response);
      set('created_at', genuine.created_at - 1);
      await refused(/does not match/);
      set('created_at', genuine.created_at);
      // The answer stored without a seal, as rows from before sealing were.
      set('response', text);
      await refused(/carries no seal/);
      // Restored: the same request is answered byte for byte.
      set('response', genuine.response);
      const again = await h.post('renew', envelope);
      expect(again.status).toBe(200);
      expect((again.json as Jws).payload).toBe((first.json as Jws).payload);
    } finally {
      db.close();
    }
  });

  it('one who also holds audit.key: the issuer replays it signed, but the agent refuses a leaf that does not chain to the pinned root, or a foreign bundle root', async () => {
    // A writer who can also seal (audit.key from a peer issuer's host) has the issuer replay the
    // forged answer byte for byte, signed, when the agent resends that request (a lost answer).
    // The agent's own checks are the last line: a leaf of a CA of their own for the agent's
    // (public) new key, and their root as the workloads' bundle.
    const id = await h.join({ token: await h.token({ bot: 'gw' }) });
    const { envelope } = await h.renewEnvelope(id);
    const requestId = payloadOf(envelope).request_id as string;
    const first = await h.post('renew', envelope);
    expect(first.status).toBe(200);
    const answered = JSON.parse(b64u.decode((first.json as Jws).payload).toString('utf8')) as {
      result: IdentityResult;
    };
    const evil = createRootCa({ trustDomain: 'example.org', commonName: 'evil' });
    const evilPem = toPem('CERTIFICATE', evil.certDer);
    const legit = new X509Certificate(answered.result.chain[0]!);
    const forgedLeaf = new CertificateIssuer({ caCertDer: evil.certDer, caKey: evil.key }).issueSvid({
      serial: Buffer.from(legit.serialNumber, 'hex'),
      spkiDer: legit.publicKey.export({ type: 'spki', format: 'der' }),
      spiffeId: answered.result.spiffe_id,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      subject: [],
    });
    const plant = (result: Partial<IdentityResult>): void =>
      rewriteStoredAnswer(requestId, (p) => ({ ...p, result: { ...answered.result, ...result } }), h.ctx.answerSeal);
    const trust = { rootPem: h.rootPem, caPin: spkiPin(new X509Certificate(h.rootPem)), at: new Date(h.ctx.now()) };
    const replayed = async (): Promise<IdentityResult> => {
      const res = await h.post('renew', envelope);
      expect(res.status).toBe(200);
      return verifyResponseOrError(res.json, 'renew', requestId, requestHash(envelope), h.rootPem).result;
    };
    const check = (r: IdentityResult): unknown => {
      try {
        checkIdentityAnswer('renew', JSON.stringify(envelope), r, undefined, trust);
        return 'accepted';
      } catch (e) {
        return toSigilError(e);
      }
    };
    // The genuine answer passes the check (so the refusals below are the forgeries).
    expect(check(answered.result)).toBe('accepted');

    plant({ chain: [toPem('CERTIFICATE', forgedLeaf), evilPem] });
    const e1 = check(await replayed()) as SigilError;
    expect(e1.code).toBe('answer_mismatch');
    expect(e1.message).toMatch(/does not chain to the pinned root/);

    plant({ bundle: [evilPem] });
    const e2 = check(await replayed()) as SigilError;
    expect(e2.code).toBe('answer_mismatch');
    expect(e2.message).toMatch(/trust bundle holds a root other than the pinned one \(entry 0/);

    plant({ bundle: [h.rootPem, evilPem] });
    expect((check(await replayed()) as SigilError).message).toMatch(/entry 1/);
  });

  it('a real agent whose renewal answer was lost refuses the rewritten answer on resend (rewritten without the key, or with it), and keeps its identity and request', async () => {
    let lose = false;
    let lostId: string | undefined;
    const agent = await agentThrough('planted', (https) => async (op, env, hooks) => {
      const body = await https.post(op, env, hooks);
      if (op === 'renew' && lose) {
        lose = false;
        lostId = payloadOf(env).request_id as string;
        throw new SigilError('issuer_unreachable', 'connection reset (the answer was lost)');
      }
      return body;
    });
    try {
      expect((await agent.tick()).action).toBe('joined');
      const before = agent.state.getIdentity()!;
      lose = true;
      expect((await agent.tick({ force: true })).action).toBe('failed');
      // The database writer rewrites the stored answer: its own root as the bundle.
      const evilPem = toPem('CERTIFICATE', createRootCa({ trustDomain: 'example.org', commonName: 'evil' }).certDer);
      const evilBundle = (p: { result: IdentityResult }) => ({ ...p, result: { ...p.result, bundle: [evilPem] } });
      const db = new Database(join(h.dir, 'issuer.db'));
      const genuine = readRow(db, lostId!).response;
      db.close();
      // Without audit.key: the issuer refuses to replay it.
      rewriteStoredAnswer(lostId!, evilBundle);
      const refused = await agent.tick();
      expect(refused.action === 'failed' && refused.error.code).toBe('stored_answer_invalid');
      expect(agent.state.getIdentity()).toEqual(before);
      expect(agent.state.getOutbox()).toHaveLength(1);
      // With it (re-sealed, from the genuine row): the issuer replays it, the agent refuses it.
      const restore = (): void => {
        const back = new Database(join(h.dir, 'issuer.db'));
        back.prepare('UPDATE idempotency SET response = ? WHERE request_id = ?').run(genuine, lostId);
        back.close();
      };
      restore();
      rewriteStoredAnswer(lostId!, evilBundle, h.ctx.answerSeal);
      const resent = await agent.tick();
      expect(resent.action === 'failed' && resent.error.code).toBe('answer_mismatch');
      expect(agent.state.getIdentity()).toEqual(before);
      expect(agent.state.getBundle()!.rootsPem).toEqual([h.rootPem]);
      expect(agent.state.getOutbox()).toHaveLength(1);
      // Restored: the resend gets the genuine answer and the agent moves on.
      restore();
      expect((await agent.tick()).action).toBe('renewed');
      expect(agent.state.getOutbox()).toHaveLength(0);
    } finally {
      await agent.close();
    }
  });
});
