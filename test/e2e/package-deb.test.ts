/**
 * The Debian package on this machine (issue #19): scripts/package-deb.sh builds it, `dpkg -i`
 * installs it, the quick start runs with the INSTALLED `sigil` (issuer as root in a temp dir,
 * agent as the `sigil` user from /etc/sigil/agent.yaml into /var/lib/sigil-agent), the file
 * modes and the units are checked (`systemd-analyze verify`), and `dpkg -P` purges it: the
 * program and /etc/sigil go, the state directories (CA key, identities) and the user stay.
 *
 * Needs root and dpkg; skipped when the machine already has a `sigil` package or user (the test
 * would otherwise remove someone's installation). It leaves the machine as it found it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');
const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const preexisting =
  spawnSync('dpkg', ['-s', 'sigil'], { stdio: 'ignore' }).status === 0 ||
  spawnSync('getent', ['passwd', 'sigil'], { stdio: 'ignore' }).status === 0 ||
  existsSync('/usr/bin/sigil') ||
  existsSync('/var/lib/sigil-server') ||
  existsSync('/var/lib/sigil-agent');
const runnable =
  process.getuid?.() === 0 && has('dpkg-deb') && has('dpkg') && existsSync(join(ROOT, 'dist', 'cli', 'main.js'));

function run(
  cmd: string,
  args: string[],
  opts: { user?: string } = {},
): { code: number; stdout: string; stderr: string } {
  const [c, a] = opts.user ? ['runuser', ['-u', opts.user, '--', cmd, ...args]] : [cmd, args];
  const r = spawnSync(c, a, { encoding: 'utf8', env: { ...process.env, SIGIL_LOG_FORMAT: 'json' }, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function ok(cmd: string, args: string[], opts: { user?: string } = {}): string {
  const r = run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const mode = (p: string): string => (statSync(p).mode & 0o7777).toString(8);
const owner = (p: string): string => ok('stat', ['-c', '%U:%G', p]).trim();

describe.skipIf(!runnable || preexisting)('Debian package: build, install, quick start, purge', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sigil-deb-'));
  let issuer: ChildProcess | undefined;
  afterAll(() => {
    issuer?.kill('SIGTERM');
    // Whatever happened: leave no package, user or state behind.
    run('dpkg', ['-P', 'sigil']);
    rmSync('/var/lib/sigil-server', { recursive: true, force: true });
    rmSync('/var/lib/sigil-agent', { recursive: true, force: true });
    if (run('getent', ['passwd', 'sigil']).code === 0) run('deluser', ['--system', '--quiet', 'sigil']);
    rmSync(tmp, { recursive: true, force: true });
  });

  it('installs, joins with the installed sigil, verifies its units and purges to the documented state', async () => {
    const deb = ok('bash', [join(ROOT, 'scripts', 'package-deb.sh'), '--out', tmp, '--compress', 'none'])
      .trim()
      .split('\n')
      .pop()!;
    expect(deb).toMatch(/sigil_0\.1\.0_\w+\.deb$/);
    ok('dpkg', ['-i', deb]);

    // The command, its runtime, the user and the modes.
    expect(ok('/usr/bin/sigil', ['--version'])).toBe('0.1.0\n');
    const user = ok('getent', ['passwd', 'sigil']).trim().split(':');
    expect(Number(user[2])).toBeLessThan(1000); // a system user
    expect(user[6]).toBe('/usr/sbin/nologin');
    for (const d of ['/var/lib/sigil-server', '/var/lib/sigil-agent']) {
      expect(mode(d)).toBe('700');
      expect(owner(d)).toBe('sigil:sigil');
    }
    expect(mode('/etc/sigil')).toBe('750');
    expect(owner('/etc/sigil')).toBe('root:sigil');
    expect(mode('/usr/bin/sigil')).toBe('755');
    expect(mode('/usr/lib/sigil/node')).toBe('755');
    // The one-shot commands' V8 code cache (src/cli/code-cache.ts): root's and read-only for everyone
    // else, like the code beside it, and taken by the installed runtime as the sigil user (a cache V8
    // rejects would only make `agent run --once` slower, silently: this says it does not).
    expect(mode('/usr/lib/sigil')).toBe('755');
    for (const f of ['/usr/lib/sigil/agent-one-shot.cjs', '/usr/lib/sigil/agent-one-shot.cjs.v8cache']) {
      expect(mode(f)).toBe('644');
      expect(owner(f)).toBe('root:root');
    }
    const codeCache = pathToFileURL(join(ROOT, 'dist', 'cli', 'code-cache.js')).href;
    const cacheUse = ok(
      '/usr/lib/sigil/node',
      [
        '--input-type=module',
        '-e',
        `import { runCommonJsWithCache } from ${JSON.stringify(codeCache)};\n` +
          "process.stdout.write(runCommonJsWithCache('/usr/lib/sigil/agent-one-shot.cjs').cache);",
      ],
      { user: 'sigil' },
    );
    expect(cacheUse).toBe('used');

    // The units as installed: syntax, paths, users (systemd-analyze resolves ExecStart= and User=).
    if (has('systemd-analyze')) {
      const units = ['sigil-server', 'sigil-agent', 'sigil-agent-tpm'].map((u) => `/lib/systemd/system/${u}.service`);
      const v = run('systemd-analyze', ['verify', ...units]);
      expect(v.stderr.split('\n').filter((l) => l.includes('sigil'))).toEqual([]);
      expect(v.code).toBe(0);
    }
    const tpmUnit = readFileSync('/lib/systemd/system/sigil-agent-tpm.service', 'utf8');
    expect(tpmUnit).toMatch(/^DeviceAllow=\/dev\/tpmrm0 rw$/m);
    expect(tpmUnit).toMatch(/^DevicePolicy=closed$/m);
    expect(tpmUnit).toMatch(/^SupplementaryGroups=tss$/m);

    // Quick start with the installed binary: issuer, bot, token, agent join as the sigil user.
    const iss = join(tmp, 'issuer');
    const init = JSON.parse(
      ok('/usr/bin/sigil', ['server', 'init', '--data-dir', iss, '--trust-domain', 'example.org', '--format', 'json']),
    ) as { ca_pin: string };
    issuer = spawn('/usr/bin/sigil', ['server', 'start', '--data-dir', iss, '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
    });
    const url = await new Promise<string>((res, rej) => {
      let out = '';
      issuer!.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on (https:\/\/\S+)/.exec(out);
        if (m) res(m[1]!);
      });
      issuer!.once('exit', (c) => rej(new Error(`issuer exited ${c}`)));
    });
    const res = join(tmp, 'resources.yaml');
    writeFileSync(
      res,
      'kind: role\nname: edge\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: gw\nspec: { roles: [edge] }\n',
    );
    ok('/usr/bin/sigil', ['ctl', '--data-dir', iss, 'apply', '-f', res]);
    const { token } = JSON.parse(
      ok('/usr/bin/sigil', ['ctl', '--data-dir', iss, 'token', 'create', '--bot', 'gw', '--format', 'json']),
    ) as { token: string };
    writeFileSync(
      '/etc/sigil/agent.yaml',
      `issuer: ${url}\nca_pin: ${init.ca_pin}\ndata_dir: /var/lib/sigil-agent\njoin: { method: token, token: ${token} }\n` +
        'outputs:\n  - { type: identity, path: /var/lib/sigil-agent/identity }\n',
      { mode: 0o640 },
    );
    ok('chown', ['root:sigil', '/etc/sigil/agent.yaml']);
    const joined = JSON.parse(
      ok('/usr/bin/sigil', ['agent', 'run', '--once', '--config', '/etc/sigil/agent.yaml', '--format', 'json'], {
        user: 'sigil',
      }),
    ) as { result: string; spiffe_id: string };
    expect(joined.result).toBe('joined');
    expect(joined.spiffe_id).toMatch(/^spiffe:\/\/example\.org\/bot\/gw\//);
    expect(owner('/var/lib/sigil-agent/agent.db')).toBe('sigil:sigil');
    expect(mode('/var/lib/sigil-agent/identity/svid.key')).toBe('600');
    const status = run('/usr/bin/sigil', ['agent', 'status', '--config', '/etc/sigil/agent.yaml', '--format', 'json'], {
      user: 'sigil',
    });
    expect(JSON.parse(status.stdout).state).toBe('ok');
    // The agent unit's own command line (runtime, V8 flags, bundle path) runs: its ExecStart=
    // with `agent run` swapped for `agent status`.
    const execStart = /^ExecStart=(.+) agent run --config (\S+)$/m.exec(
      readFileSync('/lib/systemd/system/sigil-agent.service', 'utf8'),
    );
    expect(execStart?.[2]).toBe('/etc/sigil/agent.yaml');
    const [bin, ...nodeArgs] = execStart![1]!.split(' ');
    const viaUnit = run(bin!, [...nodeArgs, 'agent', 'status', '--config', execStart![2]!, '--format', 'json'], {
      user: 'sigil',
    });
    expect(JSON.parse(viaUnit.stdout).state).toBe('ok');
    expect(viaUnit.stderr).toBe(''); // flags V8 accepts without a warning (it would be in the journal at every start)
    // The example configs are what they claim: files an operator copies, readable by the agent.
    for (const f of ['agent.yaml.example', 'agent-tpm.yaml.example', 'server.env'])
      expect(existsSync(`/etc/sigil/${f}`)).toBe(true);
    issuer.kill('SIGTERM');

    // Purge: the program and /etc/sigil go; the state and the user stay (packaging/debian/postrm says why).
    ok('dpkg', ['-P', 'sigil']);
    expect(existsSync('/usr/bin/sigil')).toBe(false);
    expect(existsSync('/usr/lib/sigil')).toBe(false);
    expect(existsSync('/etc/sigil')).toBe(false);
    expect(existsSync('/lib/systemd/system/sigil-agent.service')).toBe(false);
    expect(existsSync('/var/lib/sigil-agent/agent.db')).toBe(true);
    expect(mode('/var/lib/sigil-agent')).toBe('700');
    expect(existsSync('/var/lib/sigil-server')).toBe(true);
    expect(run('getent', ['passwd', 'sigil']).code).toBe(0);
  }, 300_000);
});
