/**
 * The CLI side of `sigil agent configure` (the file is 0600, an existing one is replaced only
 * with --force, a bad combination writes nothing, the pin fetch never means trust) and
 * `sigil completion bash|zsh`, run through the built binary. Flag-by-flag validation is in
 * test/unit/cli/configure.test.ts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../src/agent/config.js';
import { sigil, startIssuer, tempDir, type RunningIssuer } from '../helpers/cli.js';

const PIN = `sha256:${'cd'.repeat(32)}`;

describe('sigil agent configure', () => {
  const tmp = tempDir();
  const tokenFile = join(tmp.path, 'token');
  writeFileSync(tokenFile, 'placeholder-token\n');
  const head = (method: string): string[] => [
    'agent',
    'configure',
    '--issuer',
    'https://issuer.example:8443',
    '--ca-pin',
    PIN,
    '--join',
    method,
  ];
  const flags = (out: string, more: string[] = []): string[] => [
    ...head('token'),
    '--token-file',
    tokenFile,
    '--data-dir',
    join(tmp.path, 'data'),
    '--output',
    `identity:${join(tmp.path, 'id')}`,
    '--out',
    out,
    ...more,
  ];
  let issuer: RunningIssuer;
  beforeAll(async () => {
    issuer = await startIssuer(tmp.path);
  });
  afterAll(async () => {
    await issuer?.stop();
    tmp.cleanup();
  });

  it('writes a 0600 file that loadAgentConfig accepts, and replaces it only with --force', async () => {
    const out = join(tmp.path, 'agent.yaml');
    const r = await sigil(flags(out));
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(loadAgentConfig(out)).toMatchObject({
      caPin: PIN,
      join: { method: 'token', token: 'placeholder-token' },
      dataDir: join(tmp.path, 'data'),
    });
    const before = readFileSync(out, 'utf8');

    const again = await sigil(flags(out, ['--ttl', '2h']));
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`error[conflict]: ${out} exists; pass --force to replace it\n`);
    expect(readFileSync(out, 'utf8')).toBe(before);

    const forced = await sigil(flags(out, ['--ttl', '2h', '--force']));
    expect(forced.code, forced.stderr).toBe(0);
    expect(loadAgentConfig(out).ttlS).toBe(7200);
  });

  it('without --out prints the YAML', async () => {
    const r = await sigil(flags('x').slice(0, -2));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^# agent\.yaml written by `sigil agent configure`/);
    expect(r.stdout).toContain(`ca_pin: ${PIN}`);
  });

  it('a list flag given twice keeps both values (it kept only the last), as a comma list does', async () => {
    const base = head('aws_iid');
    const twice = await sigil([
      ...base,
      '--data-dir',
      join(tmp.path, 'd1'),
      '--signatures',
      'rsa2048',
      '--signatures',
      'pkcs7',
    ]);
    expect(twice.code, twice.stderr).toBe(0);
    expect(twice.stdout).toMatch(/signatures:\n\s+- rsa2048\n\s+- pkcs7\n/);
    const comma = await sigil([...base, '--data-dir', join(tmp.path, 'd1'), '--signatures', 'rsa2048,pkcs7']);
    expect(comma.stdout).toMatch(/signatures:\n\s+- rsa2048\n\s+- pkcs7\n/);
  });

  it('a bad flag combination is config_invalid (exit 2, one line) and writes nothing', async () => {
    for (const extra of [
      ['--cert', '/etc/dev.pem'],
      ['--key-storage', 'tpm'],
      ['--output', 'identity:/sys/sigil'],
    ]) {
      const out = join(tmp.path, `bad-${extra[0]!.slice(2)}.yaml`);
      const r = await sigil(flags(out, extra));
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^error\[config_invalid\]: [^\n]+\n$/);
      expect(existsSync(out)).toBe(false);
    }
  });

  it("--ca-pin-from-url prints the issuer's pin; with --ca-pin it must match; without either pin nothing is trusted", async () => {
    const shown = await sigil(['agent', 'configure', '--ca-pin-from-url', issuer.url, '--print-pin-only']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toBe(`${issuer.pin}\n`);
    expect(shown.stderr).toMatch(/compare this pin/);

    const out = join(tmp.path, 'pinned.yaml');
    const wrong = await sigil([...flags(out), '--ca-pin-from-url', issuer.url]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(
      /^error\[pin_mismatch\]: .* presents a root with pin sha256:[0-9a-f]{64}, not --ca-pin /,
    );
    expect(existsSync(out)).toBe(false);

    const noPin = await sigil([
      'agent',
      'configure',
      '--ca-pin-from-url',
      issuer.url,
      '--join',
      'aws_iid',
      '--issuer',
      issuer.url,
      '--data-dir',
      join(tmp.path, 'd2'),
      '--out',
      out,
    ]);
    expect(noPin.code).toBe(2);
    expect(noPin.stderr).toMatch(/^error\[config_invalid\]: --ca-pin sha256:… is required/);
    expect(existsSync(out)).toBe(false);

    const right = flags(out).map((a) => (a === PIN ? issuer.pin : a));
    const ok = await sigil([...right, '--ca-pin-from-url', issuer.url]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(loadAgentConfig(out).caPin).toBe(issuer.pin);
  });
});

describe('sigil completion', () => {
  let bash = '';
  beforeAll(async () => {
    const r = await sigil(['completion', 'bash']);
    expect(r.code, r.stderr).toBe(0);
    bash = r.stdout;
  });

  /** What the script offers for the words typed so far (the last one is being completed). */
  function complete(...words: string[]): string[] {
    const script = `${bash}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _sigil; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.split('\n').filter(Boolean).sort();
  }

  it('bash: commands, subcommands and options from the command tree', () => {
    expect(complete('sigil', 'ag')).toEqual(['agent']);
    expect(complete('sigil', 'agent', 'r')).toEqual(['renew', 'run']);
    expect(complete('sigil', '')).toEqual(expect.arrayContaining(['agent', 'completion', 'ctl', 'factory', 'server']));
    expect(complete('sigil', 'agent', 'run', '--c')).toEqual(['--config']);
    expect(complete('sigil', 'agent', 'configure', '--token-f')).toEqual(['--token-file']);
    expect(complete('sigil', 'ctl', 'token', 'cr')).toEqual(['create']);
    // An option's value is left to file-name completion; the path walk skips it.
    expect(complete('sigil', 'agent', 'run', '--config', '')).toEqual([]);
    expect(complete('sigil', 'agent', 'run', '--config', 'agent.yaml', '--o')).toEqual(['--once']);
  });

  it('an unknown shell is a usage error', async () => {
    const r = await sigil(['completion', 'fish']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error[bad_request]: no completion for shell "fish"; choose one of bash, zsh\n');
  });

  it('zsh: the script is valid zsh (zsh -n)', async () => {
    const zsh = spawnSync('sh', ['-c', 'command -v zsh'], { encoding: 'utf8' }).stdout.trim();
    if (!zsh) throw new Error('zsh is missing: run scripts/setup.sh (apt-get install zsh)');
    const r = await sigil(['completion', 'zsh']);
    expect(r.code, r.stderr).toBe(0);
    execFileSync(zsh, ['-n'], { input: r.stdout });
  });
});
