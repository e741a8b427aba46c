/**
 * `sigil agent configure` (src/cli/configure.ts): each join method's minimal flags make a file
 * that loadAgentConfig accepts, and a bad combination is config_invalid before anything is
 * written. The CLI side (0600 file, no overwrite without --force, the pin fetch) is in
 * test/e2e/configure-completion.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../../src/agent/config.js';
import { configureAgent, type ConfigureFlags } from '../../../src/cli/configure.js';

const tmp = mkdtempSync(join(tmpdir(), 'sigil-configure-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const PIN = `sha256:${'ab'.repeat(32)}`;
const tokenFile = join(tmp, 'token');
writeFileSync(tokenFile, 'sigil-join-token-placeholder\n');

const base = (o: ConfigureFlags): ConfigureFlags => ({
  issuer: ['https://issuer.example:8443'],
  caPin: PIN,
  dataDir: join(tmp, 'data'),
  output: [`identity:${join(tmp, 'id')}`],
  ...o,
});

async function roundTrip(o: ConfigureFlags) {
  const text = await configureAgent(base(o));
  const file = join(tmp, `agent-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, text);
  return loadAgentConfig(file);
}

describe('sigil agent configure: minimal flags per join method load with loadAgentConfig', () => {
  it('token (--token-file)', async () => {
    const c = await roundTrip({ join: 'token', tokenFile });
    expect(c.join).toEqual({ method: 'token', token: 'sigil-join-token-placeholder' });
    expect(c.issuer).toBe('https://issuer.example:8443');
    expect(c.caPin).toBe(PIN);
    expect(c.outputs).toEqual([{ type: 'identity', path: join(tmp, 'id') }]);
  });
  it('--trust-check-every and --attest-every write their keys', async () => {
    const c = await roundTrip({
      join: 'tpm',
      tcti: 'swtpm:host=127.0.0.1,port=2321',
      eventLog: 'false',
      trustCheckEvery: '2m',
      attestEvery: '10m',
    });
    expect(c.trustCheckEveryS).toBe(120);
    expect(c.attestEveryS).toBe(600);
  });
  it('tpm (defaults: key_storage tpm)', async () => {
    const c = await roundTrip({ join: 'tpm', tcti: 'swtpm:host=127.0.0.1,port=2321', eventLog: 'false' });
    expect(c.join).toEqual({ method: 'tpm', settings: { tcti: 'swtpm:host=127.0.0.1,port=2321', event_log: false } });
    expect(c.keyStorage).toBe('tpm');
  });
  it('x509 (--cert --key)', async () => {
    const c = await roundTrip({ join: 'x509', cert: 'dev.pem', key: '/etc/sigil/dev.key' });
    expect(c.join).toEqual({
      method: 'x509',
      settings: { cert: join(process.cwd(), 'dev.pem'), key: '/etc/sigil/dev.key' },
    });
  });
  it('x509 with a nested setting (--join-setting tpm.handle=…)', async () => {
    const c = await roundTrip({
      join: 'x509',
      cert: '/etc/sigil/dev.pem',
      joinSetting: ['tpm.handle=0x81000002', 'tpm.attest=true'],
    });
    expect(c.join).toEqual({
      method: 'x509',
      settings: { cert: '/etc/sigil/dev.pem', tpm: { handle: '0x81000002', attest: true } },
    });
  });
  it('aws_iid (no settings needed)', async () => {
    expect((await roundTrip({ join: 'aws_iid' })).join).toEqual({ method: 'aws_iid', settings: {} });
  });
  it('gcp (--audience)', async () => {
    expect((await roundTrip({ join: 'gcp', audience: 'sigil' })).join).toEqual({
      method: 'gcp',
      settings: { audience: 'sigil' },
    });
  });
  it('azure (--managed-identity)', async () => {
    expect((await roundTrip({ join: 'azure', managedIdentity: true })).join).toEqual({
      method: 'azure',
      settings: { managed_identity: true },
    });
  });
  it('oidc (--provider github --audience)', async () => {
    expect((await roundTrip({ join: 'oidc', provider: 'github', audience: 'sigil' })).join).toEqual({
      method: 'oidc',
      settings: { provider: 'github', audience: 'sigil' },
    });
  });
  it('--workload-api SOCKET serves the Workload API there (an absolute path, as the agent loads it)', async () => {
    const c = await roundTrip({ join: 'aws_iid', workloadApi: '/run/sigil/workload.sock' });
    expect(c.workloadApi).toMatchObject({ socket: '/run/sigil/workload.sock' });
    expect((await roundTrip({ join: 'aws_iid' })).workloadApi).toBeUndefined();
  });
  it('several transports, https and mqtt, keep their order', async () => {
    const c = await roundTrip({
      join: 'aws_iid',
      issuer: ['https://a.example', 'https://b.example'],
      mqtt: ['mqtts://broker.example:8883'],
    });
    expect(c.transports.map((t) => `${t.type} ${t.url}`)).toEqual([
      'https https://a.example',
      'https https://b.example',
      'mqtt mqtts://broker.example:8883',
    ]);
  });

  it("mqtts only, with the broker's bootstrap login (password or certificate) on every mqtt transport", async () => {
    const pw = join(tmp, 'bootstrap.pw');
    writeFileSync(pw, 'secret\n');
    const c = await roundTrip({
      join: 'token',
      tokenFile,
      issuer: undefined,
      mqtt: ['mqtts://broker.example:8883', 'mqtts://backup.example:8883'],
      mqttBootstrapUrl: 'mqtts://broker.example:8884',
      mqttBootstrapUsername: 'bootstrap',
      mqttBootstrapPasswordFile: pw,
    });
    for (const t of c.transports)
      expect(t.type === 'mqtt' && t.bootstrap).toEqual({
        url: 'mqtts://broker.example:8884',
        username: 'bootstrap',
        passwordFile: pw,
      });
    const byCert = await roundTrip({
      join: 'token',
      tokenFile,
      issuer: undefined,
      mqtt: ['mqtts://broker.example:8883'],
      mqttBootstrapCert: '/etc/sigil/factory.pem',
      mqttBootstrapKey: '/etc/sigil/factory.key',
    });
    expect(byCert.transports[0]!.type === 'mqtt' && byCert.transports[0]!.bootstrap).toMatchObject({
      certFile: '/etc/sigil/factory.pem',
    });
  });
});

describe('sigil agent configure: refusals', () => {
  const refused = async (o: ConfigureFlags, msg: RegExp, complete = true): Promise<void> => {
    await expect(configureAgent(complete ? base(o) : o)).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringMatching(msg),
    });
  };
  it('no pin: no trust on first use', () =>
    refused({ join: 'aws_iid', caPin: undefined }, /--ca-pin sha256:… is required/));
  it('a trust check more often than every 30 s', () =>
    refused({ join: 'aws_iid', trustCheckEvery: '5s' }, /trust_check_every must be between 30s and 60m/));
  it('a bad pin', () => refused({ join: 'aws_iid', caPin: 'sha256:xyz' }, /ca_pin must be sha256:/));
  it('a method flag of another method', () =>
    refused({ join: 'token', tokenFile, cert: '/x.pem' }, /--cert does not apply to --join token/));
  it('an unknown method', () => refused({ join: 'ssh' }, /--join must be one of token, tpm, x509/));
  it('x509 without a key', () => refused({ join: 'x509', cert: '/x.pem' }, /give exactly one of key/));
  it('gcp without its audience', () => refused({ join: 'gcp' }, /join\.gcp.*audience/));
  it('a token file that does not exist', () =>
    refused({ join: 'token', tokenFile: join(tmp, 'nope') }, /join\.token_file .*ENOENT/));
  it('key_storage tpm with a token join', () =>
    refused({ join: 'token', tokenFile, keyStorage: 'tpm' }, /key_storage: tpm needs join.method tpm/));
  it('an output under /proc', () =>
    refused(
      { join: 'aws_iid', output: ['identity:/proc/sigil/identity'] },
      /output identity \/proc\/sigil\/identity: it is under \/proc/,
    ));
  it('an --issuer that is not https', () => refused({ join: 'aws_iid', issuer: ['mqtt://b:1883'] }, /use --mqtt/));
  it('mqtts only without a bootstrap login: it could never join (the walk of the docs met this)', () =>
    refused(
      { join: 'aws_iid', issuer: undefined, mqtt: ['mqtts://b.example:8883'] },
      /--mqtt mqtts:\/\/b\.example:8883: an mqtts:\/\/ broker admits an agent by its certificate.*--mqtt-bootstrap-url/,
    ));
  it('a plain mqtt:// broker beside the mqtts one can join: accepted; a bootstrap password to mqtt:// beside mqtts://: refused', async () => {
    await expect(
      configureAgent(
        base({ join: 'aws_iid', issuer: undefined, mqtt: ['mqtt://lan.example:1883', 'mqtts://b.example:8883'] }),
      ),
    ).resolves.toContain('mqtt://lan.example:1883');
    await refused(
      {
        join: 'aws_iid',
        mqtt: ['mqtts://b.example:8883'],
        mqttBootstrapUrl: 'mqtt://b.example:1883',
        mqttBootstrapUsername: 'u',
        mqttBootstrapPasswordFile: '/p',
      },
      /would cross the network in clear/,
    );
  });
  it('bootstrap flags half given, mixed, or without --mqtt', async () => {
    const m = { join: 'aws_iid', mqtt: ['mqtts://b.example:8883'] };
    await refused(
      { ...m, mqttBootstrapUsername: 'u' },
      /--mqtt-bootstrap-username and --mqtt-bootstrap-password-file go together/,
    );
    await refused({ ...m, mqttBootstrapKey: '/k' }, /--mqtt-bootstrap-cert and --mqtt-bootstrap-key go together/);
    await refused(
      {
        ...m,
        mqttBootstrapUsername: 'u',
        mqttBootstrapPasswordFile: '/p',
        mqttBootstrapCert: '/c',
        mqttBootstrapKey: '/k',
      },
      /not both/,
    );
    await refused({ ...m, mqttBootstrapUrl: 'mqtts://b.example:8884' }, /needs the login/);
    await refused(
      { join: 'aws_iid', mqttBootstrapUsername: 'u', mqttBootstrapPasswordFile: '/p' },
      /need an --mqtt URL/,
    );
  });
  it('a Workload API socket path longer than a Unix socket can be', () =>
    refused({ join: 'aws_iid', workloadApi: `/run/${'s'.repeat(120)}.sock` }, /at most 107 bytes/));
  it('a credential output that needs more than a path: says where its settings go', () =>
    refused(
      { join: 'aws_iid', output: [`jwt:${join(tmp, 'jwt')}`] },
      /outputs\.0\.audiences: is required — --output jwt:PATH sets only the type and the path; .* add the jwt output's audiences to it by hand \(docs\/credentials\.md/,
    ));
  it('no data dir', () => refused({ join: 'aws_iid', dataDir: undefined }, /--data-dir DIR is required/));
});
