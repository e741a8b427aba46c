/**
 * Issue #11 item 9 (a, b): `sigil ctl apply` input that used to be mis-answered.
 *  (a) a YAML alias bomb answered `internal` (exit 75, "try again") instead of policy_invalid;
 *  (b) a join_rule with an unknown method was stored, and could never match anything.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import { initDataDir } from '../../../src/server/data-dir.js';
import { parseResources } from '../../../src/server/policy/resources.js';
import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import { sigil } from '../../helpers/cli.js';

const ROLE = 'kind: role\nname: edge\nspec:\n  max_ttl: 1h\n';
const BOT = 'kind: bot\nname: gw\nspec:\n  roles: [edge]\n';
/** "Billion laughs": 9 levels of 10 aliases each expand to 10^9 strings. */
const BOMB = [
  'kind: role',
  'name: edge',
  'x0: &a0 [lol]',
  ...Array.from({ length: 9 }, (_, i) => `x${i + 1}: &a${i + 1} [${Array(10).fill(`*a${i}`).join(', ')}]`),
  'spec: {}',
  '',
].join('\n');

describe('apply input hardening (issue #11 item 9a, 9b)', () => {
  it('refuses a YAML alias bomb as policy_invalid, quickly', () => {
    const t0 = Date.now();
    expect(() => parseResources(BOMB, 'bomb.yaml')).toThrow(
      expect.objectContaining({
        code: 'policy_invalid',
        message: expect.stringMatching(/bomb\.yaml document 1: YAML error: .*alias/i),
      }),
    );
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('still accepts a few ordinary aliases', () => {
    const docs = parseResources(
      `kind: role\nname: edge\nspec:\n  ssh_logins: &l [ops, deploy]\n  db_users: *l\n  max_ttl: 1h\n`,
    );
    expect(docs[0]!.spec).toMatchObject({ db_users: ['ops', 'deploy'] });
  });

  it('refuses a join_rule whose method is unknown, naming the methods that have rules', () => {
    for (const method of ['tmp', 'token', 'k8s_psat']) {
      const rule = `kind: join_rule\nname: racks\nspec:\n  method: ${method}\n  bot: gw\n  ${method}: {}\n`;
      expect(() => parseResources([ROLE, BOT, rule].join('---\n'))).toThrow(
        expect.objectContaining({
          code: 'policy_invalid',
          message: expect.stringMatching(
            new RegExp(
              `join_rule racks: unknown method "${method}" \\(join rules exist for: aws_iid, azure, gcp, oidc, tpm, x509; token joins need no rule\\)`,
            ),
          ),
        }),
      );
    }
  });

  it('nothing is stored when apply refuses', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-pol-hard-'));
    try {
      const stores = openSqliteStores(join(dir, 'db'));
      await expect(
        runAdminOp(stores, 'apply', {
          yaml: [ROLE, BOT, 'kind: join_rule\nname: r\nspec:\n  method: tmp\n  bot: gw\n'].join('---\n'),
        }),
      ).rejects.toMatchObject({ code: 'policy_invalid' });
      expect(await stores.resources.list('role')).toEqual([]);
      await stores.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('CLI: sigil ctl apply of an alias bomb prints error[policy_invalid] and exits 2 (was internal, 75)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-pol-hard-'));
    try {
      initDataDir(join(dir, 'issuer'), 'example.org');
      writeFileSync(join(dir, 'bomb.yaml'), BOMB);
      const r = await sigil(['ctl', '--data-dir', join(dir, 'issuer'), 'apply', '-f', join(dir, 'bomb.yaml')]);
      expect(r.stderr).toMatch(/^error\[policy_invalid\]: /);
      expect(r.code).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
