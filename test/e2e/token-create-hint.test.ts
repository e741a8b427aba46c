/**
 * `sigil ctl token create` (table form) tells the operator where the token goes (walk8): a token
 * file only the agent reads, or agent.yaml kept 0600, and the one-shot join with the daemon
 * stopped. Before, it said only "put it in agent.yaml … and run …", which an operator re-joining
 * an expired agent followed beside its daemon (data_dir_locked) into a config others could read.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyResources, sigil, sigilJson, tempDir, type RunningIssuer } from '../helpers/cli.js';

describe('sigil ctl token create: the next step', () => {
  const tmp = tempDir('sigil-token-hint-');
  const dataDir = join(tmp.path, 'issuer');
  beforeAll(async () => {
    await sigilJson(['server', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org']);
    await applyResources({ dataDir } as RunningIssuer, tmp.path);
  });
  afterAll(() => tmp.cleanup());

  it('names a token file written under umask 077, agent.yaml kept 0600, and the run --once without a daemon', async () => {
    const r = await sigil(['ctl', '--data-dir', dataDir, 'token', 'create', '--bot', 'gw']);
    expect(r.code).toBe(0);
    const token = /^token: +(\S+)$/m.exec(r.stdout)?.[1];
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(r.stdout).toContain(`(umask 077; echo ${token} > /etc/sigil/token)`);
    expect(r.stdout).toContain("the file named by agent.yaml's join.token_file, readable by the agent only");
    expect(r.stdout).toContain(
      `or put it in agent.yaml (keep that file 0600) as join: { method: token, token: ${token} }`,
    );
    expect(r.stdout).toContain(
      'with no agent daemon running on that data directory: sigil agent run --config agent.yaml --once',
    );
  });
});
