/**
 * The join-method registry (issue #13): a new method is one folder (test/helpers/join-example/)
 * plus one line in each registry list — here appended in the test — and a real join runs
 * through the issuer's join operation with it. Also: the host owns the challenge lifecycle (a
 * method with no `commit` cannot leave its challenge replayable), and two issuers' join
 * methods share no caches.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentConfig } from '../../src/agent/config.js';
import { buildJoinMethod } from '../../src/agent/join-method.js';
import { SigilError } from '../../src/errors.js';
import { AGENT_JOIN_METHODS } from '../../src/join/agent-methods.js';
import { runJoinExchange } from '../../src/join/exchange.js';
import { readRuleFile } from '../../src/join/rule-files.js';
import { createJoinMethods, SERVER_JOIN_METHODS } from '../../src/join/server-methods.js';
import type { JoinMethodAgent } from '../../src/join/types.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import type { Jws } from '../../src/protocol/jws.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores } from '../../src/server/data-dir.js';
import { createIssuerContext, type IssuerContext } from '../../src/server/issuer.js';
import { handleJoin } from '../../src/server/ops/join.js';
import { silentLogger } from '../../src/util/log.js';
import { exampleAgentMethod } from '../helpers/join-example/agent.js';
import { exampleServerMethod } from '../helpers/join-example/server.js';
import { POLICY } from './harness.js';

const SECRET = 'correct horse battery staple';
let dir: string;
let ctx: IssuerContext;
let secretFile: string;

async function exchange(method: JoinMethodAgent, sent: Jws[] = []): ReturnType<typeof runJoinExchange> {
  return runJoinExchange({
    method,
    identity: SoftwareSigner.generate(),
    send: (env) => {
      sent.push(env);
      return handleJoin(ctx, env, null);
    },
    rootPem: () => ctx.ca.rootPem,
    now: () => ctx.now(),
  });
}

async function refusal(p: Promise<unknown>): Promise<SigilError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(SigilError);
  return e as SigilError;
}

async function agentMethod(machine: string): Promise<JoinMethodAgent> {
  const cfg = {
    source: 'agent.yaml',
    dataDir: dir,
    keyStorage: 'software',
    join: { method: 'example', settings: { secret_file: secretFile, machine } },
  } as unknown as AgentConfig;
  // The agent registry with the new method: one line.
  return (await buildJoinMethod(cfg, [...AGENT_JOIN_METHODS, exampleAgentMethod])).method;
}

beforeAll(async () => {
  dir = mkdtempSync(joinPath(tmpdir(), 'sigil-join-example-'));
  initDataDir(dir, 'example.org');
  const stores = openIssuerStores(dir);
  ctx = createIssuerContext({ ca: loadCaMaterial(dir), stores, log: silentLogger() });
  // The issuer registry with the new method: one line.
  ctx.methods = createJoinMethods({ log: ctx.log, firmware: ctx.firmware }, [
    ...SERVER_JOIN_METHODS,
    exampleServerMethod,
  ]);
  await runAdminOp(stores, 'apply', { yaml: POLICY });
  // `sigil ctl apply` validates with the built-in registry; the test's method's rule is stored directly.
  await stores.resources.put(
    'join_rule',
    'lab',
    { method: 'example', bot: 'gw', example: { secret: SECRET, machines: ['m1', 'm2'] } },
    Date.now(),
  );
  secretFile = joinPath(dir, 'secret');
  writeFileSync(secretFile, `${SECRET}\n`);
});

afterAll(async () => {
  await ctx?.stores.close();
});

describe('a join method added as one folder plus one registry line per side', () => {
  it('joins through the issuer in two rounds; the instance carries the method and its facts', async () => {
    const r = await exchange(await agentMethod('m1'));
    expect(r.payload.result.bot).toBe('gw');
    const inst = await ctx.stores.instances.get('example-m1');
    expect(inst).toMatchObject({ joinMethod: 'example', facts: { example_rule: 'lab', example_machine: 'm1' } });
  });

  it('the method parses its rule with its own schema (port.rules), and its refusals reach the agent', async () => {
    const e = await refusal(exchange(await agentMethod('m9')));
    expect(e.code).toBe('signature_invalid');
  });
});

describe('the host owns the challenge lifecycle', () => {
  it('uses the challenge up although the method has no commit; a replayed answer is challenge_reused', async () => {
    const sent: Jws[] = [];
    await exchange(await agentMethod('m2'), sent);
    const answer = JSON.parse(Buffer.from(sent[1]!.payload, 'base64url').toString('utf8')).evidence as Record<
      string,
      unknown
    >;
    expect((await ctx.stores.challenges.get(String(answer.challenge_id)))?.usedAt).not.toBeNull();
    // The captured answer in a new request (new id, new key).
    const replay: JoinMethodAgent = { name: 'example', canReattest: true, evidence: () => Promise.resolve(answer) };
    expect((await refusal(exchange(replay))).code).toBe('challenge_reused');
  });

  it('opens the challenge before the method runs: another method, request or key is challenge_invalid', async () => {
    let challengeId: string | undefined;
    const sniff: JoinMethodAgent = {
      name: 'example',
      canReattest: true,
      evidence: () => Promise.resolve({ machine: 'm1' }),
      respond: (ch) => {
        challengeId = ch.challenge_id;
        throw new SigilError('internal', 'stop after the challenge');
      },
    };
    await refusal(exchange(sniff));
    const asX509: JoinMethodAgent = {
      name: 'x509',
      canReattest: true,
      evidence: () => Promise.resolve({ challenge_id: challengeId }),
    };
    const e = await refusal(exchange(asX509));
    expect(e.code).toBe('challenge_invalid');
    expect(e.message).toMatch(/issued by the example join method, not x509/);
    const otherRequest: JoinMethodAgent = {
      name: 'example',
      canReattest: true,
      evidence: () => Promise.resolve({ challenge_id: challengeId, machine: 'm1', mac: 'x' }),
    };
    expect((await refusal(exchange(otherRequest))).message).toMatch(/another join request/);
  });
});

describe('join-side state belongs to the issuer', () => {
  it('two issuers in one process build their methods with separate caches', () => {
    const a = createJoinMethods({ log: silentLogger() });
    const b = createJoinMethods({ log: silentLogger() });
    expect(a.get('x509')!.server).not.toBe(b.get('x509')!.server);
    expect(a.recentCsrs).not.toBe(b.recentCsrs);
  });

  it('a rule file cached for one issuer is not seen by another', () => {
    const one = new Map();
    const two = new Map();
    const f = joinPath(dir, 'ca.txt');
    writeFileSync(f, 'v1');
    expect(readRuleFile(one, f, 'CA file')).toBe('v1');
    expect(one.size).toBe(1);
    expect(two.size).toBe(0);
    expect(readRuleFile(two, f, 'CA file')).toBe('v1');
  });
});
