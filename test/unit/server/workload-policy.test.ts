/**
 * The `workload` policy resource (server/policy/workload.ts): schema, selector grammar, the
 * SPIFFE ID namespace checks (node and issuer identities are Sigil's own; the trust domain is the
 * issuer's), which nodes an entry applies to, and `ctl apply` with its cross-references.
 */
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { parseSelector } from '../../../src/protocol/workload-messages.js';
import { applyResources, parseResources } from '../../../src/server/policy/resources.js';
import {
  checkWorkloadSpiffeId,
  unmetNodeCriterion,
  workloadEntry,
  type WorkloadEntry,
} from '../../../src/server/policy/workload.js';
import type { InstanceRecord, Resource } from '../../../src/server/store/types.js';
import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import { MIGRATIONS, migrate } from '../../../src/server/store/sqlite/migrations.js';

const TD = 'example.org';

const doc = (spec: string, name = 'web'): string => `kind: workload\nname: ${name}\nspec:\n${spec}`;
const BASE = `  spiffe_id: spiffe://example.org/web\n  selectors: [unix:uid:1000]\n  nodes: { bots: [gw] }\n`;

function codeOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SigilError);
    return { code: (e as SigilError).code, message: (e as Error).message };
  }
  throw new Error('expected a refusal');
}

describe('workload resource: schema', () => {
  it('accepts a full entry and keeps the spec as written', () => {
    const [d] = parseResources(
      doc(
        `${BASE}  ttl: 2h\n  jwt_ttl: 5m\n  dns_names: [web.internal]\n  jwt_audiences: [vault]\n  selectors: [unix:uid:1000, systemd:unit:web.service, unix:path:/usr/bin/envoy]\n`.replace(
          '  selectors: [unix:uid:1000]\n',
          '',
        ),
      ),
      'f.yaml',
      TD,
    );
    expect(d).toMatchObject({ kind: 'workload', name: 'web', spec: { ttl: '2h', jwt_audiences: ['vault'] } });
  });

  it.each([
    [
      'no selector',
      `  spiffe_id: spiffe://example.org/web\n  selectors: []\n  nodes: { bots: [gw] }\n`,
      /at least one selector/,
    ],
    ['an unknown selector type', BASE.replace('unix:uid:1000', 'k8s:ns:default'), /not <type>:<value>/],
    ['a uid with a leading zero', BASE.replace('unix:uid:1000', 'unix:uid:01000'), /without leading zeros/],
    ['a relative path', BASE.replace('unix:uid:1000', 'unix:path:/usr/../bin/sh'), /canonical executable path/],
    ['a short sha256', BASE.replace('unix:uid:1000', 'unix:sha256:abcd'), /64 lower-case hex/],
    ['a unit that is no service', BASE.replace('unix:uid:1000', 'systemd:unit:web'), /\.service or \.scope/],
    ['no node criterion', BASE.replace('{ bots: [gw] }', '{}'), /never applies to every node/],
    ['a typo', `${BASE}  ttll: 1h\n`, /ttll/],
    ['a TTL under the floor', `${BASE}  ttl: 5s\n`, /at least 30s/],
    ['an upper-case DNS name', `${BASE}  dns_names: [Web.internal]\n`, /lower-case DNS name/],
    ['an audience with a comma', `${BASE}  jwt_audiences: ["a,b"]\n`, /without spaces or commas/],
    ['a malformed SPIFFE ID', BASE.replace('spiffe://example.org/web', 'spiffe://example.org/a//b'), /path segment/],
  ])('refuses %s (policy_invalid, naming the field)', (_what, spec, message) => {
    const r = codeOf(() => parseResources(doc(spec), 'f.yaml', TD));
    expect(r.code).toBe('policy_invalid');
    expect(r.message).toMatch(message);
  });

  it('parses selectors to type and value', () => {
    expect(parseSelector('systemd:unit:getty@tty1.service')).toEqual({
      type: 'systemd:unit',
      value: 'getty@tty1.service',
    });
    expect(parseSelector('unix:uid:4294967295')).toEqual({ type: 'unix:uid', value: '4294967295' });
    expect(parseSelector('unix:uid:4294967296')).toMatch(/above 2\^32-1/);
  });
});

