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
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Agent, loadAgentModules } from '../../src/agent/agent.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { openAgentState } from '../../src/agent/state/index.js';
import { agentStatus, nextStepHint } from '../../src/agent/status.js';
import { spkiPin } from '../../src/pki/chain.js';
import { paths } from '../../src/server/data-dir.js';
import { applyRegistry } from '../../src/server/issuers/runtime.js';
import { rotateIntermediate } from '../../src/server/issuers/rotate-intermediate.js';
import { silentLogger } from '../../src/util/log.js';
import { startIssuer, type Harness } from './harness.js';

let h: Harness;
const tmp = mkdtempSync(join(tmpdir(), 'sigil-agent-revoked-'));

beforeAll(async () => {
  h = await startIssuer();
});
afterAll(async () => {
  await h?.close();
  rmSync(tmp, { recursive: true, force: true });
});

async function agentWith(token: string): Promise<Agent> {
  const cfg = parseAgentConfig(
    `issuer: https://127.0.0.1:${h.port}
ca_pin: ${spkiPin(new X509Certificate(h.rootPem))}
data_dir: ${join(tmp, 'data')}
ttl: 1h
join: { method: token, token: ${token} }
outputs:
  - { type: identity, path: ${join(tmp, 'id')} }
`,
    join(tmp, 'agent.yaml'),
  );
  return new Agent(cfg, silentLogger(), { modules: await loadAgentModules(cfg), state: openAgentState(cfg.dataDir) });
}

it('a token agent: reattest_required at once, then joins under the new intermediate with a new token', async () => {
  let agent = await agentWith(await h.token());
  expect((await agent.tick()).action).toBe('joined');
  const oldSerial = agent.state.getIdentity()!.serial;
  await rotateIntermediate({ dataDir: h.dir, revokeOld: true });
  const { dir, port } = h;
  await h.close({ keepDir: true });
  h = await startIssuer({ dir, port });
  await h.ctx.intermediates!.refresh();
  applyRegistry(h.ctx, h.ctx.intermediates!);

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
