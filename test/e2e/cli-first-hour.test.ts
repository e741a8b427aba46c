/**
 * A new operator's first hour with the real `sigil` binary (issue #12 items 6–8): `agent
 * status` exit codes, hints and read-only behaviour; usage and runtime errors as one line
 * (or one JSON line); one error line, not a log line too, from one-shot agent commands; the
 * public URL of an issuer listening on every address; audit rows in snake_case with ISO times.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { applyResources, createToken, SIGIL, sigil, sigilJson, tempDir, writeAgentConfig } from '../helpers/cli.js';
import { useIssuer } from '../helpers/issuer-fixture.js';

const lines = (s: string): string[] => s.split('\n').filter(Boolean);

describe('usage errors: one line, exit 2, no help dump', () => {
  it('unknown option, missing argument, unknown command, missing required option', async () => {
    const cases: Array<[string[], string]> = [
      [['agent', 'status', '--bogus'], "error[bad_request]: unknown option '--bogus' (see sigil agent status --help)"],
      [
        ['agent', 'run'],
        "error[bad_request]: required option '--config <file>' not specified (see sigil agent run --help)",
      ],
      [
        ['ctl', 'instances', 'tpm-clock-reset'],
        "error[bad_request]: missing required argument 'instance' (see sigil ctl instances tpm-clock-reset --help)",
      ],
      [['frobnicate'], "error[bad_request]: unknown command 'frobnicate' (see sigil --help)"],
    ];
    for (const [args, line] of cases) {
      const r = await sigil(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(lines(r.stderr), args.join(' ')).toEqual([line]);
    }
  });

  it('with --format json anywhere: one JSON line', async () => {
    const r = await sigil(['agent', 'status', '--format', 'json', '--bogus']);
    expect(r.code).toBe(2);
    expect(lines(r.stderr).map((l) => JSON.parse(l))).toEqual([
      {
        error: {
          code: 'bad_request',
          message: "unknown option '--bogus' (see sigil agent status --help)",
          retryable: false,
        },
      },
    ]);
  });
});

describe('agent errors and status', () => {
  const fx = useIssuer('sigil-first-hour-');
  const { tmp } = fx;

  it('a config file that is not there: the path and --config, as JSON with --format json', async () => {
    const missing = join(tmp.path, 'nope.yaml');
    const r = await sigil(['agent', 'status', '--config', missing, '--format', 'json']);
    expect(r.code).toBe(2);
    const [err] = lines(r.stderr).map((l) => JSON.parse(l));
    expect(err.error.code).toBe('config_invalid');
    expect(err.error.message).toContain(missing);
    expect(err.error.message).toMatch(/--config FILE/);
  });

  it('agent run --once against a port nobody listens on: one error line with the likely causes, no log line', async () => {
    const a = writeAgentConfig(tmp.path, 'refused', {
      url: 'https://127.0.0.1:1',
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer),
    });
    const r = await sigil(['agent', 'run', '--once', '--config', a.config]);
    expect(r.code).toBe(75);
    expect(lines(r.stderr)).toEqual([
      'error[issuer_unreachable]: cannot reach the issuer at https://127.0.0.1:1: ECONNREFUSED (nothing accepts connections there: is `sigil server start` running, and is the port right?)',
    ]);
  });

  it('before the join: exit 1, a short block, the next step, and no data directory created', async () => {
    const a = writeAgentConfig(tmp.path, 'fresh', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer),
    });
    const byDir = await sigil(['agent', 'status', '--data-dir', a.dataDir, '--format', 'json']);
    expect(existsSync(join(a.dataDir, '..'))).toBe(false);
    expect(byDir.code).toBe(1);
    expect(JSON.parse(byDir.stdout)).not.toHaveProperty('mqtt_client_cert');
    const table = await sigil(['agent', 'status', '--config', a.config]);
    expect(table.code).toBe(1);
    expect(lines(table.stdout).length).toBeLessThanOrEqual(3);
    expect(table.stdout).toMatch(/^state\s+not_joined/);
    expect(lines(table.stderr)).toEqual([`hint: not joined yet; run: sigil agent run --once --config ${a.config}`]);
    const json = await sigil(['agent', 'status', '--config', a.config, '--format', 'json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ state: 'not_joined', mqtt_client_cert: null });
    expect(JSON.parse(lines(json.stderr)[0]!)).toEqual({
      hint: { state: 'not_joined', next_step: expect.stringMatching(/^not joined yet; run: sigil agent run --once/) },
    });
    expect(existsSync(join(a.dataDir, '..'))).toBe(false);
  });

  it('joined, then a refused manual renew: one error line; next_attempt is the renewal the daemon will make', async () => {
    await applyResources(
      fx.issuer,
      tmp.path,
      'kind: role\nname: edge\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: gw2\nspec: { roles: [edge] }\n',
    );
    const a = writeAgentConfig(tmp.path, 'renewer', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer, 'gw2'),
    });
    // A cron pass makes the trust check (key rotations, the root CRL) once it has an identity — not
    // the joining pass, the next one — and then when it is due (at once, with the test's interval).
    const dueAtOnce = { env: { SIGIL_TEST_TRUST_CHECK_EVERY_MS: '1' } };
    expect((await sigil(['agent', 'run', '--once', '--config', a.config], dueAtOnce)).code).toBe(0);
    const joined = JSON.parse((await sigil(['agent', 'status', '--config', a.config, '--format', 'json'])).stdout);
    expect(joined.last_trust_check).toBeNull();
    expect((await sigil(['agent', 'run', '--once', '--config', a.config], dueAtOnce)).code).toBe(0);
    const ok = await sigil(['agent', 'status', '--config', a.config, '--format', 'json']);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toBe('');
    expect(JSON.parse(ok.stdout)).toMatchObject({
      state: 'ok',
      mqtt_client_cert: null,
      last_trust_check: expect.any(String),
      last_trust_check_error: null,
    });
    // The issuer moved away (the same agent, its URL now a closed port) while the check is due: the
    // pass is still silent on stderr (cron mails stderr) and exits 0 — nothing was due but the
    // check, whose failure `agent status` shows.
    writeFileSync(a.config, readFileSync(a.config, 'utf8').replace(fx.issuer.url, 'https://127.0.0.1:1'));
    const quiet = await sigil(['agent', 'run', '--once', '--config', a.config], dueAtOnce);
    expect([quiet.code, quiet.stderr]).toEqual([0, '']);

    const failing = JSON.parse((await sigil(['agent', 'status', '--config', a.config, '--format', 'json'])).stdout);
    expect(failing.last_trust_check_error).toMatch(/^issuer_unreachable: /);
    writeFileSync(a.config, readFileSync(a.config, 'utf8').replace('https://127.0.0.1:1', fx.issuer.url));

    await sigilJson(['ctl', '--data-dir', fx.issuer.dataDir, 'lock', 'gw2']);
    const r = await sigil(['agent', 'renew', '--config', a.config]);
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^error\[\w+\]: /);
    await new Promise((res) => setTimeout(res, 1500)); // past any first backoff (≤ 1 s)
    const locked = await sigil(['agent', 'status', '--config', a.config, '--format', 'json']);
    const st = JSON.parse(locked.stdout);
    expect(st.consecutive_failures).toBe(1);
    expect(st.next_attempt).toBe(st.next_renewal);
    // The certificate is still valid (state ok), but renewals are refused: exit 1 and who can unlock it.
    expect(st.state).toBe('ok');
    expect(locked.code).toBe(1);
    expect(JSON.parse(lines(locked.stderr)[0]!).hint.next_step).toMatch(
      /^the issuer has locked this bot \(bot_locked: .*sigil ctl --data-dir <issuer-data-dir> unlock gw2$/,
    );
    await sigilJson(['ctl', '--data-dir', fx.issuer.dataDir, 'unlock', 'gw2']);
  });

  it('expired (token join): exit 1 with the status, and the new-token step', async () => {
    const a = writeAgentConfig(tmp.path, 'expiring', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer),
    });
    await sigilJson(['agent', 'run', '--once', '--config', a.config]);
    const db = new Database(join(a.dataDir, 'agent.db'));
    db.prepare("UPDATE identity SET not_before = ?, not_after = ?, renew_after = ? WHERE slot = 'current'").run(
      Date.now() - 7200_000,
      Date.now() - 3600_000,
      Date.now() - 5400_000,
    );
    db.close();
    const r = await sigil(['agent', 'status', '--config', a.config, '--format', 'json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).state).toBe('expired');
    const hint = JSON.parse(lines(r.stderr)[0]!).hint;
    expect(hint.state).toBe('expired');
    expect(hint.next_step).toMatch(/sigil ctl --data-dir <issuer-data-dir> token create --bot gw/);
    // Once a new token is in the config, the step is only to run the agent.
    writeAgentConfig(tmp.path, 'expiring', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer),
    });
    const again = await sigil(['agent', 'status', '--config', a.config]);
    expect(again.code).toBe(1);
    expect(lines(again.stderr)).toEqual([
      expect.stringMatching(
        /^hint: the identity expired; the config holds a join token not used yet: .*run now: sigil agent run --once --config /,
      ),
    ]);
  });
});

describe('server start on a wildcard address', () => {
  const tmp = tempDir('sigil-wildcard-');
  afterAll(() => tmp.cleanup());

  it('advertises the hostname, not 0.0.0.0, and says to set --public-url', async () => {
    const dataDir = join(tmp.path, 'issuer');
    await sigilJson(['server', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org']);
    const proc = spawn(process.execPath, [SIGIL, 'server', 'start', '--data-dir', dataDir, '--listen', '0.0.0.0:0'], {
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      const port = await new Promise<string>((res, rej) => {
        let out = '';
        const t = setTimeout(() => rej(new Error(`no start: ${err}`)), 20_000);
        proc.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /listening on https:\/\/\S+:(\d+)/.exec(out);
          if (m) {
            clearTimeout(t);
            res(m[1]!);
          }
        });
      });
      const logs = lines(err).map((l) => JSON.parse(l) as { level: number; msg: string; public_url?: string });
      const expected = `https://${hostname()}:${port}`;
      expect(logs.find((l) => l.msg === 'issuer ready')?.public_url).toBe(expected);
      const warning = logs.find((l) => l.level === 40);
      expect(warning?.msg).toMatch(/--public-url/);
      expect(warning?.public_url).toBe(expected);
    } finally {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
  });
});

describe('ctl audit --format json', () => {
  const tmp = tempDir('sigil-audit-fields-');
  afterAll(() => tmp.cleanup());

  it('snake_case keys and ISO 8601 times; the chain still verifies', async () => {
    const dataDir = join(tmp.path, 'issuer');
    await sigilJson(['server', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org']);
    const f = join(tmp.path, 'r.yaml');
    writeFileSync(
      f,
      'kind: role\nname: edge\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: gw\nspec: { roles: [edge] }\n',
    );
    await sigilJson(['ctl', '--data-dir', dataDir, 'apply', '-f', f]);
    await sigilJson(['ctl', '--data-dir', dataDir, 'lock', 'gw']);
    await sigil(['ctl', '--data-dir', dataDir, 'lock', 'nobody']);
    const rows = await sigilJson<Array<Record<string, unknown>>>(['ctl', '--data-dir', dataDir, 'audit']);
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const r of rows) {
      expect(Object.keys(r).filter((k) => /[A-Z]/.test(k))).toEqual([]);
      expect(r).toHaveProperty('instance_id');
      expect(r.prev_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(new Date(r.at as string).toISOString()).toBe(r.at);
    }
    const table = await sigil(['ctl', '--data-dir', dataDir, 'audit']);
    expect(lines(table.stdout)[0]).toMatch(/INSTANCE_ID/);
    const v = await sigil(['ctl', '--data-dir', dataDir, 'audit', '--verify']);
    expect(v.code).toBe(0);
  });
});
