/**
 * The oidc join through the real agent process: a generic OIDC issuer (discovery + JWKS over
 * HTTPS on loopback), the platform token read from a file, and re-join instead of renew —
 * CI jobs and pods are ephemeral, so their platform token is the evidence every time.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyResources,
  RESOURCES,
  sigil,
  sigilJson,
  startIssuer,
  tempDir,
  type RunningIssuer,
} from '../helpers/cli.js';
import { newKey, TestTokenIssuer } from '../helpers/fake-oidc.js';

describe('oidc join through `sigil agent run`', () => {
  const tmp = tempDir();
  let issuer: RunningIssuer;
  const oidc = new TestTokenIssuer([newKey('k1', 'ES256')]);
  let iss: string;

  beforeAll(async () => {
    const server = await oidc.start(join(tmp.path, 'oidc'), [], true);
    iss = `${server.url}/tfc`;
    issuer = await startIssuer(tmp.path);
    await applyResources(
      issuer,
      tmp.path,
      `${RESOURCES}---\nkind: join_rule\nname: terraform\nspec:\n  method: oidc\n  bot: gw\n  oidc: { provider: generic, issuer: "${iss}", audience: sigil.test, ca_file: ${server.caFile}, allow: [ { claims: { workspace: "prod-*" } } ] }\n`,
    );
  });
  afterAll(async () => {
    await issuer?.stop();
    await oidc.server?.close();
    tmp.cleanup();
  });

  const agent = async (name: string, claims: Record<string, unknown>): Promise<string> => {
    const tokenFile = join(tmp.path, `${name}.jwt`);
    writeFileSync(tokenFile, await oidc.sign({ iss, aud: 'sigil.test', sub: name, ...claims }), { mode: 0o600 });
    const config = join(tmp.path, `${name}.yaml`);
    writeFileSync(
      config,
      `issuer: ${issuer.url}\nca_pin: ${issuer.pin}\ndata_dir: ${join(tmp.path, name)}\n` +
        `join: { method: oidc, oidc: { provider: generic, token_file: ${tokenFile} } }\n` +
        `outputs:\n  - { type: identity, path: ${join(tmp.path, name, 'out')} }\n`,
    );
    return config;
  };

  it('joins with the platform token and joins again (not renew) when renewal is due', async () => {
    const config = await agent('run-1', { workspace: 'prod-net' });
    const first = await sigilJson(['agent', 'run', '--config', config, '--once']);
    expect(first.result).toBe('joined');
    const again = await sigilJson(['agent', 'renew', '--config', config]);
    expect(again.result).toBe('joined');
    expect(again.serial).not.toBe(first.serial);
    const audit = await sigilJson(['ctl', '--data-dir', issuer.dataDir, 'audit']);
    expect(
      audit.filter(
        (e: { action: string; method: string; outcome: string }) =>
          e.action === 'join' && e.method === 'oidc' && e.outcome === 'ok',
      ),
    ).toHaveLength(2);
    expect(audit.some((e: { action: string }) => e.action === 'renew')).toBe(false);
  });

  it('a token whose claims the rule does not allow is refused with its code', async () => {
    const r = await sigil(['agent', 'run', '--config', await agent('run-2', { workspace: 'dev-net' }), '--once']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[oidc_claims_not_allowed\]/);
  });
});
