/**
 * Fuzzing the policy YAML apply path (server/policy/resources.ts through the admin `apply`
 * operation): multi-document YAML with anchors, aliases, tags and merge keys, resource
 * documents of every kind with arbitrary specs, and byte-level mutations of valid files.
 * Nothing may be written when a file is refused; every refusal is `policy_invalid` (or another
 * coded error), never a YAML library exception.
 */
import fc from 'fast-check';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { POLICY, startIssuer, type Harness } from '../integration/harness.js';
import { fuzzParams, fuzzTimeout, MAX_INPUT_ALLOC, MAX_INPUT_MS, mustBeCodedAsync, mutated } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startIssuer();
}, 120_000);
afterAll(async () => {
  await h?.close();
});

const RULES = `${POLICY}---
kind: join_rule
name: factory
spec:
  method: x509
  bot: gw
  x509:
    ca_files: [/etc/sigil/ca.pem]
    allow: [ { subject_cn: "gw-*" } ]
---
kind: join_rule
name: lab-tpm
spec:
  method: tpm
  bot: gw
  tpm:
    allow: [ { ek_public_hash: "sha256:${'ab'.repeat(32)}" } ]
---
kind: role
name: ops
spec:
  max_ttl: 1h
  allowed_outputs: [identity, ssh_user]
  ssh_logins: ["{{internal.logins}}", root]
---
kind: bot
name: anchors
spec: &s
  roles: [edge, ops]
  traits: { logins: [a, b] }
`;

const apply = (yaml: string): Promise<unknown> => runAdminOp(h.ctx.stores, 'apply', { yaml });
/** As the synchronous mustBeCoded checked it: coded errors only, bounded time and allocation. */
const mustApplyCoded = (what: string, yaml: string): Promise<void> =>
  mustBeCodedAsync(what, yaml, apply, {
    maxMs: yaml.length < 64 * 1024 ? MAX_INPUT_MS : MAX_INPUT_MS * 10,
    maxAlloc: MAX_INPUT_ALLOC,
  });

const yamlSnippets = fc.constantFrom(
  '&a ',
  '*a',
  '<<: *a\n',
  '!!binary ',
  '!!set ',
  '!!omap ',
  '!!timestamp ',
  '!!int ',
  '!!float .nan',
  '!foo ',
  '? ',
  ': ',
  '- ',
  '---\n',
  '...\n',
  '{',
  '}',
  '[',
  ']',
  '"',
  "'",
  '|\n  ',
  '>-\n  ',
  '#',
  '%YAML 1.1\n',
  '%TAG ! tag:x,2000:\n',
  '\t',
  '\n',
  'kind: ',
  'spec:\n  ',
  'name: x\n',
  '~',
  'null',
  '__proto__: ',
  'constructor: ',
);

describe('policy YAML fuzzing', () => {
  it('the valid seed applies', async () => {
    expect(await apply(RULES)).toBeDefined();
  });

  it(
    'byte-level mutations of valid policy files',
    async () => {
      const arb = mutated([Buffer.from(RULES)], () => []).map((b) => b.toString('utf8'));
      await fc.assert(
        fc.asyncProperty(arb, (y) => mustApplyCoded('apply(mutated)', y)),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'YAML constructs spliced into valid policy files',
    async () => {
      const arb = fc
        .tuple(fc.array(fc.tuple(fc.nat(), yamlSnippets), { minLength: 1, maxLength: 6 }))
        .map(([edits]) =>
          edits.reduce((t, [at, s]) => t.slice(0, at % (t.length + 1)) + s + t.slice(at % (t.length + 1)), RULES),
        );
      await fc.assert(
        fc.asyncProperty(arb, (y) => mustApplyCoded('apply(spliced)', y)),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'documents of every kind with arbitrary specs',
    async () => {
      const spec = fc.oneof(
        fc.jsonValue({ maxDepth: 3 }),
        fc.record(
          {
            roles: fc.array(fc.oneof(fc.constantFrom('edge', 'ops'), fc.string()), { maxLength: 3 }),
            traits: fc.jsonValue({ maxDepth: 2 }),
          },
          { requiredKeys: [] },
        ),
        fc.record(
          {
            method: fc.constantFrom('x509', 'tpm', 'token', 'oidc', 'aws_iid', 'azure', 'gcp', 'bad'),
            bot: fc.constantFrom('gw', 'nope'),
            x509: fc.jsonValue({ maxDepth: 3 }),
            tpm: fc.jsonValue({ maxDepth: 3 }),
            oidc: fc.jsonValue({ maxDepth: 3 }),
          },
          { requiredKeys: ['method', 'bot'] },
        ),
        fc.record(
          {
            max_ttl: fc.oneof(fc.string(), fc.double(), fc.integer()),
            allowed_outputs: fc.jsonValue(),
            ssh_logins: fc.array(fc.string()),
          },
          { requiredKeys: [] },
        ),
      );
      const doc = fc.record({
        kind: fc.oneof(fc.constantFrom('role', 'bot', 'join_rule'), fc.string()),
        name: fc.oneof(fc.constantFrom('a', 'gw', 'edge', 'x-1'), fc.string()),
        spec,
      });
      const arb = fc
        .array(doc, { minLength: 1, maxLength: 4 })
        .map((docs) => docs.map((d) => stringify(d)).join('---\n'));
      await fc.assert(
        fc.asyncProperty(arb, (y) => mustApplyCoded('apply(docs)', y)),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it('a refused file writes nothing', async () => {
    const count = async (): Promise<number> => {
      let n = 0;
      for (const k of ['role', 'bot', 'join_rule'] as const) n += (await h.ctx.stores.resources.list(k)).length;
      return n;
    };
    const before = await count();
    await expect(apply(`${RULES}---\nkind: bot\nname: broken\nspec:\n  roles: [missing-role]\n`)).rejects.toThrow(
      expect.objectContaining({ code: 'policy_invalid' }),
    );
    expect(await count()).toBe(before);
  });

  // Found while writing these tests: yaml's toJS() threw ReferenceError ("Excessive alias
  // count") out of parseResources, an `internal` error on the admin API. Fixed in resources.ts
  // by its owner meanwhile; kept as a regression.
  it('an alias bomb is refused policy_invalid, not a ReferenceError', async () => {
    const bomb = [
      'a: &a ["x","x","x","x","x","x","x","x","x"]',
      'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
      'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
      'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
      'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
      '',
    ].join('\n');
    await mustApplyCoded('apply(alias bomb)', bomb);
    await expect(apply(bomb)).rejects.toThrow(expect.objectContaining({ code: 'policy_invalid' }));
  });
});
