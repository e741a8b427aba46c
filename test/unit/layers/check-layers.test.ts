// scripts/check-layers.mjs (issue #13, "House rules in CI"): each rule fails the check on a fixture
// tree in test/fixtures/layers/, a baseline covers known violations and must only shrink, and the
// real tree passes.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain-Node script without type declarations
import { findViolations, run } from '../../../scripts/check-layers.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const fixtures = path.join(repo, 'test/fixtures/layers');
const script = path.join(repo, 'scripts/check-layers.mjs');

interface Violation {
  rule: string;
  file: string;
  detail: string;
  message: string;
  files?: string[];
}

/** Runs the checker in-process on a fixture; returns the exit code and the lines it printed. */
function check(fixture: string, ...args: string[]): { code: number; lines: string[] } {
  const lines: string[] = [];
  const root = path.isAbsolute(fixture) ? fixture : path.join(fixtures, fixture);
  const baseline = path.join(root, 'baseline.json');
  const code = run(['--root', root, '--baseline', baseline, ...args], {
    out: (l: string) => lines.push(l),
    err: (l: string) => lines.push(l),
  }) as number;
  return { code, lines };
}

function violations(fixture: string, allowlist: unknown[] = []): Violation[] {
  return (findViolations(path.join(fixtures, fixture), { allowlist }) as { violations: Violation[] }).violations;
}

const tmps: string[] = [];
afterEach(() => {
  for (const t of tmps.splice(0)) fs.rmSync(t, { recursive: true, force: true });
});
function copyFixture(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-layers-'));
  tmps.push(dir);
  fs.cpSync(path.join(fixtures, name), dir, { recursive: true });
  return dir;
}

