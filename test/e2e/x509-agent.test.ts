/**
 * The x509 join through the real agent process: a device chain made with plain openssl (an
 * enterprise CA nobody here wrote code for), the challenge round run by `sigil agent run`,
 * re-attestation without a person, and the answer verified by openssl.
 */
import { execFileSync } from 'node:child_process';
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
import { OpensslPki } from '../helpers/openssl-pki.js';

describe('x509 join through `sigil agent run`', () => {
  const tmp = tempDir();
  let issuer: RunningIssuer;
  let pki: OpensslPki;

  beforeAll(async () => {
    issuer = await startIssuer(tmp.path);
    pki = new OpensslPki(join(tmp.path, 'pki'));
    const root = pki.root('enterprise-root', '/O=Acme/CN=Acme Root', 'ec');
    const inter = pki.intermediate('device-ca', root, '/O=Acme/CN=Acme Device CA', 'ec');
    const chain = join(tmp.path, 'pki', 'ca-bundle.pem');
    writeFileSync(chain, root.pem);
    await applyResources(
      issuer,
      tmp.path,
      `${RESOURCES}---\nkind: join_rule\nname: factory\nspec:\n  method: x509\n  bot: gw\n  x509:\n    ca_files: [${chain}]\n    allow: [ { subject_cn: "gw-*" } ]\n`,
    );
    pki.leaf('gw-0001', inter, '/O=Acme/CN=gw-0001', { kind: 'ec' });
    pki.leaf('printer-7', inter, '/O=Acme/CN=printer-7', { kind: 'ec' });
  });
  afterAll(async () => {
    await issuer?.stop();
    tmp.cleanup();
  });

  const agentConfig = (name: string): { config: string; out: string } => {
    const config = join(tmp.path, `${name}.yaml`);
    const out = join(tmp.path, name, 'identity');
    writeFileSync(
      config,
      `issuer: ${issuer.url}\nca_pin: ${issuer.pin}\ndata_dir: ${join(tmp.path, name, 'data')}\n` +
        `join:\n  method: x509\n  x509: { cert: pki/${name}.pem, chain: pki/device-ca.pem, key: pki/${name}.key }\n` +
        `outputs:\n  - { type: identity, path: ${out} }\n`,
    );
    return { config, out };
  };

  it('joins with a challenge round, renews, and re-attests as the same instance', async () => {
    const a = agentConfig('gw-0001');
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(joined.result).toBe('joined');
    const svid = join(a.out, 'svid.pem');
    expect(
      execFileSync('openssl', ['verify', '-CAfile', join(a.out, 'bundle.pem'), '-untrusted', svid, svid], {
        encoding: 'utf8',
      }),
    ).toContain(': OK');
    const inst = (await sigilJson(['ctl', '--data-dir', issuer.dataDir, 'instances', 'ls']))[0];
    expect(inst.join_method).toBe('x509');
    expect((await sigilJson(['agent', 'renew', '--config', a.config])).generation).toBe(2);

    // A new data dir = a machine that lost its state: it joins again by itself, same instance.
    const again = agentConfig('gw-0001');
    writeFileSync(
      again.config,
      (await import('node:fs'))
        .readFileSync(again.config, 'utf8')
        .replace(/data_dir: .*/, `data_dir: ${join(tmp.path, 'gw-0001', 'data2')}`),
    );
    const rejoined = await sigilJson(['agent', 'run', '--config', again.config, '--once']);
    expect(rejoined.spiffe_id).toBe(joined.spiffe_id);
    expect(rejoined.generation).toBe(3);
  });

  it('a device outside the allow list is refused with its code', async () => {
    const r = await sigil(['agent', 'run', '--config', agentConfig('printer-7').config, '--once']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[x509_not_allowed\]/);
  });
});
