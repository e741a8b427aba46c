/**
 * Error messages a new operator meets first (issue #12 item 7): errors as JSON with --format
 * json, YAML errors with the offending line, "did you mean" for a mistyped key in agent.yaml
 * and in policy, a hint for a refused connection to the issuer; and (item 8) audit rows shown
 * with snake_case keys and ISO times.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseAgentConfig } from '../../../src/agent/config.js';
import { auditRowForDisplay } from '../../../src/cli/ctl.js';
import { jsonErrorsRequested, reportError } from '../../../src/cli/output.js';
import { SigilError } from '../../../src/errors.js';
import { parseResources } from '../../../src/server/policy/resources.js';
import { closest, editDistance } from '../../../src/util/suggest.js';

const PIN = `sha256:${'0'.repeat(64)}`;
const agentYaml = (extra: string, join = 'join: { method: token, token: abc }'): string =>
  `issuer: https://issuer.example:8443\nca_pin: ${PIN}\ndata_dir: /var/lib/sigil\n${join}\n${extra}`;

function configError(text: string): string {
  try {
    parseAgentConfig(text, 'agent.yaml');
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected a config error');
}

function stderrOf(fn: () => number): { code: number; lines: string[] } {
  const out: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => {
    out.push(String(s));
    return true;
  });
  try {
    const code = fn();
    return { code, lines: out.join('').split('\n').filter(Boolean) };
  } finally {
    spy.mockRestore();
  }
}

afterEach(() => vi.restoreAllMocks());

describe('reportError', () => {
  it('--format json anywhere on the command line: one JSON line, same exit codes', () => {
    expect(jsonErrorsRequested(['node', 'sigil', 'agent', 'status', '--format', 'json', '--bogus'])).toBe(true);
    expect(jsonErrorsRequested(['node', 'sigil', '--format=json'])).toBe(true);
    expect(jsonErrorsRequested(['node', 'sigil', 'agent', 'status', '--format', 'table'])).toBe(false);
    const r = stderrOf(() => reportError(new SigilError('config_invalid', 'agent.yaml: bad\nthing'), { json: true }));
    expect(r.code).toBe(2);
    expect(r.lines).toHaveLength(1);
    expect(JSON.parse(r.lines[0]!)).toEqual({
      error: { code: 'config_invalid', message: 'agent.yaml: bad thing', retryable: false },
    });
    const t = stderrOf(() => reportError(new SigilError('issuer_unreachable', 'x'), { json: true }));
    expect(t.code).toBe(75);
    expect(JSON.parse(t.lines[0]!).error.retryable).toBe(true);
  });

  it('a database a newer Sigil migrated: exit 2 (not 75: waiting never heals a downgrade; the server unit does not restart on 2)', () => {
    const r = stderrOf(() =>
      reportError(new SigilError('store_schema_newer', 'schema 9, this Sigil knows 8'), { json: true }),
    );
    expect(r.code).toBe(2);
    expect(JSON.parse(r.lines[0]!).error.retryable).toBe(false);
  });

  it('plain form unchanged: error[CODE]: message', () => {
    expect(stderrOf(() => reportError(new SigilError('not_joined', 'no identity'), { json: false })).lines).toEqual([
      'error[not_joined]: no identity',
    ]);
  });

  it('a refused connection to the issuer names the likely causes', () => {
    const r = stderrOf(() =>
      reportError(
        new SigilError('issuer_unreachable', 'cannot reach the issuer at https://127.0.0.1:8443: ECONNREFUSED'),
        { json: false },
      ),
    );
    expect(r.lines[0]).toBe(
      'error[issuer_unreachable]: cannot reach the issuer at https://127.0.0.1:8443: ECONNREFUSED (nothing accepts connections there: is `sigil server start` running, and is the port right?)',
    );
  });
});

describe('YAML errors keep the offending line, on one line', () => {
  it('agent.yaml', () => {
    const msg = configError(agentYaml('outputs:\n  - { type: identity, path: [ /srv/id }\n'));
    expect(msg).toMatch(
      /^agent\.yaml: YAML error: .* at line 6, column \d+: - \{ type: identity, path: \[ \/srv\/id \}$/,
    );
    expect(msg).not.toContain('\n');
  });

  it('policy', () => {
    expect(() => parseResources('kind: role\nname: edge\nspec: { max_ttl: [24h }\n', 'r.yaml')).toThrow(
      /r\.yaml document 1: YAML error: .* at line 3, column \d+: spec: \{ max_ttl: \[24h \}$/,
    );
  });
});

describe('did you mean: the closest known key for an unrecognized one', () => {
  it('top level, inside a list item, and inside the join union', () => {
    expect(configError(agentYaml('renew_fracton: 0.5\n'))).toBe(
      'agent.yaml: (top level): Unrecognized key: "renew_fracton" (did you mean "renew_fraction"?)',
    );
    // The typo is named rather than the required key it left missing.
    expect(configError(agentYaml('outputs:\n  - { type: identity, pth: /srv/id }\n'))).toBe(
      'agent.yaml: outputs.0: Unrecognized key: "pth" (did you mean "path"?)',
    );
    expect(configError(agentYaml('', 'join: { method: token, tokn: abc }'))).toMatch(
      /join: Unrecognized key: "tokn" \(did you mean "token"\?\)/,
    );
  });

  it('no suggestion when nothing is close', () => {
    expect(configError(agentYaml('colour: blue\n'))).toBe('agent.yaml: (top level): Unrecognized key: "colour"');
  });

  it('policy specs', () => {
    expect(() => parseResources('kind: role\nname: edge\nspec: { max_tl: 24h }\n', 'r.yaml')).toThrow(
      /Unrecognized key: "max_tl" \(did you mean "max_ttl"\?\)/,
    );
  });

  it('edit distance ≤ 2 only', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(closest('ttl', ['ttl', 'tll'])).toBe('tll');
    expect(closest('dta_dir', ['data_dir', 'ca_pin'])).toBe('data_dir');
    expect(closest('xyz', ['data_dir'])).toBeUndefined();
  });
});

describe('audit rows as the CLI shows them', () => {
  it('snake_case keys and an ISO 8601 at; the stored values otherwise untouched', () => {
    const row = {
      seq: 3,
      at: 1_700_000_000_000,
      action: 'lock',
      outcome: 'ok',
      code: null,
      bot: 'gw',
      instanceId: 'i-1',
      method: null,
      actor: 'admin',
      remote: 'local',
      details: { kind: 'bot' },
      prevHash: 'a'.repeat(64),
      hash: 'b'.repeat(64),
    };
    expect(auditRowForDisplay(row)).toEqual({
      seq: 3,
      at: '2023-11-14T22:13:20.000Z',
      action: 'lock',
      outcome: 'ok',
      code: null,
      bot: 'gw',
      instance_id: 'i-1',
      method: null,
      actor: 'admin',
      remote: 'local',
      details: { kind: 'bot' },
      prev_hash: 'a'.repeat(64),
      hash: 'b'.repeat(64),
    });
  });
});
