/**
 * `sigil agent configure --token …` and local users: a token given as a value is in argv, which
 * every local user reads in /proc/PID/cmdline while the command runs. `--token -` reads it from
 * stdin instead; `--token VALUE` keeps working with a warning on stderr (src/cli/configure.ts).
 * The reader here is a real unprivileged user (`nobody`, through setpriv) reading the running
 * configure process's command line.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { TOKEN_ARGV_WARNING, tokenFromStdin } from '../../../src/cli/configure.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'sigil-configure-stdin-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const PIN = `sha256:${'ab'.repeat(32)}`;
const TOKEN = 'Zm9yLXRlc3Qtb25seS1ub3QtYS1yZWFsLXRva2VuLTAx'.slice(0, 43);
const root = process.getuid?.() === 0 && process.platform === 'linux';

/** `sigil agent configure ARGS` through registerConfigure, in a child whose stdin stays open until we write. */
function configure(args: string[]): ChildProcessWithoutNullStreams {
  const script = `
    const { Command } = await import('commander');
    const { registerConfigure } = await import('./src/cli/configure.ts');
    const program = new Command('sigil').exitOverride();
    program.command('agent');
    registerConfigure(program, async (fn) => {
      try { await fn(); } catch (e) { process.stderr.write('error[' + e.code + ']: ' + e.message + '\\n'); process.exitCode = 2; }
    });
    await program.parseAsync(process.argv.slice(1), { from: 'user' });`;
  return spawn(process.execPath, ['--import', 'tsx', '-e', script, '--', 'agent', 'configure', ...args], { cwd: ROOT });
}

function finished(
  child: ChildProcessWithoutNullStreams,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** What `nobody` reads of the child's command line. */
function cmdlineAsNobody(pid: number): string {
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'cat', `/proc/${pid}/cmdline`]);
  expect(r.status, r.stderr.toString()).toBe(0);
  return r.stdout.toString('latin1').split('\0').join(' ');
}

const common = (out: string): string[] => [
  '--issuer',
  'https://issuer.example:8443',
  '--ca-pin',
  PIN,
  '--join',
  'token',
  '--data-dir',
  join(tmp, 'data'),
  '--out',
  out,
];

describe.runIf(root)('configure --token and other local users', () => {
  it('--token - reads the token from stdin: another user sees only "-" in the command line', async () => {
    const out = join(tmp, 'stdin.yaml');
    const child = configure([...common(out), '--token', '-']);
    const done = finished(child);
    // The child waits on stdin: its command line is complete and readable now.
    await new Promise((r) => setTimeout(r, 300));
    const seen = cmdlineAsNobody(child.pid!);
    expect(seen).toContain('configure');
    expect(seen).toContain('--token -');
    expect(seen).not.toContain(TOKEN);
    child.stdin.end(`${TOKEN}\n`);
    const r = await done;
    expect(r.stderr).not.toContain('warning');
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(out, 'utf8')).toMatch(new RegExp(`^  token: ${TOKEN}$`, 'm'));
    expect(statSync(out).mode & 0o777).toBe(0o600);
  });

  it('--token VALUE still works, and warns because another user can read it', async () => {
    const out = join(tmp, 'argv.yaml');
    const child = configure([...common(out), '--token', TOKEN]);
    const done = finished(child);
    await new Promise((r) => setTimeout(r, 300));
    // What the warning is about: the token is right there for any local user.
    expect(cmdlineAsNobody(child.pid!)).toContain(TOKEN);
    child.stdin.end();
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(TOKEN_ARGV_WARNING.trim());
    expect(r.stderr).not.toContain(TOKEN);
    expect(readFileSync(out, 'utf8')).toMatch(new RegExp(`^  token: ${TOKEN}$`, 'm'));
  });

  it('--token - with nothing on stdin is config_invalid and writes nothing', async () => {
    const out = join(tmp, 'empty.yaml');
    const child = configure([...common(out), '--token', '-']);
    const done = finished(child);
    child.stdin.end('\n');
    const r = await done;
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error[config_invalid]: --token -: nothing on stdin');
    expect(() => statSync(out)).toThrow();
  });
});

describe('tokenFromStdin', () => {
  it('trims the newline, refuses empty or several words without echoing them', async () => {
    expect(await tokenFromStdin(Readable.from([Buffer.from(`${TOKEN}\r\n`)]))).toBe(TOKEN);
    const err = await tokenFromStdin(Readable.from([Buffer.from(`${TOKEN} extra\n`)])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SigilError);
    expect((err as SigilError).code).toBe('config_invalid');
    expect((err as SigilError).message).not.toContain(TOKEN);
    const empty = await tokenFromStdin(Readable.from([])).catch((e: unknown) => e);
    expect((empty as SigilError).message).toMatch(/nothing on stdin/);
  });
});
