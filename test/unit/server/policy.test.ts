import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { applyResources, parseResources, resolveBot } from '../../../src/server/policy/resources.js';
import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import type { Stores } from '../../../src/server/store/types.js';

function refusal(fn: () => unknown): SigilError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw new Error(`expected a SigilError, got ${String(e)}`);
  }
  throw new Error('expected a refusal, nothing was thrown');
}

async function rejection(p: Promise<unknown>): Promise<SigilError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw new Error(`expected a SigilError, got ${String(e)}`);
  }
  throw new Error('expected a refusal, nothing was thrown');
}

const ROLE = 'kind: role\nname: edge\nspec:\n  max_ttl: 2h\n  allowed_outputs: [identity]\n';
const BOT = 'kind: bot\nname: gw\nspec:\n  roles: [edge]\n  traits:\n    site: [berlin]\n';
const RULE =
  'kind: join_rule\nname: gw-tokens\nspec:\n  method: gcp\n  bot: gw\n  gcp: { audience: sigil, allow: [{ project_id: p1 }] }\n';
const multi = (...docs: string[]): string => docs.join('---\n');

describe('parseResources', () => {
  it('parses a valid multi-document file, keeping specs as written', () => {
    const docs = parseResources(multi(ROLE, BOT, RULE) + '---\n', 'policy.yaml');
    expect(docs).toEqual([
      { kind: 'role', name: 'edge', spec: { max_ttl: '2h', allowed_outputs: ['identity'] } },
      { kind: 'bot', name: 'gw', spec: { roles: ['edge'], traits: { site: ['berlin'] } } },
      {
        kind: 'join_rule',
        name: 'gw-tokens',
        spec: { method: 'gcp', bot: 'gw', gcp: { audience: 'sigil', allow: [{ project_id: 'p1' }] } },
      },
    ]);
  });

  it('refuses an unknown spec key with a message naming the key, document and resource', () => {
    const e = refusal(() =>
      parseResources(multi(BOT, 'kind: role\nname: edge\nspec:\n  max_tll: 2h\n'), 'policy.yaml'),
    );
    expect(e.code).toBe('policy_invalid');
    expect(e.message).toMatch(/max_tll/);
    expect(e.message).toMatch(/policy\.yaml document 2/);
    expect(e.message).toMatch(/role edge/);
  });

  it('refuses an unknown top-level key, naming it', () => {
    const e = refusal(() => parseResources(`${ROLE}metadata:\n  labels: {}\n`));
    expect(e.code).toBe('policy_invalid');
    expect(e.message).toMatch(/metadata/);
  });

  it('refuses an unknown bot spec key even when the rest is valid', () => {
    const e = refusal(() => parseResources('kind: bot\nname: gw\nspec:\n  roles: [edge]\n  role: admin\n'));
    expect(e.message).toMatch(/"role"/);
  });

  it.each(['GW', 'gw_1', '-gw', 'gw-', 'g.w', '', 'a'.repeat(64)])('refuses the name %j', (name) => {
    const e = refusal(() => parseResources(`kind: role\nname: "${name}"\nspec: {}\n`));
    expect(e.code).toBe('policy_invalid');
    expect(e.message).toMatch(/name/);
  });

  it('accepts names of 1 and 63 characters and inner dashes', () => {
    for (const name of ['a', 'a'.repeat(63), 'edge-gw-2'])
      expect(parseResources(`kind: role\nname: ${name}\nspec: {}\n`)[0]!.name).toBe(name);
  });

  it('refuses a bad role name inside a bot, a bot without roles, a bad trait name', () => {
    expect(refusal(() => parseResources('kind: bot\nname: gw\nspec:\n  roles: [Edge]\n')).message).toMatch(/roles/);
    expect(refusal(() => parseResources('kind: bot\nname: gw\nspec:\n  roles: []\n')).message).toMatch(
      /at least one role/,
    );
    expect(
      refusal(() => parseResources('kind: bot\nname: gw\nspec:\n  roles: [edge]\n  traits:\n    Site: [x]\n')).code,
    ).toBe('policy_invalid');
  });

  it('refuses a bad duration and an unknown output kind', () => {
    expect(refusal(() => parseResources('kind: role\nname: r\nspec:\n  max_ttl: forever\n')).message).toMatch(
      /forever/,
    );
    expect(refusal(() => parseResources('kind: role\nname: r\nspec:\n  max_ttl: 0\n')).code).toBe('policy_invalid');
    expect(refusal(() => parseResources('kind: role\nname: r\nspec:\n  allowed_outputs: [vpn]\n')).message).toMatch(
      /allowed_outputs/,
    );
  });

  it('refuses the same kind/name declared twice (the same name in another kind is fine)', () => {
    const e = refusal(() => parseResources(multi(ROLE, BOT, ROLE), 'p.yaml'));
    expect(e.code).toBe('policy_invalid');
    expect(e.message).toMatch(/role\/edge is declared twice/);
    expect(parseResources(multi(ROLE, 'kind: bot\nname: edge\nspec:\n  roles: [edge]\n'))).toHaveLength(2);
  });

  it.each(['', '\n', '---\n', '---\n---\n', '# only a comment\n'])('refuses an empty file %j', (text) => {
    const e = refusal(() => parseResources(text, 'empty.yaml'));
    expect(e.code).toBe('policy_invalid');
    expect(e.message).toMatch(/empty\.yaml: no resources found/);
  });

  it.each(['kind: [role\n', 'kind: role\n  name: x\n bad', 'a: 1\na: 2\n', '\tkind: role\n'])(
    'refuses bad YAML %j',
    (text) => {
      const e = refusal(() => parseResources(text));
      expect(e.code).toBe('policy_invalid');
      expect(e.message).toMatch(/YAML error/);
      expect(e.message).not.toMatch(/\n/);
    },
  );

  it('refuses documents that are not mappings or have an unknown kind', () => {
    expect(refusal(() => parseResources('- kind: role\n')).code).toBe('policy_invalid');
    expect(refusal(() => parseResources('just a string\n')).code).toBe('policy_invalid');
    expect(refusal(() => parseResources('kind: user\nname: u\nspec: {}\n')).message).toMatch(/kind/);
    expect(refusal(() => parseResources('kind: role\nname: r\n')).message).toMatch(/spec/);
  });
});

