/**
 * A renewal's facts on PostgreSQL (issue #16): what changed (here the carrier and the agent
 * version; an attestation record takes the same path) is merged by the renewal's own instance
 * UPDATE (store recordIssue `mergeFacts`), from the row the renewal already holds FOR UPDATE, so
 * a renewal that records facts sends exactly the statements of one that records none, in the same
 * order (the instance UPDATE still sent without waiting); and what it stores is what updateFacts
 * would have stored, byte for byte.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildJoinRequest, buildRenewRequest } from '../../../src/agent/requests.js';
import { TokenJoinAgent } from '../../../src/join/token/agent.js';
import { loadSigner, parseKeyRef } from '../../../src/keystore/index.js';
import { fromPem } from '../../../src/pki/pem.js';
import { b64u, signJws, type Jws } from '../../../src/protocol/jws.js';
import { TYP_REQUEST, type IdentityResult } from '../../../src/protocol/messages.js';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import { readAuditKey } from '../../../src/server/audit/audit-key.js';
import { initDataDirWithStore, loadCaMaterial, paths } from '../../../src/server/data-dir.js';
import { createIssuerContext, type IssuerContext } from '../../../src/server/issuer.js';
import { OPERATIONS } from '../../../src/server/ops/table.js';
import { openPostgresStores, type PostgresStores } from '../../../src/server/store/postgres/index.js';
import { canonicalJson } from '../../../src/server/store/sqlite/canonical-json.js';
import { silentLogger } from '../../../src/util/log.js';
import { SIGIL_VERSION } from '../../../src/version.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';
import { POLICY } from '../../integration/harness.js';

let pg: Postgres;
let dir: string;
let url: string;
let stores: PostgresStores;
let ctx: IssuerContext;
const statements: string[] = [];

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  url = pg.url(pg.createDatabase('renewfacts'));
  dir = join(mkdtempSync(join(tmpdir(), 'sigil-pg-facts-')), 'issuer');
  await initDataDirWithStore(dir, 'example.org', url);
  stores = openPostgresStores(url, {
    audit: { key: readAuditKey(paths(dir).auditKey)! },
    checkAuditKey: true,
    onStatement: (text) => statements.push(text.replace(/\s+/g, ' ').trim()),
  });
  ctx = createIssuerContext({ ca: loadCaMaterial(dir), stores, log: silentLogger() });
  await runAdminOp(stores, 'apply', { yaml: POLICY });
}, 60_000);

afterAll(async () => {
  await stores?.close();
  await pg?.stop();
  if (dir) rmSync(join(dir, '..'), { recursive: true, force: true });
});

/** A statement's kind and table, without its parameters' part. */
const shape = (s: string): string => s.slice(0, 60);

const resultOf = (answer: Jws): IdentityResult =>
  (JSON.parse(b64u.decode(answer.payload).toString('utf8')) as { result: IdentityResult }).result;

it('a renewal that records a new carrier and agent version sends the statements of one that records none', async () => {
  const token = ((await runAdminOp(stores, 'token.create', { bot: 'gw' }, Date.now())) as { token: string }).token;
  const agent = new TokenJoinAgent(token);
  const joinReq = await buildJoinRequest({ method: 'token', evidence: (c) => agent.evidence(c), now: Date.now() });
  const joinAnswer = await OPERATIONS.join.handle(ctx, {
    body: joinReq.envelope,
    remote: null,
    confidential: true,
    carrier: 'https',
  });
  const id = resultOf(joinAnswer).instance_id;
  let signer = loadSigner(parseKeyRef(joinReq.entry.pendingKeyRef!));
  let chain = resultOf(joinAnswer).chain;
  const factsBefore = (await stores.instances.get(id))!.facts;
  expect(factsBefore).toMatchObject({ transport: 'https', agent_version: SIGIL_VERSION });

  const renew = async (carrier: 'https' | 'mqtt', agentVersion?: string) => {
    const built = await buildRenewRequest({ current: signer, chainPem: chain, now: Date.now() });
    if (agentVersion !== undefined) {
      // The same request from an agent that upgraded: the edited payload, signed by the current key.
      const payload = JSON.parse(b64u.decode(built.envelope.payload).toString('utf8')) as Record<string, unknown>;
      payload['agent_version'] = agentVersion;
      built.envelope = await signJws(
        signer,
        TYP_REQUEST,
        payload,
        chain.map((c) => fromPem(c, 'CERTIFICATE')),
      );
    }
    statements.length = 0;
    const answer = await OPERATIONS.renew.handle(ctx, {
      body: built.envelope,
      remote: null,
      confidential: true,
      carrier,
    });
    const sent = { statements: [...statements] };
    signer = loadSigner(parseKeyRef(built.entry.pendingKeyRef!));
    chain = resultOf(answer).chain;
    return sent;
  };

  await renew('https'); // fills the policy cache, if any
  const steady = await renew('https');
  const newCarrier = await renew('mqtt');
  const newVersion = await renew('mqtt', '9.9.9');
  for (const r of [newCarrier, newVersion]) {
    // The same statements in the same order: none added, none awaited that was not (the instance
    // UPDATE still goes out without waiting, with the ones after it).
    expect(r.statements.map(shape)).toEqual(steady.statements.map(shape));
    // One UPDATE of the instance row, carrying the facts; no read of them of its own.
    expect(r.statements.filter((s) => /^(WITH u AS \( )?UPDATE instances/.test(s))).toHaveLength(1);
    expect(r.statements.some((s) => /UPDATE instances .*facts = /.test(s))).toBe(true);
    expect(r.statements.some((s) => /SELECT facts FROM instances/.test(s))).toBe(false);
  }
  expect(steady.statements.some((s) => /facts = /.test(s))).toBe(false);

  // Stored as updateFacts stores it: the canonical JSON of the merged object, every other key kept.
  const want = { ...factsBefore, transport: 'mqtt', agent_version: '9.9.9' };
  const inst = (await stores.instances.get(id))!;
  expect(inst.facts).toStrictEqual(want);
  expect(inst.generation).toBe(5);
  const raw = postgres(url, { max: 1, onnotice: () => undefined });
  try {
    const [row] = await raw<{ facts: string }[]>`SELECT facts FROM instances WHERE id = ${id}`;
    expect(row!.facts).toBe(canonicalJson(want));
  } finally {
    await raw.end();
  }
  const { rows } = await stores.fleet.page({ now: Date.now(), search: id });
  expect(rows[0]).toMatchObject({ transport: 'mqtt', agentVersion: '9.9.9', generation: 5 });
});
