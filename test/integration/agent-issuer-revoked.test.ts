/**
 * An agent whose identity was issued under an intermediate that is then revoked (`sigil server
 * rotate-intermediate --revoke-old`) does not wait for its expiry: the renewal refused
 * `issuer_revoked` makes the identity unusable at once — a token agent says a new token is needed
 * (reattest_required, with the command), and joins with one as soon as the config has it; the
 * new identity chains to the new intermediate. (Before, it backed off and kept serving a
 * certificate relying parties refuse, until its expiry; a new token changed nothing.)
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { Agent, loadAgentModules } from '../../src/agent/agent.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { openAgentState } from '../../src/agent/state/index.js';
import { IssuerLink } from '../../src/agent/transports.js';
import { SigilError } from '../../src/errors.js';
import { fromPem } from '../../src/pki/pem.js';
import { agentStatus, nextStepHint } from '../../src/agent/status.js';
import { spkiPin } from '../../src/pki/chain.js';
import { paths } from '../../src/server/data-dir.js';
import { RENEW_NOW_SETTING, REVOKED_SERIAL_SETTING } from '../../src/agent/credential-status.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { applyRegistry } from '../../src/server/issuers/runtime.js';
import { rotateIntermediate } from '../../src/server/issuers/rotate-intermediate.js';
import { silentLogger } from '../../src/util/log.js';
import { startIssuer, type Harness } from './harness.js';

let h: Harness;

async function restartRevokingOld(): Promise<void> {
  await rotateIntermediate({ dataDir: h.dir, revokeOld: true });
  const { dir, port } = h;
  await h.close({ keepDir: true });
  h = await startIssuer({ dir, port });
  await h.ctx.intermediates!.refresh();
  applyRegistry(h.ctx, h.ctx.intermediates!);
  await runAdminOp(h.ctx.stores, 'apply', { yaml: JWT_ROLE });
}

const JWT_ROLE = 'kind: role\nname: edge\nspec: { max_ttl: 24h, allowed_outputs: [jwt], jwt_audiences: [vault] }\n';
const tmp = mkdtempSync(join(tmpdir(), 'sigil-agent-revoked-'));

beforeAll(async () => {
  h = await startIssuer();
});
afterAll(async () => {
  await h?.close();
  rmSync(tmp, { recursive: true, force: true });
});

async function agentWith(token: string, o: { name?: string; outputs?: string } = {}): Promise<Agent> {
  const name = o.name ?? 'data';
  const cfg = parseAgentConfig(
    `issuer: https://127.0.0.1:${h.port}
ca_pin: ${spkiPin(new X509Certificate(h.rootPem))}
data_dir: ${join(tmp, name)}
ttl: 1h
join: { method: token, token: ${token} }
outputs:
  - { type: identity, path: ${join(tmp, `${name}-id`)} }
${o.outputs ?? ''}`,
    join(tmp, 'agent.yaml'),
  );
  return new Agent(cfg, silentLogger(), { modules: await loadAgentModules(cfg), state: openAgentState(cfg.dataDir) });
}

it('a token agent: reattest_required at once, then joins under the new intermediate with a new token', async () => {
  let agent = await agentWith(await h.token());
  expect((await agent.tick()).action).toBe('joined');
  const oldSerial = agent.state.getIdentity()!.serial;
  await restartRevokingOld();

  // The renewal is refused issuer_revoked: the agent says what a person must do (its identity is
  // still within its lifetime, so before this it only backed off).
  let r = await agent.tick({ force: true });
  for (let i = 0; i < 3 && r.action === 'failed' && r.error.code === 'issuer_unreachable'; i++)
    r = await agent.tick({ force: true });
  expect(r.action === 'failed' && r.error.code).toBe('reattest_required');
  expect(r.action === 'failed' && r.error.message).toMatch(
    /^the intermediate CA that issued this identity was revoked .*token create --bot .*issuer: issuer_revoked/,
  );
  // The next attempt does not ask the issuer again with the spent token or the revoked identity.
  const again = await agent.tick({ force: true });
  expect(again.action === 'failed' && again.error.code).toBe('reattest_required');
  // `sigil agent status` says why (and exits 1 with this hint), though the certificate is in its lifetime.
  const st = agentStatus(agent.state);
  expect(st.state).toBe('ok');
  expect(await nextStepHint(st, join(tmp, 'agent.yaml'))).toMatch(
    /revoked the intermediate CA that issued this identity.*a new join token is needed/,
  );
  agent.state.close();

  // A new token in the config: the agent joins with it, under the new intermediate.
  agent = await agentWith(await h.token());
  const joined = await agent.tick();
  expect(joined.action).toBe('joined');
  const id = agent.state.getIdentity()!;
  expect(id.serial).not.toBe(oldSerial);
  const leaf = new X509Certificate(id.chainPem[0]!);
  expect(leaf.issuer).toBe(new X509Certificate(readFileSync(paths(h.dir).intCert)).subject);
  agent.state.close();
});

it('a refused credential request makes the renewal due at once; its refusal ends the identity', async () => {
  await runAdminOp(h.ctx.stores, 'apply', { yaml: JWT_ROLE });
  const outputs = `  - { type: jwt, path: ${join(tmp, 'jwt')}, audiences: [vault] }\n`;
  let agent = await agentWith(await h.token(), { name: 'cred', outputs });
  const first = await agent.tick();
  expect(first.action).toBe('joined');
  const id = agent.state.getIdentity()!;
  expect(agent.nextWake()).toBeGreaterThan(Date.now() + 60_000); // renewal and jwt output: far off
  await restartRevokingOld();

  // Not a renewal: the jwt output's request, signed by the identity, is refused issuer_revoked.
  let outs = await agent.credentials!.refresh({ force: true });
  for (let i = 0; i < 3 && outs[0]?.action === 'failed' && outs[0].error?.code !== 'issuer_revoked'; i++)
    outs = await agent.credentials!.refresh({ force: true });
  expect(outs[0]).toMatchObject({
    type: 'jwt',
    action: 'failed',
    error: expect.objectContaining({ code: 'issuer_revoked' }),
  });
  // Not ended by it (over HTTPS only TLS vouches for a refusal): the renewal is due now instead.
  expect(agent.state.getSetting(REVOKED_SERIAL_SETTING)).toBeUndefined();
  expect(agent.state.getSetting(RENEW_NOW_SETTING)).toBe(id.serial);
  expect(agent.nextWake()).toBeLessThanOrEqual(Date.now());
  // The next pass (not forced) renews; the renewal's refusal ends the identity: a new token is needed.
  const r = await agent.tick();
  expect(r.action === 'failed' && r.error.code).toBe('reattest_required');
  expect(r.action === 'failed' && r.error.message).toMatch(/issuer: issuer_revoked/);
  expect(agent.state.getSetting(REVOKED_SERIAL_SETTING)).toBe(id.serial);
  agent.state.close();

  // Given one, it joins under the new intermediate and the jwt output is issued with it.
  const hook = vi.spyOn(IssuerLink.prototype, 'onRefused');
  agent = await agentWith(await h.token(), { name: 'cred', outputs });
  const refused = hook.mock.calls[0]![0];
  hook.mockRestore();
  const joined = await agent.tick();
  expect(joined.action).toBe('joined');
  expect(joined.credentials?.map((c) => [c.type, c.action])).toEqual([['jwt', 'issued']]);
  // A refusal that comes back late for a request the OLD identity signed (a renewal replaced it
  // while the request was out) does not end the new one.
  refused(new SigilError('issuer_revoked'), fromPem(id.chainPem[0]!, 'CERTIFICATE'));
  refused(new SigilError('issuer_revoked'), undefined);
  expect(agent.state.getSetting(RENEW_NOW_SETTING)).toBe(id.serial);
  expect(agent.nextWake()).toBeGreaterThan(Date.now() + 60_000);
  // Its own, though, makes its renewal due now.
  const own = agent.state.getIdentity()!;
  refused(new SigilError('issuer_revoked'), fromPem(own.chainPem[0]!, 'CERTIFICATE'));
  expect(agent.state.getSetting(RENEW_NOW_SETTING)).toBe(own.serial);
  expect(agent.nextWake()).toBeLessThanOrEqual(Date.now());
  agent.state.close();
});
