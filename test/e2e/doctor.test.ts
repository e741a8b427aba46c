/**
 * `sigil doctor` against real parts: an issuer (`startIssuer`) and an agent joined to it over
 * HTTPS, a swtpm, a mosquitto with an issuer serving it, and the issuer's own data directory.
 * Each case breaks one thing and checks that doctor names it with its fix and exits 1.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyResources,
  createToken,
  sigil,
  sigilJson,
  startIssuer,
  tempDir,
  writeAgentConfig,
  type RunningIssuer,
} from '../helpers/cli.js';
import {
  freePort,
  MOSQUITTO,
  startExampleBroker,
  startMqttIssuerRig,
  waitFor,
  writeTransportAgent,
  type Broker,
  type IssuerProcess,
} from '../helpers/mosquitto.js';
import { startSwtpm, type SwtpmInstance } from '../helpers/swtpm.js';

interface Report {
  ok: boolean;
  checks: Array<{ name: string; status: 'ok' | 'warn' | 'fail'; detail: string; fix: string | null }>;
}

async function doctor(args: string[]): Promise<{ code: number; report: Report; stdout: string }> {
  const r = await sigil(['doctor', ...args, '--format', 'json']);
  let report: Report;
  try {
    report = JSON.parse(r.stdout) as Report;
  } catch {
    throw new Error(`doctor printed no JSON (exit ${r.code}): ${r.stdout} ${r.stderr}`);
  }
  return { code: r.code, report, stdout: r.stdout };
}

const check = (r: Report, prefix: string) => {
  const c = r.checks.find((x) => x.name === prefix || x.name.startsWith(`${prefix}:`));
  if (!c) throw new Error(`no check ${prefix} in ${JSON.stringify(r.checks.map((x) => x.name))}`);
  return c;
};

describe('sigil doctor', () => {
  const tmp = tempDir('sigil-doctor-');
  let issuer: RunningIssuer;
  let agent: { config: string; dataDir: string; outDir: string };

  beforeAll(async () => {
    issuer = await startIssuer(tmp.path);
    await applyResources(issuer, tmp.path);
    agent = writeAgentConfig(tmp.path, 'a1', { url: issuer.url, pin: issuer.pin, token: await createToken(issuer) });
    // agent.yaml holds the join token inline: a well set-up machine keeps it from other users.
    chmodSync(agent.config, 0o600);
    expect(await sigilJson(['agent', 'run', '--config', agent.config, '--once'])).toMatchObject({ result: 'joined' });
  });
  afterAll(async () => {
    await issuer?.stop();
    tmp.cleanup();
  });

  it('reports every agent check ok for a joined agent, in one line each, and exits 0', async () => {
    const { code, report } = await doctor(['--config', agent.config]);
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => c.name)).toEqual([
      'config',
      'data_dir',
      'secrets',
      `output:${agent.outDir}`,
      `issuer:${issuer.url}`,
      'clock',
      'identity',
    ]);
    for (const c of report.checks) expect(c, c.name).toMatchObject({ status: 'ok', fix: null });
    expect(check(report, 'identity').detail).toContain('spiffe://example.org/bot/gw/');
    const text = await sigil(['doctor', '--config', agent.config]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^ok {4}issuer:https:\/\/127\.0\.0\.1:\d+ +pinned root/m);
  });

  it('a wrong ca_pin fails with pin_mismatch and says how to read the right pin', async () => {
    const wrong = `sha256:${'0'.repeat(64)}`;
    const cfg = join(tmp.path, 'wrong-pin.yaml');
    writeFileSync(cfg, readFileSync(agent.config, 'utf8').replace(issuer.pin, wrong));
    const { code, report } = await doctor(['--config', cfg]);
    expect(code).toBe(1);
    expect(report.ok).toBe(false);
    const c = check(report, 'issuer');
    expect(c.status).toBe('fail');
    expect(c.detail).toContain('pin_mismatch');
    expect(c.detail).toContain(issuer.pin); // what the issuer presents, to compare with
    expect(c.fix).toMatch(/set ca_pin in .*wrong-pin\.yaml.*openssl x509 -in DATA_DIR\/ca\/root\.pem/);
    // The data dir remembers the pin of first contact: the agent would refuse to start.
    expect(check(report, 'identity')).toMatchObject({ status: 'fail' });
    expect(check(report, 'identity').fix).toContain(`ca_pin: ${issuer.pin}`);
  });

  it('an agent.yaml holding the join token, readable by every local user, is named with the chmod (walk8)', async () => {
    chmodSync(agent.config, 0o644);
    try {
      const { code, report } = await doctor(['--config', agent.config]);
      // Joined: the token is spent, so a warning (exit 0), not a failure.
      expect(code).toBe(0);
      expect(check(report, 'secrets')).toMatchObject({
        status: 'warn',
        fix: expect.stringContaining(`chmod o-r ${agent.config}`),
      });
      expect(check(report, 'secrets').detail).toContain('readable by every local user (mode 0644)');
    } finally {
      chmodSync(agent.config, 0o600);
    }
  });

  it('a data dir others can write fails with the chmod that fixes it', async () => {
    chmodSync(agent.dataDir, 0o777);
    try {
      const { code, report } = await doctor(['--config', agent.config]);
      expect(code).toBe(1);
      expect(check(report, 'data_dir')).toMatchObject({ status: 'fail', fix: `chmod 700 ${agent.dataDir}` });
      expect(check(report, 'data_dir').detail).toContain('0777');
    } finally {
      chmodSync(agent.dataDir, 0o700);
    }
  });

  it('an output directory that is a symbolic link fails', async () => {
    const real = join(tmp.path, 'real-out');
    const link = join(tmp.path, 'link-out');
    mkdirSync(real);
    symlinkSync(real, link);
    const cfg = join(tmp.path, 'symlink-out.yaml');
    writeFileSync(cfg, readFileSync(agent.config, 'utf8').replace(agent.outDir, link));
    const { code, report } = await doctor(['--config', cfg]);
    expect(code).toBe(1);
    const c = check(report, 'output');
    expect(c).toMatchObject({ name: `output:${link}`, status: 'fail' });
    expect(c.detail).toContain('symbolic link');
    expect(c.fix).toContain(`rm ${link}`);
  });

  it('a config that does not parse fails alone, naming the key', async () => {
    const cfg = join(tmp.path, 'broken.yaml');
    writeFileSync(cfg, readFileSync(agent.config, 'utf8').replace('ca_pin:', 'ca_pni:'));
    const { code, report } = await doctor(['--config', cfg]);
    expect(code).toBe(1);
    expect(report.checks).toHaveLength(1);
    expect(report.checks[0]).toMatchObject({ name: 'config', status: 'fail' });
    expect(report.checks[0]!.detail).toContain('config_invalid');
    expect(report.checks[0]!.detail).toContain('ca_pin');
  });

  it('issuer doctor: a good data directory is all ok (the running issuer wrote its checkpoint)', async () => {
    const { code, report } = await doctor(['--data-dir', issuer.dataDir]);
    expect(code).toBe(0);
    expect(report.checks.map((c) => [c.name, c.status])).toEqual([
      ['data_dir', 'ok'],
      ['ca', 'ok'],
      ['store', 'ok'],
      ['audit', 'ok'],
      ['admin_token', 'ok'],
      ['key_rotation', 'ok'],
      ['join_rule_files', 'ok'],
    ]);
    const full = await doctor(['--data-dir', issuer.dataDir, '--full', '--listen', new URL(issuer.url).host]);
    expect(check(full.report, 'audit')).toMatchObject({ status: 'ok' });
    expect(check(full.report, 'audit').detail).toContain('full chain verifies');
    // The issuer itself holds that port.
    expect(check(full.report, 'listen')).toMatchObject({ status: 'fail' });
    expect(full.code).toBe(1);
  });

  describe('TPM', () => {
    let tpm: SwtpmInstance;
    beforeAll(async () => {
      tpm = await startSwtpm();
    });
    afterAll(async () => {
      await tpm?.destroy();
    });

    const tpmConfig = (name: string, tcti: string): string => {
      const cfg = join(tmp.path, `${name}.yaml`);
      writeFileSync(
        cfg,
        `issuer: ${issuer.url}\nca_pin: ${issuer.pin}\ndata_dir: ${join(tmp.path, name)}\njoin: { method: tpm, tpm: { tcti: "${tcti}", event_log: false } }\nkey_storage: tpm\n`,
      );
      return cfg;
    };

    it('opens the TCTI, finds the EK and creates and flushes an SRK on swtpm', async () => {
      const { report } = await doctor(['--config', tpmConfig('tpm-ok', tpm.tcti)]);
      const c = check(report, 'tpm');
      // Works, with a warning: the test's swtpm listens on TCP, open to every local user.
      expect(c.status, c.detail).toBe('warn');
      expect(c.detail).toMatch(/EK at 0x81010001/);
      expect(c.detail).toMatch(/SRK (created and flushed|persisted)/);
      expect(c.detail).toMatch(/is a TCP port every local user can send TPM commands to/);
      expect(c.fix).toMatch(/device:\/dev\/tpmrm0/);
      // Not joined yet: a warning with the command, not a failure.
      expect(check(report, 'identity')).toMatchObject({ status: 'warn' });
      expect(report.ok).toBe(true);
    });

    it('a TCTI nobody listens on fails with what to start', async () => {
      const dead = `swtpm:host=127.0.0.1,port=${await freePort()}`;
      const { code, report } = await doctor(['--config', tpmConfig('tpm-dead', dead)]);
      expect(code).toBe(1);
      const c = check(report, 'tpm');
      expect(c.status).toBe('fail');
      expect(c.detail).toContain(dead);
      expect(c.fix).toContain('join.tpm.tcti');
    });
  });

  describe('the example broker (scripts/mosquitto/) and an agent without bootstrap:', () => {
    // walk8: an MQTT-only agent written by `sigil agent configure --mqtt` has no bootstrap
    // credentials; the certificate listener refuses it with TLS alert 116 and `agent run` printed
    // only OpenSSL's words. Doctor names the missing key.
    let broker: Broker | undefined;
    let ex: IssuerProcess | undefined;
    const exDir = join(tmp.path, 'example-broker');
    const exData = join(exDir, 'issuer');
    let pin: string;
    beforeAll(async () => {
      mkdirSync(exDir, { recursive: true });
      pin = (
        await sigilJson<{ ca_pin: string }>(['server', 'init', '--data-dir', exData, '--trust-domain', 'example.org'])
      ).ca_pin;
      ({ broker, issuer: ex } = await startExampleBroker(exDir, exData, join(exDir, 'bootstrap.pw')));
    });
    afterAll(async () => {
      await ex?.stop();
      await broker?.stop();
    });

    it('fails the broker check with the bootstrap: block to add; with it, both checks pass', async () => {
      const bare = writeTransportAgent(exDir, 'no-bootstrap', {
        pin,
        token: 'u'.repeat(43), // never spent: doctor does not join
        transports: [`{ type: mqtt, url: "${broker!.url}", timeout: 5s }`],
      });
      const { code, report } = await doctor(['--config', bare.config]);
      expect(code).toBe(1);
      const c = check(report, 'broker');
      expect(c.status).toBe('fail');
      expect(c.detail).toContain('the broker requires a client certificate, and before its first join');
      expect(c.fix).toContain('add bootstrap: to this transport');
      // The text form stays one line per check, whatever OpenSSL's message holds.
      const text = await sigil(['doctor', '--config', bare.config]);
      for (const line of text.stdout.trimEnd().split('\n'))
        expect(line, line).toMatch(/^(ok|warn|fail) {2,}\S+ {2}|^doctor: /);

      const withBootstrap = writeTransportAgent(exDir, 'with-bootstrap', {
        pin,
        token: 'u'.repeat(43), // never spent: doctor does not join
        transports: [
          `{ type: mqtt, url: "${broker!.url}", timeout: 5s, bootstrap: { url: "${broker!.bootstrapUrl}", username: bootstrap, password_file: ${join(exDir, 'bootstrap.pw')} } }`,
        ],
      });
      const good = await doctor(['--config', withBootstrap.config]);
      expect(check(good.report, 'broker')).toMatchObject({ status: 'ok' });
      expect(check(good.report, 'issuer')).toMatchObject({ status: 'ok' });
    });
  });

  describe('MQTT', () => {
    let broker: Broker;
    let mqttIssuer: IssuerProcess;
    let pin: string;
    const dataDir = join(tmp.path, 'mqtt-issuer');
    beforeAll(async () => {
      ({ broker, pin, issuer: mqttIssuer } = await startMqttIssuerRig(join(tmp.path, 'mqtt'), dataDir));
    });
    afterAll(async () => {
      await mqttIssuer?.stop();
      await broker?.stop();
    });

    it('a joined MQTT agent: broker accepts the session and its response-topic subscription; issuer and clock through the broker', async () => {
      mkdirSync(join(tmp.path, 'mqtt'), { recursive: true });
      const a = writeTransportAgent(join(tmp.path, 'mqtt'), 'm1', {
        pin,
        token: await createToken({ dataDir } as RunningIssuer),
        transports: [`{ type: mqtt, url: "${broker.url}", timeout: 10s }`],
      });
      chmodSync(a.config, 0o600); // it holds the join token (the secrets check)
      expect(await sigilJson(['agent', 'run', '--config', a.config, '--once'])).toMatchObject({ result: 'joined' });
      const { code, report } = await doctor(['--config', a.config]);
      expect(report.checks.filter((c) => c.status !== 'ok')).toEqual([]);
      expect(code).toBe(0);
      expect(check(report, 'broker').detail).toMatch(
        /instance session\) and subscribed to sigil\/v1\/resp\/[0-9a-f-]{36}/,
      );
      expect(check(report, 'issuer').detail).toContain('verified through the broker');
      expect(check(report, 'clock').detail).toContain(broker.url);
    });

    it('a broker whose ACL refuses the response-topic subscription fails with the SUBACK reason', async () => {
      // mosquitto with the dynamic-security plugin (the setup docs/mqtt.md requires), whose
      // anonymous role may publish requests but not subscribe to answers: SUBACK 0x87.
      const dir = join(tmp.path, 'acl-broker');
      mkdirSync(dir, { recursive: true });
      const port = await freePort();
      const role = {
        rolename: 'no-answers',
        acls: [{ acltype: 'publishClientSend', topic: 'sigil/v1/+', allow: true }],
      };
      const dynsec = {
        clients: [],
        groups: [{ groupname: 'anon', roles: [{ rolename: 'no-answers' }] }],
        anonymousGroup: 'anon',
        roles: [role],
        defaultACLAccess: {
          publishClientSend: false,
          publishClientReceive: false,
          subscribe: false,
          unsubscribe: true,
        },
      };
      writeFileSync(join(dir, 'dynsec.json'), JSON.stringify(dynsec));
      writeFileSync(
        join(dir, 'mosquitto.conf'),
        `per_listener_settings false\nplugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\nplugin_opt_config_file ${join(dir, 'dynsec.json')}\nallow_anonymous true\nlistener ${port} 127.0.0.1\nlog_dest stderr\n${process.getuid?.() === 0 ? 'user root\n' : ''}`,
      );
      const proc = spawn(MOSQUITTO, ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
      try {
        const listening = (): Promise<boolean> =>
          new Promise((res) => {
            const sock = connect(port, '127.0.0.1');
            sock.once('connect', () => (sock.destroy(), res(true)));
            sock.once('error', () => res(false));
          });
        await waitFor('the ACL broker to listen', listening, 10_000, 50);
        const url = `mqtt://127.0.0.1:${port}`;
        const a = writeTransportAgent(join(tmp.path, 'mqtt'), 'acl', {
          pin,
          token: await createToken({ dataDir } as RunningIssuer),
          transports: [`{ type: mqtt, url: "${url}", timeout: 3s }`],
        });
        const { code, report } = await doctor(['--config', a.config]);
        const c = check(report, 'broker');
        expect(code).toBe(1);
        expect(c.status).toBe('fail');
        expect(c.detail).toMatch(
          /refused the subscription to sigil\/v1\/resp\/bootstrap\/\S+ \(reason 0x87 Not authorized\)/,
        );
        expect(c.fix).toContain('sigil/v1/resp/bootstrap/+');
      } finally {
        proc.kill('SIGTERM');
      }
    });
  });

  it('issuer stopped: the issuer check fails as unreachable; a tampered issuer data dir fails', async () => {
    await issuer.stop();
    const { code, report } = await doctor(['--config', agent.config]);
    expect(code).toBe(1);
    const c = check(report, 'issuer');
    expect(c.status).toBe('fail');
    expect(c.detail).toContain('issuer_unreachable');
    expect(c.fix).toContain('check that the issuer runs');
    expect(check(report, 'clock')).toMatchObject({ status: 'warn' });

    // Someone with write access to issuer.db rewrites the newest audit row.
    const db = new Database(join(issuer.dataDir, 'issuer.db'));
    db.exec(
      "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET outcome = 'refused' WHERE seq = (SELECT max(seq) FROM audit_log)",
    );
    db.close();
    chmodSync(join(issuer.dataDir, 'admin.token'), 0o644);
    const bad = await doctor(['--data-dir', issuer.dataDir]);
    expect(bad.code).toBe(1);
    expect(check(bad.report, 'audit')).toMatchObject({ status: 'fail' });
    expect(check(bad.report, 'audit').detail).toMatch(/audit_chain_broken.*hash mismatch/);
    expect(check(bad.report, 'admin_token')).toMatchObject({
      status: 'fail',
      fix: `chmod 600 ${join(issuer.dataDir, 'admin.token')}`,
    });
    chmodSync(issuer.dataDir, 0o777);
    const open = await doctor(['--data-dir', issuer.dataDir]);
    expect(check(open.report, 'data_dir')).toMatchObject({ status: 'fail' });
    expect(check(open.report, 'data_dir').fix).toContain(`chmod go-w`);
  });
});