describe('check-layers: each rule', () => {
  it('passes a clean tree (pki may import keystore and tpm; join methods use the join/*.ts ports; a registry may list methods)', () => {
    expect(check('clean')).toEqual({ code: 0, lines: ['layers: ok (10 files, 0 baseline entries)'] });
  });

  it('layer: tpm/, pki/, protocol/, attest/ import nothing from server/, agent/, join/, transport/; native/ nothing but errors.ts — type-only, re-exports and import() included', () => {
    const { code, lines } = check('forbidden-import');
    expect(code).toBe(1);
    expect(lines).toContain('layers: src/pki/issue.ts imports src/server/store.ts (pki must not depend on server)');
    expect(lines).toContain('layers: src/tpm/reexport.ts imports src/agent/loop.ts (tpm must not depend on agent)');
    expect(lines).toContain(
      'layers: src/protocol/messages.ts imports src/server/store.ts (protocol must not depend on server) [type-only import, line 2]',
    );
    expect(lines).toContain(
      'layers: src/protocol/lazy.ts imports src/join/types.ts (protocol must not depend on join) [dynamic import, line 3]',
    );
    expect(lines).toContain(
      'layers: src/protocol/lazy.ts imports src/agent/loop.ts (protocol must not depend on agent) [type-only import, line 1]',
    );
    expect(lines).toContain(
      'layers: src/attest/quote.ts imports src/server/store.ts (attest must not depend on server)',
    );
    expect(lines).toContain(
      'layers: src/attest/quote.ts imports src/transport/client.ts (attest must not depend on transport) [type-only import, line 1]',
    );
    expect(lines).toContain(
      'layers: native/libc.ts imports src/tpm/reexport.ts (native must not depend on src/ beyond src/errors.ts)',
    );
    // native/ may use the error type: no line for native/libc.ts → src/errors.ts.
    expect(lines.filter((l) => l.includes('imports src/errors.ts'))).toEqual([]);
    expect(lines.at(-1)).toMatch(/^layers: 8 new violation\(s\), 0 stale baseline entries/);
  });

  it('join-method: a method imports no other method, nor server/ or agent/', () => {
    const found = violations('cross-method').map((v) => `${v.rule} ${v.file} ${v.detail}`);
    expect(found).toEqual([
      'join-method src/join/alpha/server.ts imports src/join/beta/wire.ts',
      'join-method src/join/alpha/server.ts imports src/server/store.ts',
      'join-method src/join/beta/agent.ts imports src/agent/loop.ts',
    ]);
    const { code, lines } = check('cross-method');
    expect(code).toBe(1);
    expect(lines[0]).toContain(
      '(join/alpha must not depend on join/beta; methods share code through the src/join/*.ts ports)',
    );
  });

  it('cycle: reported once, as the list of files in it (a type-only edge closes it too)', () => {
    const found = violations('cycle');
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({
      rule: 'cycle',
      file: 'src/util/a.ts',
      files: ['src/util/a.ts', 'src/util/b.ts', 'src/util/c.ts'],
    });
    const { code, lines } = check('cycle');
    expect(code).toBe(1);
    expect(lines[0]).toBe(
      'layers: import cycle between 3 files: src/util/a.ts, src/util/b.ts, src/util/c.ts (e.g. src/util/a.ts → src/util/b.ts → src/util/c.ts → src/util/a.ts)',
    );
  });

  it('module-state: let, caches, mutated Sets/arrays/objects (also through an import or a helper); read-only tables pass', () => {
    const found = violations('module-state').map((v) => `${v.file} ${v.detail}`);
    expect(found).toEqual([
      'src/server/helpers.ts const TABLE = new Map, mutated',
      'src/server/helpers.ts const CODES = new Map, mutated',
      'src/server/helpers.ts const ITEMS (array), mutated',
      'src/server/state.ts let counter',
      'src/server/state.ts const cache = new Map',
      'src/server/state.ts const SEEN = new Set, mutated',
      'src/server/state.ts const pending (array), mutated',
      'src/server/state.ts const settings (object), mutated',
      'src/server/state.ts const memo = new WeakMap',
      'src/server/state.ts const REGISTRY (object), mutated in src/server/register.ts',
      'src/server/statics.ts static Registry.count',
      'src/server/statics.ts static readonly Registry.entries = new Map',
      'src/tpm/lazy.ts let mod',
    ]);
    expect(check('module-state').code).toBe(1);
  });

  it('module-state: an allowlisted name is not reported; an allowlist entry that matches nothing is stale', () => {
    const allow = [{ file: 'src/tpm/lazy.ts', name: 'mod', reason: 'memoised import' }];
    expect(violations('module-state', allow).map((v) => v.file)).not.toContain('src/tpm/lazy.ts');
    const gone = { file: 'src/tpm/lazy.ts', name: 'gone', reason: 'was removed' };
    const elsewhere = { file: 'src/not/scanned.ts', name: 'x', reason: 'another tree' };
    const r = findViolations(path.join(fixtures, 'module-state'), { allowlist: [...allow, gone, elsewhere] }) as {
      staleAllow: unknown[];
    };
    expect(r.staleAllow).toEqual([gone]);
  });
});

