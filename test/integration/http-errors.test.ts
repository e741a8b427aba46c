/**
 * Every HTTPS endpoint's answer to bad input, against a real in-process issuer: the documented
 * status and {code, message, retryable} body, no stack trace, and — for join — that a refusal
 * changes nothing (no instance, no certificate, the token is still usable) and is audited.
 * Renewal refusals live in http-errors-renew.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SoftwareSigner } from '../../src/keystore/software.js';
import { buildCsr } from '../../src/pki/csr.js';
import { toPem } from '../../src/pki/pem.js';
import { TYP_REQUEST, TYP_RESPONSE } from '../../src/protocol/messages.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { initDataDir, paths } from '../../src/server/data-dir.js';
import {
  expectRefusal,
  expectRefused,
  hmacJws,
  joinPayload,
  rawJws,
  sign,
  startIssuer,
  tokenEvidence,
  type Harness,
} from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startIssuer();
});
afterAll(async () => {
  await h?.close();
});

const JSON_CT = { 'content-type': 'application/json' };

describe.each(['join', 'renew'])('POST /v1/%s body handling', (op) => {
  const post = (body: string | undefined, headers: Record<string, string> = JSON_CT) =>
    h.request('POST', `/v1/${op}`, { ...(body !== undefined ? { body } : {}), headers });

  it('non-JSON body → 400 malformed_json', async () => {
    expectRefusal(await post('{"protected": '), 400, 'malformed_json');
    expectRefusal(await post('not json at all'), 400, 'malformed_json');
  });

  it('empty body → 400 (malformed_json with a JSON content type, bad_request without a body)', async () => {
    expectRefusal(await post(''), 400, 'malformed_json');
    expectRefusal(await post(undefined, {}), 400, 'bad_request');
  });

  it('body over 64 KiB → 413 body_too_large', async () => {
    const res = await post(JSON.stringify({ protected: 'a'.repeat(64 * 1024), payload: '', signature: '' }));
    expectRefusal(res, 413, 'body_too_large');
  });

  it('a body of exactly the limit is parsed (and refused on content, not size)', async () => {
    const filler = 'a'.repeat(64 * 1024 - JSON.stringify({ protected: '', payload: '', signature: '' }).length);
    const res = await post(JSON.stringify({ protected: filler, payload: '', signature: '' }));
    expect(res.status).toBe(400);
    expect(res.json.code).not.toBe('body_too_large');
  });

  it('content-type application/xml → 415 unsupported_media_type', async () => {
    expectRefusal(await post('<jws/>', { 'content-type': 'application/xml' }), 415, 'unsupported_media_type');
    expectRefusal(
      await post('{}', { 'content-type': 'application/x-www-form-urlencoded' }),
      415,
      'unsupported_media_type',
    );
  });

  it('content-type text/plain → 415 unsupported_media_type', async () => {
    expectRefusal(
      await post('{"protected":"","payload":"","signature":""}', { 'content-type': 'text/plain' }),
      415,
      'unsupported_media_type',
    );
  });

  it('JSON that is not a JWS → 400 bad_request', async () => {
    for (const body of ['{"hello":"world"}', '42', 'null', '[]', '{"protected":"a+b","payload":"","signature":""}']) {
      expectRefusal(await post(body), 400, 'bad_request');
    }
  });
});

describe('POST /v1/join refusals change nothing', () => {
  let tok: string;
  beforeAll(async () => {
    tok = await h.token();
  });
  const T = () => ({ token: tok });

  it('alg none and HS256 → 400 bad_request', async () => {
    const { payload, signer } = await joinPayload({}, T());
    await expectRefused(h, 'join', rawJws({ alg: 'none', typ: TYP_REQUEST }, payload), 400, 'bad_request');
    const hs = hmacJws({ alg: 'HS256', typ: TYP_REQUEST }, payload, signer.publicKeySpki());
    const res = await expectRefused(h, 'join', hs, 400, 'bad_request');
    expect(res.json.message).toMatch(/ES256 or ES384/);
  });

  it('wrong or missing typ → 400 bad_request', async () => {
    const { payload, signer } = await joinPayload({}, T());
    await expectRefused(h, 'join', await sign(signer, payload, undefined, TYP_RESPONSE), 400, 'bad_request');
    const noTyp = await sign(signer, payload);
    const hdr = JSON.parse(Buffer.from(noTyp.protected, 'base64url').toString());
    await expectRefused(h, 'join', rawJws({ alg: hdr.alg }, payload, noTyp.signature), 400, 'bad_request');
  });

  it('payload v:2 → 400 unsupported_version; payload not JSON → 400 bad_request', async () => {
    const { payload, signer } = await joinPayload({ v: 2 }, T());
    const res = await expectRefused(h, 'join', await sign(signer, payload), 400, 'unsupported_version');
    expect(res.json.message).toMatch(/v1/);
    await expectRefused(h, 'join', rawJws({ alg: 'ES256', typ: TYP_REQUEST }, 'not json', 'AAAA'), 400, 'bad_request');
  });

  it.each([
    ['missing request_id', { request_id: undefined }, /request_id/],
    ['short request_id', { request_id: 'abc' }, /request_id/],
    ['request_id with bad characters', { request_id: 'a'.repeat(15) + '/' }, /request_id/],
    ['extra field', { admin: true }, /admin/],
    ['missing csr', { csr: undefined }, /csr/],
    ['negative ttl_s', { ttl_s: -5 }, /ttl_s/],
    ['bad key_storage', { key_storage: 'hsm' }, /key_storage/],
  ])('schema violation (%s) → 400 bad_request naming the field', async (_name, over, re) => {
    const { payload, signer } = await joinPayload(over, T());
    for (const k of Object.keys(over)) if ((over as Record<string, unknown>)[k] === undefined) delete payload[k];
    const res = await expectRefused(h, 'join', await sign(signer, payload), 400, 'bad_request');
    expect(res.json.message).toMatch(re);
  });

  it('thousands of made-up keys: the refusal names them, bounded (~1 KB), not echoed back whole', async () => {
    const junk = Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`k${i}_${'x'.repeat(8)}`, 1]));
    const { payload, signer } = await joinPayload(junk, T());
    const res = await expectRefused(h, 'join', await sign(signer, payload), 400, 'bad_request');
    expect(res.json.message).toMatch(/k0_x/);
    expect(res.text.length).toBeLessThan(1300);
  });

  it('garbage CSR → 400 bad_csr', async () => {
    const { payload, signer } = await joinPayload({ csr: 'hello' }, T());
    await expectRefused(h, 'join', await sign(signer, payload), 400, 'bad_csr');
    const { payload: p2 } = await joinPayload({ csr: toPem('CERTIFICATE REQUEST', Buffer.from('not a csr')) }, T());
    await expectRefused(h, 'join', await sign(signer, p2), 400, 'bad_csr');
  });

  it('CSR with a tampered self-signature → 400 csr_signature_invalid', async () => {
    const signer = SoftwareSigner.generate();
    const der = await buildCsr(signer);
    der[der.length - 1] ^= 0x01; // last octet of s
    const { payload } = await joinPayload({ csr: toPem('CERTIFICATE REQUEST', der) }, { ...T(), signer });
    await expectRefused(h, 'join', await sign(signer, payload), 400, 'csr_signature_invalid');
  });

  it('envelope signed by another key than the CSR → 401 signature_invalid', async () => {
    const { payload } = await joinPayload({}, T());
    await expectRefused(h, 'join', await sign(SoftwareSigner.generate(), payload), 401, 'signature_invalid');
  });

  it('unknown join method → 400 unknown_join_method', async () => {
    const { payload, signer } = await joinPayload({ method: 'teleportation' }, T());
    const res = await expectRefused(h, 'join', await sign(signer, payload), 400, 'unknown_join_method');
    expect(res.json.message).toMatch(/token/); // names the enabled methods
  });

  it('unknown token, malformed evidence, or the raw token itself → 401 token_invalid', async () => {
    const { payload, signer } = await joinPayload({}, { token: 'A'.repeat(43) });
    await expectRefused(h, 'join', await sign(signer, payload), 401, 'token_invalid');
    const good = (await joinPayload({}, T())).payload.evidence as Record<string, string>;
    for (const evidence of [
      {},
      { token: tok },
      { ...good, extra: 1 },
      { ...good, proof: 'x' },
      { token_key: good.token_key },
    ]) {
      const { payload, signer } = await joinPayload({ evidence });
      await expectRefused(h, 'join', await sign(signer, payload), 401, 'token_invalid');
    }
  });

  it('a token proof made for another request id or another key → 401 token_invalid', async () => {
    const signer = SoftwareSigner.generate();
    const { payload } = await joinPayload(
      { evidence: await tokenEvidence(tok, 'other-request-id-0001', signer.publicKeySpki()) },
      { signer },
    );
    await expectRefused(h, 'join', await sign(signer, payload), 401, 'token_invalid');
    // Evidence lifted from someone else's request (same request id, their key) and re-signed by ours.
    const theirs = await joinPayload({}, T());
    const { payload: stolen } = await joinPayload(
      { request_id: theirs.payload.request_id, evidence: theirs.payload.evidence },
      { signer },
    );
    const res = await expectRefused(h, 'join', await sign(signer, stolen), 401, 'token_invalid');
    expect(res.json.message).toMatch(/proof/);
  });

  it('locked bot → 403 bot_locked, and the token survives the refusal', async () => {
    await runAdminOp(h.ctx.stores, 'lock', { target: 'gw' });
    try {
      const { payload, signer } = await joinPayload({}, T());
      await expectRefused(h, 'join', await sign(signer, payload), 403, 'bot_locked');
    } finally {
      await runAdminOp(h.ctx.stores, 'unlock', { target: 'gw' });
    }
  });

  // GAP: handleJoin's catch passes no bot to auditRefusal (src/server/ops/join.ts), so a join
  // refused after attestation named the bot (bot_locked, unknown_bot, a lost token race)
  // is audited with bot = null and an operator filtering the audit log by bot misses it.
  it('a join refused after attestation records the bot in its audit row', async () => {
    await runAdminOp(h.ctx.stores, 'lock', { target: 'gw' });
    try {
      const seq = await h.lastAuditSeq();
      const { payload, signer } = await joinPayload({}, T());
      expectRefusal(await h.post('join', await sign(signer, payload)), 403, 'bot_locked');
      expect((await h.auditAfter(seq)).map((r) => [r.code, r.bot])).toEqual([['bot_locked', 'gw']]);
    } finally {
      await runAdminOp(h.ctx.stores, 'unlock', { target: 'gw' });
    }
  });

  it('after all those refusals the same token still joins, exactly once', async () => {
    const before = await h.counts();
    const id = await h.join({ token: tok });
    expect(id.result.generation).toBe(1);
    expect(await h.counts()).toMatchObject({
      instances: before.instances + 1,
      certificates: before.certificates + 1,
      usedTokens: before.usedTokens + 1,
    });
    const { payload, signer } = await joinPayload({}, T());
    const res = await expectRefused(h, 'join', await sign(signer, payload), 401, 'token_reused');
    expect(res.json.message).toMatch(/token create --bot gw/);
  });

  it('expired token → 401 token_expired, token left unused', async () => {
    const short = await h.token({ ttl: '1s' });
    h.clock.offsetMs = 1500;
    try {
      const { payload, signer } = await joinPayload({}, { token: short });
      await expectRefused(h, 'join', await sign(signer, payload), 401, 'token_expired');
    } finally {
      h.clock.offsetMs = 0;
    }
  });

  it('token of a bot deleted since → 404 unknown_bot, token not burned', async () => {
    await runAdminOp(h.ctx.stores, 'apply', { yaml: 'kind: bot\nname: gone\nspec:\n  roles: [edge]\n' });
    const t = await h.token({ bot: 'gone' });
    await h.ctx.stores.resources.delete('bot', 'gone');
    const { payload, signer } = await joinPayload({}, { token: t });
    await expectRefused(h, 'join', await sign(signer, payload), 404, 'unknown_bot');
    expect((await h.ctx.stores.tokens.list()).filter((r) => r.bot === 'gone').map((r) => r.usedAt)).toEqual([null]);
  });
});

describe('other endpoints', () => {
  it('GET /v1/bundle → 200, a signed bundle that verifies against the pinned root', async () => {
    const res = await h.request('GET', '/v1/bundle');
    expect(res.status).toBe(200);
    const p = verifyResponse(res.json, 'bundle', null, h.rootPem);
    expect(p.result.trust_domain).toBe('example.org');
    expect(p.result.roots).toEqual([h.rootPem.trim() + '\n']);
    expect(p.result.intermediates).toHaveLength(1);
  });

  it('a verified issuer signer is reused, but never past its validity or under another root', async () => {
    const res = await h.request('GET', '/v1/bundle');
    verifyResponse(res.json, 'bundle', null, h.rootPem); // verified (and cached) now
    const afterExpiry = new Date(h.ctx.server.notAfter + 60_000);
    expect(() => verifyResponse(res.json, 'bundle', null, h.rootPem, afterExpiry)).toThrow(/expired/);
    const beforeIssue = new Date(Date.now() - 3 * 86_400_000);
    expect(() => verifyResponse(res.json, 'bundle', null, h.rootPem, beforeIssue)).toThrow(/clock right/);
    const otherRoot = anotherRoot();
    expect(() => verifyResponse(res.json, 'bundle', null, otherRoot)).toThrow(/does not chain to the pinned issuer CA/);
    // and still accepted now
    expect(verifyResponse(res.json, 'bundle', null, h.rootPem).result.trust_domain).toBe('example.org');
  });

  it('unknown routes → 404 not_found; a known route with the wrong method → 405 method_not_allowed', async () => {
    expectRefusal(await h.request('GET', '/nope'), 404, 'not_found');
    expectRefusal(await h.request('GET', '/v1/join'), 405, 'method_not_allowed');
    expectRefusal(await h.request('POST', '/v1/bundle', { body: '{}', headers: JSON_CT }), 405, 'method_not_allowed');
  });

  it('a malformed URL → 400 bad_request in the documented shape', async () => {
    expectRefusal(await h.request('GET', '/v1/admin/%E0%A4%A'), 400, 'bad_request');
  });
  it('an over-long admin op name → a documented {code, message, retryable} body', async () => {
    const res = await h.request('POST', `/v1/admin/${'a'.repeat(200)}`, {
      body: '{}',
      headers: { ...JSON_CT, authorization: `Bearer ${h.adminToken}` },
    });
    expect(Object.keys(res.json).sort()).toEqual(['code', 'message', 'retryable']);
  });

  // GAP: refusals raised before the handler runs (malformed_json, body_too_large,
  // unsupported_media_type) are neither audited nor counted in sigil_refusals_total.
  it('a malformed_json refusal on /v1/join is audited like every other refusal', async () => {
    const seq = await h.lastAuditSeq();
    expectRefusal(await h.request('POST', '/v1/join', { body: '{', headers: JSON_CT }), 400, 'malformed_json');
    expect((await h.auditAfter(seq)).map((r) => [r.action, r.outcome, r.code])).toEqual([
      ['join', 'refused', 'malformed_json'],
    ]);
  });

  it('GET /healthz → 200', async () => {
    const res = await h.request('GET', '/healthz');
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: 'ok', trust_domain: 'example.org' });
  });

  it('GET /metrics → Prometheus text with refusals labelled by op, method and code', async () => {
    const res = await h.request('GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.text).toMatch(/^# TYPE sigil_refusals_total counter$/m);
    expect(res.text).toMatch(/^sigil_refusals_total\{op="join",method="token",code="token_invalid"\} [1-9]\d*$/m);
    expect(res.text).toMatch(/^sigil_refusals_total\{op="join",method="none",code="bad_request"\} [1-9]\d*$/m);
    expect(res.text).toMatch(/^sigil_joins_total\{method="token"\} 1$/m);
  });
});

describe('admin API', () => {
  const admin = (op: string, body: string | undefined, auth?: string) =>
    h.request('POST', `/v1/admin/${op}`, {
      ...(body !== undefined ? { body } : {}),
      headers: { ...(body !== undefined ? JSON_CT : {}), ...(auth !== undefined ? { authorization: auth } : {}) },
    });

  it('no bearer / wrong bearer → 401 unauthorized, audited', async () => {
    const seq = await h.lastAuditSeq();
    expectRefusal(await admin('bots.ls', '{}'), 401, 'unauthorized');
    expectRefusal(await admin('bots.ls', '{}', `Bearer ${'x'.repeat(43)}`), 401, 'unauthorized');
    expectRefusal(await admin('bots.ls', '{}', h.adminToken), 401, 'unauthorized'); // no "Bearer " scheme
    expectRefusal(await admin('bots.ls', '{}', `Bearer ${h.adminToken}x`), 401, 'unauthorized');
    expect((await h.auditAfter(seq)).map((r) => [r.action, r.outcome, r.code])).toEqual(
      Array(4).fill(['admin', 'refused', 'unauthorized']),
    );
  });

  it('right bearer → 200 with the result', async () => {
    const res = await admin('bots.ls', '{}', `Bearer ${h.adminToken}`);
    expect(res.status).toBe(200);
    expect(res.json.result.map((b: { name: string }) => b.name)).toContain('gw');
    expect((await admin('bots.ls', undefined, `Bearer ${h.adminToken}`)).status).toBe(200);
  });

  it('unknown op → 404 not_found; bad arguments → 400 bad_request', async () => {
    const auth = `Bearer ${h.adminToken}`;
    expectRefusal(await admin('nope', '{}', auth), 404, 'not_found');
    expectRefusal(await admin('bots.ls', '{"x":1}', auth), 400, 'bad_request');
    expectRefusal(await admin('token.create', '{"bot":""}', auth), 400, 'bad_request');
    expectRefusal(await admin('token.create', '{"bot":"gw","ttl":"forever"}', auth), 400, 'ttl_invalid');
    expectRefusal(await admin('token.create', '{"bot":"nobody"}', auth), 404, 'unknown_bot');
    expectRefusal(await admin('lock', '{"target":"nobody"}', auth), 404, 'not_found');
    expectRefusal(await admin('apply', '{"yaml":"kind: role\\nname: BAD\\nspec: {}"}', auth), 400, 'policy_invalid');
    expectRefusal(await admin('bots.ls', '{', auth), 400, 'malformed_json');
  });
});

/** The root of another issuer with the same trust domain: only the chain can tell them apart. */
function anotherRoot(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-other-root-'));
  try {
    initDataDir(dir, 'example.org');
    return readFileSync(paths(dir).rootCert, 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
