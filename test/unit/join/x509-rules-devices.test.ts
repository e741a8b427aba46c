/** x509 join rules at apply time, allow-list globs, device manifests and the challenge store. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { globMatch } from '../../../src/join/x509/allow.js';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import { parseResources } from '../../../src/server/policy/resources.js';
import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import type { Stores } from '../../../src/server/store/types.js';

function refusal(fn: () => unknown): SigilError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

async function rejection(p: Promise<unknown>): Promise<SigilError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(SigilError);
    return e as SigilError;
  }
  throw new Error('expected a refusal');
}

const rule = (x509: string): string =>
  `kind: join_rule\nname: factory\nspec:\n  method: x509\n  bot: gw\n  x509:\n${x509}`;

describe('x509 join rules', () => {
  it('accept the documented contract', () => {
    const docs = parseResources(
      rule(
        '    ca_files: [/etc/sigil/factory-ca.pem]\n    crl_files: [/etc/sigil/factory.crl]\n    allow: [ { subject_cn: "gw-*" }, { issuer: "CN=Factory CA, O=Acme", eku: [clientAuth] } ]\n    registered_only: true\n',
      ),
    );
    expect(docs).toHaveLength(1);
  });

  it('refuse what would silently widen or break the rule', () => {
    const cases: Array<[string, RegExp]> = [
      ['    ca_files: [relative/ca.pem]\n', /absolute/],
      ['    ca_files: []\n', /at least one CA/],
      ['    ca_files: [/ca.pem]\n    alow: []\n', /alow|Unrecognized/i],
      ['    ca_files: [/ca.pem]\n    allow: [ {} ]\n', /at least one field/],
      ['    ca_files: [/ca.pem]\n    allow: [ { issuer: "XX=1" } ]\n', /unknown attribute/],
      ['    ca_files: [/ca.pem]\n    allow: [ { eku: [clientauth] } ]\n', /key purpose/],
      ['    ca_files: [/ca.pem]\n    max_intermediates: 9\n', /max_intermediates/],
    ];
    for (const [block, re] of cases) {
      const e = refusal(() => parseResources(rule(block)));
      expect(e.code).toBe('policy_invalid');
      expect(e.message).toMatch(re);
    }
  });

  it('globs are anchored; * and ? only', () => {
    expect(globMatch('gw-*', 'gw-17')).toBe(true);
    expect(globMatch('gw-*', 'xgw-17')).toBe(false);
    expect(globMatch('gw-??', 'gw-1')).toBe(false);
    expect(globMatch('a.b', 'axb')).toBe(false);
    expect(globMatch('*.Edge.test', 'x.edge.TEST', true)).toBe(true);
  });
});

describe('devices.import', () => {
  let stores: Stores;
  const fp = (c: string): string => `sha256:${c.repeat(64)}`;
  beforeEach(async () => {
    stores = openSqliteStores(':memory:');
    await runAdminOp(
      stores,
      'apply',
      {
        yaml: `kind: role\nname: edge\nspec: {}\n---\nkind: bot\nname: gw\nspec: { roles: [edge] }\n---\n${rule('    ca_files: [/ca.pem]\n    registered_only: true\n')}`,
      },
      1,
    );
  });
  afterEach(() => stores.close());

  it('imports, is idempotent, accepts the colon fingerprint form, and audits changes only', async () => {
    const colon = 'AB:'.repeat(31) + 'AB';
    const jsonl = [
      JSON.stringify({ serial: 'S1', idevid_fingerprint: fp('a'), ek_public_hash: fp('e'), batch: 7 }),
      '',
      JSON.stringify({ serial: 'S2', idevid_fingerprint: colon }),
    ].join('\n');
    expect(await runAdminOp(stores, 'devices.import', { jsonl, rule: 'factory' }, 2)).toEqual({
      lines: 2,
      created: 2,
      updated: 0,
      unchanged: 0,
      rule: 'factory',
    });
    expect((await stores.devices.getByFingerprint(`sha256:${'ab'.repeat(32)}`))?.serial).toBe('S2');
    expect((await stores.devices.getByFingerprint(fp('a')))?.manifest).toMatchObject({ batch: 7 });
    const audits = (await stores.audit.list()).length;
    expect(await runAdminOp(stores, 'devices.import', { jsonl, rule: 'factory' }, 3)).toEqual({
      lines: 2,
      created: 0,
      updated: 0,
      unchanged: 2,
      rule: 'factory',
    });
    expect((await stores.audit.list()).length).toBe(audits);
    // Moving the devices to "any rule" is an update.
    expect(await runAdminOp(stores, 'devices.import', { jsonl }, 4)).toMatchObject({ updated: 2 });
  });

  it('is all or nothing and names each bad line', async () => {
    const jsonl = [
      JSON.stringify({ serial: 'S1', idevid_fingerprint: fp('a') }),
      '[1,2]',
      JSON.stringify({ serial: '', idevid_fingerprint: fp('b') }),
      JSON.stringify({ serial: 'S4', idevid_fingerprint: 'md5:abc' }),
      JSON.stringify({ serial: 'S5', idevid_fingerprint: fp('a') }),
    ].join('\n');
    const e = await rejection(runAdminOp(stores, 'devices.import', { jsonl, source: 'm.jsonl' }, 2));
    expect(e.code).toBe('manifest_invalid');
    expect(e.message).toMatch(
      /^m\.jsonl: 4 of 5 lines are invalid, nothing was imported: line 2: .*; line 3: serial: .*; line 4: idevid_fingerprint: .*; line 5: idevid_fingerprint sha256:a+ is also on line 1/,
    );
    expect(await stores.devices.list()).toEqual([]);
  });

  it('refuses a fingerprint registered as another device, and an unknown or non-x509 rule', async () => {
    await runAdminOp(
      stores,
      'devices.import',
      { jsonl: JSON.stringify({ serial: 'S1', idevid_fingerprint: fp('a') }) },
      2,
    );
    expect(
      (
        await rejection(
          runAdminOp(
            stores,
            'devices.import',
            { jsonl: JSON.stringify({ serial: 'OTHER', idevid_fingerprint: fp('a') }) },
            3,
          ),
        )
      ).message,
    ).toMatch(/already registered as device S1/);
    expect(
      (
        await rejection(
          runAdminOp(
            stores,
            'devices.import',
            { jsonl: JSON.stringify({ serial: 'S9', idevid_fingerprint: fp('9') }), rule: 'nope' },
            3,
          ),
        )
      ).code,
    ).toBe('not_found');
  });
});

describe('challenge store', () => {
  let stores: Stores;
  beforeEach(() => {
    stores = openSqliteStores(':memory:');
  });
  afterEach(() => stores.close());

  it('is single use, says why a consume failed, and prunes expired rows', async () => {
    const rec = {
      id: 'c'.repeat(22),
      method: 'x509',
      requestId: 'r'.repeat(22),
      spkiHash: 'sha256:00',
      nonce: Buffer.alloc(32, 7),
      state: { chain: ['x'] },
      createdAt: 1000,
      expiresAt: 61_000,
    };
    await stores.challenges.create(rec);
    expect(await stores.challenges.get(rec.id)).toEqual({ ...rec, usedAt: null });
    expect(await stores.challenges.consume('d'.repeat(22), 2000)).toEqual({ ok: false, reason: 'challenge_invalid' });
    expect(await stores.challenges.consume(rec.id, 2000)).toEqual({ ok: true });
    expect(await stores.challenges.consume(rec.id, 2001)).toEqual({ ok: false, reason: 'challenge_reused' });
    await stores.challenges.create({ ...rec, id: 'e'.repeat(22) });
    expect(await stores.challenges.consume('e'.repeat(22), 61_000)).toEqual({ ok: false, reason: 'challenge_expired' });
    expect(await stores.challenges.prune(61_001)).toBe(2);
  });
});