describe('check-layers: the baseline', () => {
  it('a violation in the baseline passes', () => {
    expect(check('baselined')).toEqual({ code: 0, lines: ['layers: ok (2 files, 1 baseline entries)'] });
  });

  it('a baseline entry that no longer occurs fails: "remove it from the baseline"', () => {
    const { code, lines } = check('stale-baseline');
    expect(code).toBe(1);
    expect(lines[0]).toBe(
      'layers: baseline entry no longer occurs: [module-state] src/server/service.ts: const cache = new Map — remove it from the baseline (node scripts/check-layers.mjs --update-baseline)',
    );
  });

  it('--update-baseline drops stale entries and keeps the reasons of the others', () => {
    const dir = copyFixture('stale-baseline');
    expect(check(dir, '--update-baseline').code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'baseline.json'), 'utf8')).entries).toEqual([]);
    expect(check(dir)).toEqual({ code: 0, lines: ['layers: ok (1 files, 0 baseline entries)'] });

    const kept = copyFixture('baselined');
    expect(check(kept, '--update-baseline').code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(kept, 'baseline.json'), 'utf8')).entries).toEqual([
      {
        rule: 'layer',
        file: 'src/pki/issue.ts',
        detail: 'imports src/server/store.ts',
        reason: 'fixture: a known violation',
      },
    ]);
  });

  it('--update-baseline never adds a new violation (the baseline only shrinks) unless --accept-new', () => {
    const dir = copyFixture('cycle');
    const { code, lines } = check(dir, '--update-baseline');
    expect(code).toBe(1);
    expect(lines.at(-1)).toMatch(
      /1 new violation\(s\) not added to .*baseline\.json: fix them \(the baseline only shrinks\)/,
    );
    expect(fs.existsSync(path.join(dir, 'baseline.json'))).toBe(false);
    expect(check(dir, '--update-baseline', '--accept-new').code).toBe(0);
    const [entry] = JSON.parse(fs.readFileSync(path.join(dir, 'baseline.json'), 'utf8')).entries;
    expect(entry).toMatchObject({
      rule: 'cycle',
      files: ['src/util/a.ts', 'src/util/b.ts', 'src/util/c.ts'],
      reason: 'to be removed by the issuer-core redesign, #13',
    });
    expect(check(dir).code).toBe(0);
  });

  it('a cycle that shrank is not a new violation, but its wider baseline entry is stale', () => {
    const dir = copyFixture('cycle');
    const files = ['src/util/a.ts', 'src/util/b.ts', 'src/util/c.ts', 'src/util/d.ts'];
    const wide = {
      rule: 'cycle',
      file: files[0],
      detail: `cycle between ${files.join(', ')}`,
      files,
      reason: 'fixture',
    };
    fs.writeFileSync(path.join(dir, 'baseline.json'), JSON.stringify({ entries: [wide] }));
    const { code, lines } = check(dir);
    expect(code).toBe(1);
    expect(
      lines.some((l) =>
        l.includes(
          'smaller than the baselined cycle between src/util/a.ts, src/util/b.ts, src/util/c.ts, src/util/d.ts',
        ),
      ),
    ).toBe(true);
    expect(lines.some((l) => l.includes('remove it from the baseline'))).toBe(true);
    expect(check(dir, '--update-baseline').code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'baseline.json'), 'utf8')).entries).toEqual([
      {
        rule: 'cycle',
        file: 'src/util/a.ts',
        detail: 'cycle between src/util/a.ts, src/util/b.ts, src/util/c.ts',
        files: files.slice(0, 3),
        reason: 'fixture',
      },
    ]);
  });
});

describe('check-layers: the command', () => {
  it('exits 1 with one line per violation', () => {
    const r = spawnSync(process.execPath, [script, '--root', path.join(fixtures, 'forbidden-import')], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(1);
    const out = r.stdout.trim().split('\n');
    expect(out[0]).toBe(
      'layers: native/libc.ts imports src/tpm/reexport.ts (native must not depend on src/ beyond src/errors.ts)',
    );
    expect(out).toContain('layers: src/pki/issue.ts imports src/server/store.ts (pki must not depend on server)');
    expect(out).toHaveLength(9);
  });

  it('refuses an unknown argument with exit 2', () => {
    const r = spawnSync(process.execPath, [script, '--bogus'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('layers: unknown argument --bogus');
  });

  it('the real tree passes against scripts/layers-baseline.json', () => {
    const out = execFileSync(process.execPath, [script], { cwd: repo, encoding: 'utf8' });
    expect(out.trim()).toMatch(/^layers: ok \(\d+ files, \d+ baseline entries\)$/);
  });

  it('the real baseline is empty: every house rule holds in src/ and native/ without exceptions (#13)', () => {
    const { entries } = JSON.parse(fs.readFileSync(path.join(repo, 'scripts/layers-baseline.json'), 'utf8')) as {
      entries: { reason?: string }[];
    };
    expect(entries).toEqual([]);
  });
});