describe('workload resource: SPIFFE ID namespace', () => {
  it.each([
    ['a node identity', 'spiffe://example.org/bot/gw/i-1'],
    ['the node namespace itself', 'spiffe://example.org/bot'],
    ['a node identity in other case', 'spiffe://example.org/BOT/gw/i-1'],
    ['the issuer identity (agents accept it as the signer of every answer)', 'spiffe://example.org/sigil/issuer'],
    ["the trust domain's own ID (the CA's)", 'spiffe://example.org'],
  ])('refuses %s: workload_id_reserved', (_what, id) => {
    const r = codeOf(() => parseResources(doc(BASE.replace('spiffe://example.org/web', id)), 'f.yaml', TD));
    expect(r.code).toBe('workload_id_reserved');
    expect(r.message).toContain(id);
  });

  it('refuses an ID outside the trust domain: workload_id_outside_trust_domain', () => {
    const r = codeOf(() =>
      parseResources(doc(BASE.replace('spiffe://example.org/web', 'spiffe://other.org/web')), 'f.yaml', TD),
    );
    expect(r.code).toBe('workload_id_outside_trust_domain');
    expect(r.message).toMatch(/use spiffe:\/\/example\.org\//);
  });

  it('without a known trust domain, still refuses reserved paths', () => {
    expect(codeOf(() => checkWorkloadSpiffeId('spiffe://any.org/sigil/x', undefined, 'w')).code).toBe(
      'workload_id_reserved',
    );
    expect(() => checkWorkloadSpiffeId('spiffe://any.org/web', undefined, 'w')).not.toThrow();
    expect(() => checkWorkloadSpiffeId('spiffe://example.org/bots/x', TD, 'w')).not.toThrow();
  });
});

describe('workload resource: which nodes', () => {
  const inst = (over: Partial<InstanceRecord> = {}): InstanceRecord => ({
    id: 'i-1',
    bot: 'gw',
    joinMethod: 'tpm',
    spiffeId: 'spiffe://example.org/bot/gw/i-1',
    generation: 1,
    locked: false,
    lockReason: null,
    facts: { tpm_rule: 'edge-tpm', region: 'eu' },
    keyStorage: 'tpm',
    exportable: false,
    createdAt: 0,
    updatedAt: 0,
    lastSeenAt: 0,
    currentSerial: null,
    currentNotAfter: null,
    ...over,
  });
  const entry = (nodes: Record<string, unknown>): WorkloadEntry =>
    workloadEntry(
      {
        kind: 'workload',
        name: 'web',
        spec: { spiffe_id: 'spiffe://example.org/web', selectors: ['unix:uid:1'], nodes },
        createdAt: 0,
        updatedAt: 0,
      } as Resource,
      TD,
    );
  const rules = new Map([
    ['edge-tpm', 'tpm'],
    ['other-x509', 'x509'],
  ]);

  it('every named criterion must hold; the refusal names the failing one', () => {
    expect(unmetNodeCriterion(entry({ bots: ['gw'] }), inst(), rules)).toBeUndefined();
    expect(unmetNodeCriterion(entry({ bots: ['db'] }), inst(), rules)).toMatch(/bot gw is not one of \[db\]/);
    expect(unmetNodeCriterion(entry({ join_rules: ['edge-tpm'] }), inst(), rules)).toBeUndefined();
    expect(unmetNodeCriterion(entry({ join_rules: ['other-x509'] }), inst(), rules)).toMatch(/rule edge-tpm/);
    // The rule fact alone is not enough: the rule must be of the method the instance joined with
    // (a rule re-applied under another method no longer covers nodes joined by the old one).
    expect(
      unmetNodeCriterion(
        entry({ join_rules: ['edge-tpm'] }),
        inst({ joinMethod: 'x509', facts: { x509_rule: 'edge-tpm' } }),
        rules,
      ),
    ).toMatch(/did not join/);
    expect(unmetNodeCriterion(entry({ facts: { region: 'eu' } }), inst(), rules)).toBeUndefined();
    expect(unmetNodeCriterion(entry({ facts: { region: 'us' } }), inst(), rules)).toMatch(/fact region/);
    expect(unmetNodeCriterion(entry({ bots: ['gw'], facts: { region: 'us' } }), inst(), rules)).toMatch(/fact region/);
  });

  it('never selects nodes by what the agent reports about itself (agent_version, transport)', () => {
    // Review of issue #16: any enrolled machine can claim any version; an entry selecting one was
    // handed to a machine of another bot. Refused when applied, and when a stored one is used.
    for (const facts of [
      { agent_version: '2.4.0-payments' },
      { transport: 'https' },
      { region: 'eu', transport: 'mqtt' },
    ])
      expect(() => entry({ facts })).toThrow(/nodes\.facts may not name agent_version or transport/);
    const stored = { ...entry({ facts: { region: 'eu' } }) };
    stored.spec = { ...stored.spec, nodes: { facts: { agent_version: '2.4.0' } } };
    expect(unmetNodeCriterion(stored, inst({ facts: { agent_version: '2.4.0' } }), rules)).toMatch(
      /reported by the agent itself/,
    );
  });

  it('the TTL is clamped to 24 h and the JWT TTL to the X.509 one', () => {
    const e = workloadEntry(
      {
        kind: 'workload',
        name: 'w',
        spec: {
          spiffe_id: 'spiffe://example.org/w',
          selectors: ['unix:uid:1'],
          nodes: { bots: ['gw'] },
          ttl: '48h',
          jwt_ttl: '72h',
        },
        createdAt: 0,
        updatedAt: 0,
      },
      TD,
    );
    expect([e.requestedTtlS, e.ttlS, e.jwtTtlS]).toEqual([172800, 86400, 86400]);
  });

  it('a stored entry is re-checked against the trust domain when used (a database writer bypasses apply)', () => {
    const rec = {
      kind: 'workload',
      name: 'evil',
      spec: { spiffe_id: 'spiffe://example.org/sigil/issuer', selectors: ['unix:uid:1'], nodes: { bots: ['gw'] } },
      createdAt: 0,
      updatedAt: 0,
    } as Resource;
    expect(codeOf(() => workloadEntry(rec, TD)).code).toBe('workload_id_reserved');
  });
});

describe('workload resource: apply', () => {
  it('checks that the bots and join rules it names exist; writes nothing otherwise; audits the apply', async () => {
    const stores = openSqliteStores(':memory:');
    try {
      await applyResources(
        stores,
        parseResources('kind: role\nname: r\nspec: {}\n---\nkind: bot\nname: gw\nspec: { roles: [r] }\n'),
        1,
      );
      const bad = parseResources(doc(BASE.replace('[gw]', '[nobody]')), 'f.yaml', TD);
      await expect(applyResources(stores, bad, 2)).rejects.toMatchObject({
        code: 'policy_invalid',
        message: expect.stringMatching(/bot "nobody" does not exist/),
      });
      expect(await stores.resources.list('workload')).toEqual([]);
      const rule = parseResources(doc(`${BASE}`.replace('{ bots: [gw] }', '{ join_rules: [nope] }')), 'f.yaml', TD);
      await expect(applyResources(stores, rule, 2)).rejects.toMatchObject({
        message: expect.stringMatching(/join_rule "nope"/),
      });
      const out = await applyResources(stores, parseResources(doc(BASE), 'f.yaml', TD), 3);
      expect(out).toEqual([{ kind: 'workload', name: 'web', result: 'created' }]);
      const rows = await stores.audit.list();
      expect(rows.at(-1)).toMatchObject({ action: 'apply', outcome: 'ok', details: { kind: 'workload', name: 'web' } });
    } finally {
      await stores.close();
    }
  });
});

describe('workload resource: SQLite migration 6', () => {
  it('widens the kind CHECK of a database from before it, keeping every resource', () => {
    const db = new Database(':memory:');
    try {
      migrate(db, MIGRATIONS.slice(0, 5));
      db.prepare("INSERT INTO resources VALUES ('bot', 'gw', '{}', 1, 2)").run();
      expect(() => db.prepare("INSERT INTO resources VALUES ('workload', 'w', '{}', 1, 2)").run()).toThrow(/CHECK/);
      migrate(db);
      expect(db.prepare('SELECT * FROM resources').all()).toEqual([
        { kind: 'bot', name: 'gw', spec: '{}', created_at: 1, updated_at: 2 },
      ]);
      db.prepare("INSERT INTO resources VALUES ('workload', 'w', '{}', 1, 2)").run();
      expect(() => db.prepare("INSERT INTO resources VALUES ('nope', 'w', '{}', 1, 2)").run()).toThrow(/CHECK/);
    } finally {
      db.close();
    }
  });
});
