/**
 * The files a join rule names, checked where the issuer reads them: `sigil ctl apply` (local mode)
 * warns on stderr and still applies; `sigil doctor` fails the join_rule_files check naming the
 * rule, the field and the errno. A walk of the docs met a typo in a CA path that showed only as
 * join_rule_unusable on the first join, with agents retrying against it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ruleFilesCheck } from '../../../src/doctor/server/rule-files.js';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import { initDataDir, openIssuerStores } from '../../../src/server/data-dir.js';
import { ruleFiles, unreadableRuleFiles } from '../../../src/server/policy/rule-files.js';
import { sigil } from '../../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'sigil-rule-files-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const here = join(root, 'ca.pem');
writeFileSync(here, 'x');
const aDir = join(root, 'certs');
mkdirSync(aDir);

describe('ruleFiles: every path field of a spec, by its name', () => {
  it('finds _file, _files and _dir fields at any depth, with their place', () => {
    const spec = {
      issuer: 'https://x',
      oidc: { ca_file: '/a.pem', jwks_file: '/j.json', audience: 'ca_file' },
      crl_files: ['/c1.crl', '/c2.crl'],
      certs_dir: '/certs',
      allow: [{ sub: '/not/a/path_file' }],
    };
    expect(ruleFiles('r', spec)).toEqual([
      { rule: 'r', field: 'oidc.ca_file', path: '/a.pem', dir: false },
      { rule: 'r', field: 'oidc.jwks_file', path: '/j.json', dir: false },
      { rule: 'r', field: 'crl_files[0]', path: '/c1.crl', dir: false },
      { rule: 'r', field: 'crl_files[1]', path: '/c2.crl', dir: false },
      { rule: 'r', field: 'certs_dir', path: '/certs', dir: true },
    ]);
  });

  it('reports what is missing, of the wrong type, or unreadable — and nothing that is fine', () => {
    const files = ruleFiles('r', {
      ca_file: here,
      certs_dir: aDir,
      jwks_file: join(root, 'nope.json'),
      crl_files: [aDir],
      other_dir: here,
    });
    expect(unreadableRuleFiles(files).map((f) => [f.field, f.problem])).toEqual([
      ['jwks_file', 'ENOENT'],
      ['crl_files[0]', 'not a regular file'],
      ['other_dir', 'not a directory'],
    ]);
  });
});

describe('doctor and ctl apply on a real data directory', () => {
  const dataDir = join(root, 'd');
  initDataDir(dataDir, 'example.org');
  const rule = (caFile: string) => `
kind: role
name: ci
spec: { max_ttl: 1h }
---
kind: bot
name: ci
spec: { roles: [ci] }
---
kind: join_rule
name: gh
spec:
  method: oidc
  bot: ci
  oidc: { provider: github, audience: sigil, ca_file: ${caFile}, allow: [{ repository: "org/repo" }] }
`;
  const check = () =>
    ruleFilesCheck.run(
      { dataDir, listen: undefined, full: false, now: () => Date.now() },
      new AbortController().signal,
    );

  it('doctor: ok with the file in place, fail naming rule, field, path and errno without it', async () => {
    const stores = openIssuerStores(dataDir);
    try {
      await runAdminOp(stores, 'apply', { yaml: rule(here) });
      expect(await check()).toEqual({ status: 'ok', detail: '1 file(s) named by 1 join rule(s), all readable' });
      await runAdminOp(stores, 'apply', { yaml: rule(join(root, 'typo.pem')) });
    } finally {
      await stores.close();
    }
    const r = await check();
    expect(r.status).toBe('fail');
    expect(r.detail).toBe(`join_rule/gh: oidc.ca_file ${join(root, 'typo.pem')} (ENOENT)`);
  });

  it('ctl apply (local): applies, and warns on stderr naming the file; stdout stays the applied list', async () => {
    const f = join(root, 'policy.yaml');
    writeFileSync(f, rule(join(root, 'typo2.pem')));
    const r = await sigil(['ctl', '--data-dir', dataDir, 'apply', '-f', f]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('join_rule/gh');
    expect(r.stderr).toContain(
      `warning: join_rule/gh: oidc.ca_file ${join(root, 'typo2.pem')} (ENOENT): the issuer cannot read it; joins under this rule fail join_rule_unusable until it can`,
    );
    writeFileSync(f, rule(here));
    const ok = await sigil(['ctl', '--data-dir', dataDir, 'apply', '-f', f]);
    expect([ok.code, ok.stderr]).toEqual([0, '']);
  });
});