describe('applyResources', () => {
  let stores: Stores;
  beforeEach(() => {
    stores = openSqliteStores(':memory:');
  });
  afterEach(() => stores.close());

  const snapshot = async () => ({
    roles: (await stores.resources.list('role')).map((r) => r.name),
    bots: (await stores.resources.list('bot')).map((r) => r.name),
    rules: (await stores.resources.list('join_rule')).map((r) => r.name),
    audit: (await stores.audit.list()).length,
  });

  it('is all-or-nothing: a bot referencing a missing role writes nothing at all', async () => {
    const docs = parseResources(multi(ROLE, 'kind: bot\nname: gw\nspec:\n  roles: [edge, nope]\n'));
    const before = await snapshot();
    const e = await rejection(applyResources(stores, docs, 1000));
    expect(e.code).toBe('policy_invalid');
    expect(e.message).toMatch(/bot gw: role "nope" does not exist/);
    expect(await snapshot()).toEqual(before);
  });

  it('is all-or-nothing for a join_rule referencing a missing bot', async () => {
    const before = await snapshot();
    const e = await rejection(
      applyResources(
        stores,
        parseResources(
          multi(
            ROLE,
            'kind: join_rule\nname: r\nspec:\n  method: gcp\n  bot: ghost\n  gcp: { audience: sigil, allow: [{ project_id: p1 }] }\n',
          ),
        ),
        1000,
      ),
    );
    expect(e.message).toMatch(/bot "ghost" does not exist/);
    expect(await snapshot()).toEqual(before);
  });

  it('resolves references against the batch (in any order) and the store', async () => {
    const out = await applyResources(stores, parseResources(multi(RULE, BOT, ROLE)), 1000);
    expect(out.map((o) => `${o.kind}/${o.name}:${o.result}`)).toEqual([
      'role/edge:created',
      'bot/gw:created',
      'join_rule/gw-tokens:created',
    ]);
    // A later file may reference what is already stored.
    expect(
      (await applyResources(stores, parseResources('kind: bot\nname: gw2\nspec:\n  roles: [edge]\n'), 2000))[0]!.result,
    ).toBe('created');
  });

  it('reports created / unchanged / updated and audits only changes', async () => {
    await applyResources(stores, parseResources(multi(ROLE, BOT)), 1000);
    const audit = (await stores.audit.list()).length;
    expect((await applyResources(stores, parseResources(multi(ROLE, BOT)), 2000)).map((o) => o.result)).toEqual([
      'unchanged',
      'unchanged',
    ]);
    expect((await stores.audit.list()).length).toBe(audit);
    const changed = await applyResources(stores, parseResources(multi(ROLE.replace('2h', '3h'), BOT)), 3000);
    expect(changed.map((o) => o.result)).toEqual(['updated', 'unchanged']);
    const rows = (await stores.audit.list()).slice(audit);
    expect(rows.map((r) => [r.action, r.outcome, r.details])).toEqual([
      ['apply', 'ok', { kind: 'role', name: 'edge', result: 'updated' }],
    ]);
  });

  it('resolveBot: max TTL is the longest role max (24 h when unset), unknown bots refused', async () => {
    await applyResources(
      stores,
      parseResources(
        multi(
          ROLE,
          'kind: role\nname: short\nspec:\n  max_ttl: 10m\n',
          BOT,
          'kind: bot\nname: s\nspec:\n  roles: [short]\n',
        ),
      ),
      1000,
    );
    expect(await resolveBot(stores, 'gw')).toEqual({
      name: 'gw',
      roles: ['edge'],
      traits: { site: ['berlin'] },
      maxTtlS: 7200,
    });
    expect((await resolveBot(stores, 's')).maxTtlS).toBe(600);
    await applyResources(
      stores,
      parseResources('kind: role\nname: open\nspec: {}\n---\nkind: bot\nname: both\nspec:\n  roles: [short, open]\n'),
      2000,
    );
    expect((await resolveBot(stores, 'both')).maxTtlS).toBe(86400);
    expect((await rejection(resolveBot(stores, 'ghost'))).code).toBe('unknown_bot');
  });
});
