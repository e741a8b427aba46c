/**
 * The join-method registry (src/join/registry.ts, agent-methods.ts, server-methods.ts): one
 * descriptor per method shared by both sides, names and path keys derived from it, no import
 * side effects, and unknown methods refused — at `sigil ctl apply` and at agent start — with
 * the list of the known ones.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { JOIN_METHOD_NAMES, parseAgentConfig, type AgentConfig } from '../../../src/agent/config.js';
import { loadJoinMethod } from '../../../src/agent/join-method.js';
import { ERROR_TABLE, SigilError } from '../../../src/errors.js';
import { AGENT_JOIN_METHODS } from '../../../src/join/agent-methods.js';
import { createJoinMethods, JOIN_RULE_SCHEMAS, SERVER_JOIN_METHODS } from '../../../src/join/server-methods.js';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import { parseResources } from '../../../src/server/policy/resources.js';
import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';

const PIN = `sha256:${'a'.repeat(64)}`;

function refusal(fn: () => unknown): SigilError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SigilError);
    return e as SigilError;
  }
  throw new Error('expected a refusal');
}

describe('one descriptor per method, one list per side', () => {
  it('both sides list the same methods, each by the one descriptor its folder exports', () => {
    const agent = AGENT_JOIN_METHODS.map((m) => m.descriptor);
    const server = SERVER_JOIN_METHODS.map((m) => m.descriptor);
    expect(new Set(agent.map((d) => d.name)).size).toBe(agent.length);
    expect([...agent].sort((a, b) => a.name.localeCompare(b.name))).toEqual(
      [...server].sort((a, b) => a.name.localeCompare(b.name)),
    );
    for (const d of agent) expect(server.find((s) => s.name === d.name)).toBe(d);
  });

  it('the agent config knows exactly the registry names; error codes of a method are in the code table', () => {
    expect([...JOIN_METHOD_NAMES].sort()).toEqual(AGENT_JOIN_METHODS.map((m) => m.descriptor.name).sort());
    for (const m of SERVER_JOIN_METHODS)
      for (const c of m.descriptor.errorCodes) expect(ERROR_TABLE[c], `${m.descriptor.name}: ${c}`).toBeDefined();
  });

  it('rule schemas come from the server entries (token takes no rules), not from import side effects', () => {
    expect([...JOIN_RULE_SCHEMAS.keys()].sort()).toEqual(['aws_iid', 'azure', 'gcp', 'oidc', 'tpm', 'x509']);
    const rules = readFileSync(new URL('../../../src/join/rules.ts', import.meta.url), 'utf8');
    expect(rules).not.toMatch(/registerRuleSchema|new Map/);
  });

  it('a method declares renewalKeyProof exactly when its issuer half checks such proofs (and its agent half makes them)', () => {
    const log = { child: () => log } as never;
    const methods = createJoinMethods({ log });
    for (const entry of SERVER_JOIN_METHODS) {
      const declared = entry.descriptor.capabilities.renewalKeyProof === true;
      const server = methods.get(entry.descriptor.name)!.server;
      expect(typeof server.verifyRenewalKeyProof === 'function', entry.descriptor.name).toBe(declared);
    }
    expect(
      SERVER_JOIN_METHODS.filter((e) => e.descriptor.capabilities.renewalKeyProof).map((e) => e.descriptor.name),
    ).toEqual(['tpm']);
  });

  it('the agent side loads no issuer code at run time (it is packaged apart)', async () => {
    const seen = new Set<string>();
    const { dirname, resolve } = await import('node:path');
    const root = new URL('../../../src/join/agent-methods.ts', import.meta.url).pathname;
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      // Type-only imports are erased: they load nothing.
      for (const m of text.matchAll(/^\s*(?:import|export)(?!\s+type\b)[^'"]*?from\s+'(\.[^']+)'/gm))
        visit(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
      // And what the entries' load() imports later: the agent runs that code too.
      for (const m of text.matchAll(/\bimport\(\s*'(\.[^']+)'\s*\)/g))
        visit(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
    };
    visit(root);
    expect(seen.size).toBeGreaterThan(20);
    const server = [...seen].filter(
      (f) => /\/src\/server\//.test(f) || /\/join\/[^/]+\/server\.ts$/.test(f) || /\/join\/server-methods\.ts$/.test(f),
    );
    expect(server).toEqual([]);
  });
});

describe('unknown methods are refused with the list of known ones', () => {
  it('at `sigil ctl apply`: a join_rule for an unknown method is policy_invalid naming the methods that take rules', async () => {
    const e = refusal(() =>
      parseResources('kind: join_rule\nname: racks\nspec:\n  method: tmp\n  bot: gw\n  tmp: {}\n'),
    );
    expect(e.code).toBe('policy_invalid');
    expect(e.message).toMatch(/unknown method "tmp"/);
    for (const m of JOIN_RULE_SCHEMAS.keys()) expect(e.message).toContain(m);
    // And nothing is stored.
    const stores = openSqliteStores(':memory:');
    try {
      await expect(
        runAdminOp(stores, 'apply', {
          yaml: 'kind: join_rule\nname: racks\nspec:\n  method: tmp\n  bot: gw\n  tmp: {}\n',
        }),
      ).rejects.toMatchObject({ code: 'policy_invalid' });
      expect(await stores.resources.list('join_rule')).toEqual([]);
    } finally {
      await stores.close();
    }
  });

  it('at agent start: an unknown join.method is config_invalid listing every registered method', async () => {
    const e = refusal(() =>
      parseAgentConfig(
        `issuer: https://issuer.example.org\nca_pin: ${PIN}\ndata_dir: /var/lib/sigil\njoin:\n  method: tmp\n  tmp: {}\n`,
        'agent.yaml',
      ),
    );
    expect(e.code).toBe('config_invalid');
    expect(e.message).toMatch(/join\.method must be one of/);
    for (const m of AGENT_JOIN_METHODS) expect(e.message).toContain(m.descriptor.name);
    // Building the method from a registry that lacks it names that registry's methods.
    const cfg = {
      source: 'agent.yaml',
      dataDir: '/tmp',
      keyStorage: 'software',
      join: { method: 'gcp', settings: { audience: 'x' } },
    } as unknown as AgentConfig;
    const only = AGENT_JOIN_METHODS.filter((m) => m.descriptor.name === 'token');
    const e2 = await loadJoinMethod(cfg, only).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(e2).toBeInstanceOf(SigilError);
    expect((e2 as SigilError).code).toBe('config_invalid');
    expect((e2 as SigilError).message).toMatch(/must be one of token \(got "gcp"\)/);
  });

  it('a method that certifies a TPM-resident identity key (its entry says so) makes key_storage: tpm the default and the only choice', () => {
    const head = `issuer: https://issuer.example.org\nca_pin: ${PIN}\ndata_dir: /var/lib/sigil\n`;
    const tpm = parseAgentConfig(`${head}join:\n  method: tpm\n  tpm: { tcti: "swtpm:port=2321" }\n`, 'agent.yaml');
    expect(tpm).toMatchObject({ keyStorage: 'tpm', tpmTcti: 'swtpm:port=2321' });
    expect(parseAgentConfig(`${head}join:\n  method: tpm\n  tpm: {}\n`, 'agent.yaml').tpmTcti).toBe(
      'device:/dev/tpmrm0',
    );
    const pkcs11 = refusal(() =>
      parseAgentConfig(
        `${head}join:\n  method: tpm\n  tpm: {}\nkey_storage: pkcs11\npkcs11: { module: /usr/lib/p11.so, token: t, pin_env: PIN }\n`,
        'agent.yaml',
      ),
    );
    expect(pkcs11.message).toMatch(/cannot be used with join.method tpm/);
    const x509 = refusal(() =>
      parseAgentConfig(
        `${head}join:\n  method: x509\n  x509: { cert: /c.pem, key: /k.pem }\nkey_storage: tpm\n`,
        'agent.yaml',
      ),
    );
    expect(x509.message).toMatch(/key_storage: tpm needs join.method tpm \(its TCTI names the TPM\)/);
  });

  it('path keys come from the method descriptor: only that method block’s file keys are resolved', () => {
    const cfg = parseAgentConfig(
      `issuer: https://issuer.example.org\nca_pin: ${PIN}\ndata_dir: /var/lib/sigil\njoin:\n  method: x509\n  x509:\n    cert: certs/dev.pem\n    key: certs/dev.key\n`,
      '/etc/sigil/agent.yaml',
    );
    expect(cfg.join).toEqual({
      method: 'x509',
      settings: { cert: '/etc/sigil/certs/dev.pem', key: '/etc/sigil/certs/dev.key' },
    });
  });
});
