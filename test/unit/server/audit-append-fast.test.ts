/**
 * The cheaper audit append and response signing (issue #14): the append hashes its row through
 * a hand-ordered canonical form and skips the nested SAVEPOINT inside a caller's transaction;
 * the response header is encoded once per serving identity. Each must leave the bytes exactly
 * as before: the chain verifies through the generic canonicalJson path, the header equals the
 * one signJwsWithKey encodes, and a rotation changes the header with the chain.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { b64u, parseJws, signJwsWithKey, verifyJws, x5cDers } from '../../../src/protocol/jws.js';
import { TYP_RESPONSE } from '../../../src/protocol/messages.js';
import { SigilError } from '../../../src/errors.js';
import { initDataDir, loadCaMaterial, openIssuerStores } from '../../../src/server/data-dir.js';
import { createIssuerContext, rotateServerIdentity, type IssuerContext } from '../../../src/server/issuer.js';
import { signErrorResponse, signResponse } from '../../../src/server/ops/respond.js';
import { auditRowHash } from '../../../src/server/store/sqlite/index.js';
import type { AuditEvent, Stores } from '../../../src/server/store/types.js';
import { silentLogger } from '../../../src/util/log.js';

const T0 = 1_700_000_000_000;

// Rows whose canonical form is easy to get wrong by hand: nulls everywhere, escapes, non-ASCII,
// integer-like keys (sorted as strings), nested arrays/objects, keys out of order.
const EVENTS: AuditEvent[] = [
  { action: 'renew', outcome: 'ok', actor: 'agent', bot: 'gw', instanceId: 'i1', details: { serial: 'ab', gen: 2 } },
  { action: 'join', outcome: 'refused' },
  {
    action: 'x"y\\z',
    outcome: 'ok',
    code: 'bad_request',
    method: 'token',
    remote: '::1',
    details: { z: [1, { b: null, a: 'é\u2028\n' }], '10': 1, '2': true, '1': -0.5, é: {} },
  },
  { action: 'renew', outcome: 'ok', bot: 'ünï', details: { big: 1e21, neg: -0, list: [] } },
];

describe('audit append without a nested savepoint, hashed through the hand-ordered form', () => {
  let dir: string;
  let stores: Stores;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-audit-fast-'));
    initDataDir(dir, 'example.org');
    stores = openIssuerStores(dir);
  });
  afterEach(async () => {
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes rows, inside a write transaction and alone, that the generic canonical hash verifies', async () => {
    const key = stores.audit.keyInfo();
    expect(key).toBeDefined(); // the keyed (HMAC) chain, as `server start` runs it
    await stores.withWriteTx(async (tx) => {
      for (const [i, ev] of EVENTS.entries()) await tx.audit.append(ev, T0 + i);
    });
    for (const [i, ev] of EVENTS.entries()) await stores.audit.append(ev, T0 + 100 + i);
    const rows = await stores.audit.list();
    expect(rows.length).toBeGreaterThanOrEqual(2 * EVENTS.length);
    const mine = rows.slice(-2 * EVENTS.length);
    expect(mine.map((r) => r.action)).toEqual([...EVENTS, ...EVENTS].map((e) => e.action));
    expect(mine[2]!.details).toEqual({ z: [1, { b: null, a: 'é\u2028\n' }], '10': 1, '2': true, '1': -0.5, é: {} });
    expect(await stores.audit.verify()).toEqual({ ok: true, rows: rows.length });
    // An unkeyed recomputation differs (the rows are HMACs), so the match below is not vacuous.
    expect(auditRowHash(mine[0]!.prevHash, mine[0]!)).not.toBe(mine[0]!.hash);
  });

  it('an append inside a transaction that rolls back leaves no row, and the chain continues after it', async () => {
    const before = (await stores.audit.list()).length;
    await expect(
      stores.withWriteTx(async (tx) => {
        await tx.audit.append({ action: 'renew', outcome: 'ok' }, T0);
        throw new SigilError('internal', 'the renewal failed after its audit row');
      }),
    ).rejects.toThrow('after its audit row');
    expect((await stores.audit.list()).length).toBe(before);
    await stores.withWriteTx(async (tx) => {
      await tx.audit.append({ action: 'renew', outcome: 'ok' }, T0 + 1);
    });
    const rows = await stores.audit.list();
    expect(rows.length).toBe(before + 1);
    expect(rows.at(-1)!.prevHash).toBe(rows.at(-2)!.hash);
    expect(await stores.audit.verify()).toEqual({ ok: true, rows: before + 1 });
  });
});

describe('response header encoded once per serving identity', () => {
  let dir: string;
  let stores: Stores;
  let ctx: IssuerContext;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-resp-header-'));
    initDataDir(dir, 'example.org');
    stores = openIssuerStores(dir);
    ctx = createIssuerContext({ ca: loadCaMaterial(dir), stores, log: silentLogger() });
  });
  afterEach(async () => {
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const headerChain = (jws: { protected: string }): string[] =>
    (JSON.parse(b64u.decode(jws.protected).toString('utf8')) as { x5c: string[] }).x5c;

  it('signs byte for byte what signJwsWithKey signs, and agents verify it with the x5c leaf', () => {
    const json = JSON.stringify({ v: 1, op: 'renew', request_id: 'r1', issued_at: T0, result: { ok: true } });
    const fast = signResponse(ctx, json);
    const slow = signJwsWithKey(ctx.server.key, 'ES256', TYP_RESPONSE, json, ctx.server.chainDer);
    expect(fast.protected).toBe(slow.protected);
    expect(fast.payload).toBe(slow.payload);
    const { jws, header } = parseJws(fast);
    expect(header).toEqual({
      alg: 'ES256',
      typ: TYP_RESPONSE,
      x5c: ctx.server.chainDer.map((d) => d.toString('base64')),
    });
    const leaf = new X509Certificate(x5cDers(header)[0]!);
    expect(verifyJws(jws, header, leaf.publicKey).payloadBytes.toString()).toBe(json);
  });

  it('after a rotation, answers (and signed refusals) carry the new chain and verify with the new key', () => {
    const oldLeaf = ctx.server.chainDer[0]!.toString('base64');
    const oldKey = createPublicKey(ctx.server.key);
    const before = signResponse(ctx, '{"a":1}');
    expect(headerChain(before)[0]).toBe(oldLeaf);

    const id = rotateServerIdentity(ctx);
    const newLeaf = id.chainDer[0]!.toString('base64');
    expect(newLeaf).not.toBe(oldLeaf);
    const after = signResponse(ctx, '{"a":1}');
    const refusal = signErrorResponse(ctx, 'renew', 'r2', null, new SigilError('bad_request', 'no'));
    for (const jws of [after, refusal]) {
      expect(headerChain(jws)).toEqual(id.chainDer.map((d) => d.toString('base64')));
      const parsed = parseJws(jws);
      const leaf = new X509Certificate(x5cDers(parsed.header)[0]!);
      expect(verifyJws(parsed.jws, parsed.header, leaf.publicKey).header.typ).toBe(TYP_RESPONSE);
      // Signed by the new key, the one the new leaf names, not by the rotated-away one.
      expect(() => verifyJws(parsed.jws, parsed.header, oldKey)).toThrow(/does not verify/);
    }
  });
});
