import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadAgentConfig, parseAgentConfig } from '../../../src/agent/config.js';
import { SigilError } from '../../../src/errors.js';

const PIN = `sha256:${'ab'.repeat(32)}`;
const TOKEN = 'T'.repeat(43);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-agentcfg-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const yaml = (over: Record<string, string> = {}): string => {
  const fields: Record<string, string> = {
    issuer: 'issuer: https://issuer.example.org:8443',
    ca_pin: `ca_pin: ${PIN}`,
    data_dir: 'data_dir: state',
    join: `join:\n  method: token\n  token: ${TOKEN}`,
    ...over,
  };
  return (
    Object.values(fields)
      .filter((v) => v !== '')
      .join('\n') + '\n'
  );
};

/** Write `text` as DIR/etc/agent.yaml and load it. */
const load = (text: string) => {
  mkdirSync(join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'etc', 'agent.yaml'), text);
  return loadAgentConfig(join(dir, 'etc', 'agent.yaml'));
};

/**
 * Write `text` as DIR/etc/agent.yaml and load it in a child process as uid/gid 65534 (nobody):
 * the refusal's code and message, or a test failure if it loaded.
 */
function loadAsNobody(text: string): { code: string; message: string } {
  mkdirSync(join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'etc', 'agent.yaml'), text);
  chmodSync(dir, 0o755);
  chmodSync(join(dir, 'etc'), 0o755);
  chmodSync(join(dir, 'etc', 'agent.yaml'), 0o644);
  const configModule = fileURLToPath(new URL('../../../src/agent/config.ts', import.meta.url));
  const script = `import(${JSON.stringify(configModule)}).then((m) => {
    try { m.loadAgentConfig(${JSON.stringify(join(dir, 'etc', 'agent.yaml'))}); console.log(JSON.stringify({ loaded: true })); }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }
  });`;
  const r = spawnSync(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', '-e', script],
    { encoding: 'utf8', cwd: fileURLToPath(new URL('../../..', import.meta.url)) },
  );
  expect(r.status, `setpriv child: ${r.stderr}`).toBe(0);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { code?: string; message?: string; loaded?: true };
  expect(out.loaded, 'the config loaded although its token_file is unreadable').toBeUndefined();
  expect(out.code).toBe('config_invalid');
  return { code: out.code!, message: out.message! };
}

function refusal(fn: () => unknown): SigilError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw new Error(`expected a SigilError, got ${String(e)}`);
  }
  throw new Error('nothing was thrown');
}

describe('agent config', () => {
  it('loads a minimal valid config with defaults', () => {
    const c = load(yaml());
    expect(c).toEqual({
      issuer: 'https://issuer.example.org:8443',
      transports: [{ type: 'https', url: 'https://issuer.example.org:8443', timeoutMs: 15_000 }],
      caPin: PIN,
      dataDir: join(dir, 'etc', 'state'),
      ttlS: undefined,
      renewFraction: 0.5,
      trustCheckEveryS: 300,
      join: { method: 'token', token: TOKEN },
      keyStorage: 'software',
      outputs: [],
      credentialOutputs: [],
      metrics: {},
      logLevel: undefined,
      source: join(dir, 'etc', 'agent.yaml'),
    });
  });

  it('loads a full config: ttl, renew_fraction, outputs, metrics, log level', () => {
    const c = load(
      yaml({
        ttl: 'ttl: 2h',
        rf: 'renew_fraction: 0.6',
        ks: 'key_storage: software',
        outputs:
          'outputs:\n  - type: identity\n    path: out/svid\n    uid: 1000\n    gid: 1000\n  - type: identity\n    path: /abs/svid',
        metrics: 'metrics:\n  listen: 127.0.0.1:9101\n  textfile: metrics/sigil.prom',
        log: 'log_level: debug',
      }),
    );
    expect(c.ttlS).toBe(7200);
    expect(c.renewFraction).toBe(0.6);
    expect(c.outputs).toEqual([
      { type: 'identity', path: join(dir, 'etc', 'out', 'svid'), uid: 1000, gid: 1000 },
      { type: 'identity', path: '/abs/svid' },
    ]);
    expect(c.metrics).toEqual({ listen: '127.0.0.1:9101', textfile: join(dir, 'etc', 'metrics', 'sigil.prom') });
    expect(c.logLevel).toBe('debug');
  });

  it('resolves relative paths against the config file directory, not the working directory', () => {
    const cwd = process.cwd();
    try {
      process.chdir(tmpdir());
      const c = load(yaml({ data_dir: 'data_dir: ../var/sigil' }));
      expect(c.dataDir).toBe(join(dir, 'var', 'sigil'));
      expect(load(yaml({ data_dir: 'data_dir: /var/lib/sigil' })).dataDir).toBe('/var/lib/sigil');
    } finally {
      process.chdir(cwd);
    }
  });

  it('reads token_file (relative to the config dir) and trims it', () => {
    writeFileSync(join(dir, 'etc-token'), `  ${TOKEN}\n\n`);
    const c = load(yaml({ join: 'join:\n  method: token\n  token_file: ../etc-token' }));
    expect(c.join).toEqual({ method: 'token', token: TOKEN });
  });

  it('token_file wins over an inline token', () => {
    writeFileSync(join(dir, 'tok'), 'F'.repeat(43));
    const c = load(yaml({ join: `join:\n  method: token\n  token: ${TOKEN}\n  token_file: ${join(dir, 'tok')}` }));
    expect(c.join).toMatchObject({ method: 'token', token: 'F'.repeat(43) });
  });

  it('an unreadable or missing token_file → config_invalid naming the file and errno', () => {
    const e = refusal(() => load(yaml({ join: 'join:\n  method: token\n  token_file: nope.token' })));
    expect(e.code).toBe('config_invalid');
    expect(e.message).toMatch(
      /join\.token_file nope\.token: ENOENT; write the token there, readable by the agent only: \(umask 077; echo TOKEN > \/.*nope\.token\)$/,
    );
    // A file the agent's user may not read. Root reads anything, and CI runs as root: then the
    // load runs in a child under an unprivileged uid (setpriv), so the check is never skipped.
    writeFileSync(join(dir, 'secret'), TOKEN);
    chmodSync(join(dir, 'secret'), 0o000);
    const text = yaml({ join: `join:\n  method: token\n  token_file: ${join(dir, 'secret')}` });
    const message = process.getuid?.() === 0 ? loadAsNobody(text).message : refusal(() => load(text)).message;
    expect(message).toMatch(/join\.token_file .*secret: EACCES/);
  });

  it('a missing required key says so, not "expected string, received undefined"', () => {
    const text = yaml({}).replace(/^ca_pin:.*\n/m, '');
    expect(text).not.toMatch(/ca_pin/);
    expect(refusal(() => load(text)).message).toMatch(/: ca_pin: is required$/);
  });

  it('a missing or empty token → config_invalid', () => {
    expect(refusal(() => load(yaml({ join: 'join:\n  method: token' }))).message).toMatch(
      /join\.token or join\.token_file is required/,
    );
    expect(refusal(() => load(yaml({ join: "join:\n  method: token\n  token: ''" }))).code).toBe('config_invalid');
    writeFileSync(join(dir, 'blank'), '\n');
    expect(
      refusal(() => load(yaml({ join: `join:\n  method: token\n  token_file: ${join(dir, 'blank')}` }))).message,
    ).toMatch(/join\.token_file .*blank is empty; write the token there/);
    expect(refusal(() => load(yaml({ join: '' }))).message).toMatch(/join/);
  });

  it.each([
    ['uppercase hex', `sha256:${'AB'.repeat(32)}`],
    ['short', `sha256:${'ab'.repeat(31)}`],
    ['wrong algorithm', `sha1:${'ab'.repeat(32)}`],
    ['bare hex', 'ab'.repeat(32)],
  ])('a bad ca_pin (%s) → config_invalid naming ca_pin', (_name, pin) => {
    const e = refusal(() => load(yaml({ ca_pin: `ca_pin: "${pin}"` })));
    expect(e.code).toBe('config_invalid');
    expect(e.message).toMatch(/ca_pin/);
    expect(e.message).toMatch(/agent\.yaml/);
  });

  it.each([
    ['top level', { extra: 'listen: 0.0.0.0' }, /listen/],
    ['join', { join: `join:\n  method: token\n  token: ${TOKEN}\n  tokne_file: x` }, /tokne_file/],
    ['outputs', { outputs: 'outputs:\n  - type: identity\n    path: x\n    mode: 0644' }, /mode/],
    ['metrics', { metrics: 'metrics:\n  port: 9101' }, /port/],
  ])('an unknown key (%s) → config_invalid naming it', (_where, over, re) => {
    const e = refusal(() => load(yaml(over as Record<string, string>)));
    expect(e.code).toBe('config_invalid');
    expect(e.message).toMatch(re);
  });

  it.each([
    ['bad YAML', 'issuer: [\n', /YAML error/],
    ['not a mapping', '- a\n', /config_invalid|expected object/],
    ['empty file', '', /expected object|Invalid input/],
    ['bad issuer URL', null, /issuer/],
    ['bad ttl', null, /forever/],
    ['renew_fraction too high', null, /renew_fraction/],
    ['unknown join method', null, /method/],
    ['tpm key storage without the tpm join', null, /key_storage/],
    ['negative uid', null, /uid/],
    ['bad log level', null, /log_level/],
  ])('%s → config_invalid', (name, text, re) => {
    const over: Record<string, Record<string, string>> = {
      'bad issuer URL': { issuer: 'issuer: not a url' },
      'bad ttl': { ttl: 'ttl: forever' },
      'renew_fraction too high': { rf: 'renew_fraction: 0.99' },
      'unknown join method': { join: 'join:\n  method: teleport' },
      'tpm key storage without the tpm join': { ks: 'key_storage: tpm' },
      'negative uid': { outputs: 'outputs:\n  - type: identity\n    path: x\n    uid: -1' },
      'bad log level': { log: 'log_level: loud' },
    };
    const e = refusal(() => load(text ?? yaml(over[name])));
    expect(e.code).toBe('config_invalid');
    expect(e.message).toMatch(re);
    expect(e.message).not.toMatch(/\n/);
  });

  describe('key_storage: pkcs11', () => {
    const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
    const ks = (block: string): Record<string, string> => ({ ks: `key_storage: pkcs11\n${block}` });

    it('reads the pkcs11 block: module, token label, PIN file resolved against the config dir, label prefix', () => {
      const c = load(yaml(ks(`pkcs11: { module: ${MODULE}, token: sigil, pin_file: secrets/pin }`)));
      expect(c.keyStorage).toBe('pkcs11');
      expect(c.pkcs11).toEqual({
        module: MODULE,
        tokenLabel: 'sigil',
        pinFile: join(dir, 'etc', 'secrets', 'pin'),
        keyLabelPrefix: 'sigil',
      });
      const e = load(
        yaml(ks(`pkcs11:\n  module: ${MODULE}\n  token: hsm\n  pin_env: SIGIL_PKCS11_PIN\n  key_label_prefix: gw-7`)),
      );
      expect(e.pkcs11).toEqual({
        module: MODULE,
        tokenLabel: 'hsm',
        pinEnv: 'SIGIL_PKCS11_PIN',
        keyLabelPrefix: 'gw-7',
      });
    });

    it('works with evidence join methods other than tpm (x509 here)', () => {
      const c = load(
        yaml({
          join: 'join:\n  method: x509\n  x509: { cert: dev.pem, key: dev.key }',
          ...ks(`pkcs11: { module: ${MODULE}, token: sigil, pin_env: P }`),
        }),
      );
      expect(c.keyStorage).toBe('pkcs11');
      expect(c.tpmTcti).toBeUndefined();
    });

    it.each([
      ['no pkcs11 block', '', /key_storage: pkcs11 needs a pkcs11: \{ module, token, pin_file \| pin_env \} block/],
      [
        'no PIN source',
        `pkcs11: { module: ${MODULE}, token: sigil }`,
        /pkcs11: give exactly one of pin_file .* or pin_env/,
      ],
      [
        'both PIN sources',
        `pkcs11: { module: ${MODULE}, token: sigil, pin_file: p, pin_env: P }`,
        /exactly one of pin_file/,
      ],
      [
        'a relative module path',
        'pkcs11: { module: libsofthsm2.so, token: sigil, pin_env: P }',
        /pkcs11\.module: must be an absolute path/,
      ],
      ['no token', `pkcs11: { module: ${MODULE}, pin_env: P }`, /pkcs11\.token/],
      [
        'a token label over 32 bytes',
        `pkcs11: { module: ${MODULE}, token: ${'t'.repeat(33)}, pin_env: P }`,
        /pkcs11\.token/,
      ],
      ['a PIN in the config', `pkcs11: { module: ${MODULE}, token: sigil, pin: "1234" }`, /pin/],
      [
        'pin_env that is not a variable name',
        `pkcs11: { module: ${MODULE}, token: sigil, pin_env: "$PIN" }`,
        /pkcs11\.pin_env: is the NAME of an environment variable/,
      ],
      [
        'a bad label prefix',
        `pkcs11: { module: ${MODULE}, token: sigil, pin_env: P, key_label_prefix: "a b" }`,
        /pkcs11\.key_label_prefix/,
      ],
    ])('%s → config_invalid naming the field', (_name, block, re) => {
      const e = refusal(() => load(yaml(ks(block))));
      expect(e.code).toBe('config_invalid');
      expect(e.message).toMatch(re);
    });

    it('refuses the tpm join (it certifies a TPM key) and a pkcs11 block under another key_storage', () => {
      const tpm = refusal(() =>
        load(
          yaml({
            join: 'join:\n  method: tpm\n  tpm: {}',
            ...ks(`pkcs11: { module: ${MODULE}, token: sigil, pin_env: P }`),
          }),
        ),
      );
      expect(tpm.code).toBe('config_invalid');
      expect(tpm.message).toMatch(/key_storage: pkcs11 cannot be used with join\.method tpm/);
      const stray = refusal(() => load(yaml({ ks: `pkcs11: { module: ${MODULE}, token: sigil, pin_env: P }` })));
      expect(stray.message).toMatch(/pkcs11: is set but key_storage is software/);
    });
  });

  it('a missing config file → config_invalid with the path and errno', () => {
    const e = refusal(() => loadAgentConfig(join(dir, 'missing.yaml')));
    expect(e.code).toBe('config_invalid');
    expect(e.message).toContain(join(dir, 'missing.yaml'));
    expect(e.message).toMatch(/ENOENT/);
  });

  it('parseAgentConfig resolves against the directory of `source`', () => {
    const c = parseAgentConfig(yaml(), join(dir, 'sub', 'a.yaml'));
    expect(c.dataDir).toBe(join(dir, 'sub', 'state'));
  });

  describe('transports', () => {
    const withTransports = (t: string): string => yaml({ issuer: '', transports: `transports:\n${t}` });

    it('lists transports in order of preference, with defaults and paths resolved against the config dir', () => {
      const c = load(
        withTransports(
          [
            '  - type: mqtt',
            '    url: mqtts://broker.example.org:8883',
            '    ca_file: broker-ca.pem',
            '    timeout: 5s',
            '    bootstrap: { url: "mqtts://broker.example.org:8884", username: bootstrap, password_file: mqtt.pw }',
            '  - { type: mqtt, url: "mqtt://127.0.0.1:1883", bootstrap: { cert: boot.pem, key: /abs/boot.key }, session_expiry: 2h }',
            '  - { type: https, url: "https://issuer.example.org:8443" }',
          ].join('\n'),
        ),
      );
      expect(c.transports).toEqual([
        {
          type: 'mqtt',
          url: 'mqtts://broker.example.org:8883',
          timeoutMs: 5_000,
          caFile: join(dir, 'etc', 'broker-ca.pem'),
          bootstrap: {
            url: 'mqtts://broker.example.org:8884',
            username: 'bootstrap',
            passwordFile: join(dir, 'etc', 'mqtt.pw'),
          },
          sessionExpiryS: 86_400,
        },
        {
          type: 'mqtt',
          url: 'mqtt://127.0.0.1:1883',
          timeoutMs: 15_000,
          bootstrap: { certFile: join(dir, 'etc', 'boot.pem'), keyFile: '/abs/boot.key' },
          sessionExpiryS: 7_200,
        },
        { type: 'https', url: 'https://issuer.example.org:8443', timeoutMs: 15_000 },
      ]);
      expect(c.issuer).toBe('https://issuer.example.org:8443');
    });

    it.each([
      [
        'both issuer and transports',
        yaml({ transports: 'transports:\n  - { type: https, url: "https://x:1" }' }),
        /either issuer or transports/,
      ],
      ['neither', yaml({ issuer: '' }), /issuer or transports is required/],
      ['an empty list', yaml({ issuer: '', transports: 'transports: []' }), /transports/],
      ['an mqtt URL with a path', null, /mqtt:\/\/HOST:PORT/],
      ['an http URL for mqtt', null, /mqtt:\/\/HOST:PORT/],
      ['an unknown transport type', null, /type/],
      ['half a bootstrap', null, /bootstrap/],
      ['a bad bootstrap url', null, /bootstrap\.url/],
    ])('%s → config_invalid', (name, text, re) => {
      const t: Record<string, string> = {
        'an mqtt URL with a path': '  - { type: mqtt, url: "mqtt://h:1/x" }',
        'an http URL for mqtt': '  - { type: mqtt, url: "http://h:1" }',
        'an unknown transport type': '  - { type: coap, url: "coap://h:1" }',
        'half a bootstrap': '  - { type: mqtt, url: "mqtt://h:1", bootstrap: { username: b } }',
        'a bad bootstrap url':
          '  - { type: mqtt, url: "mqtt://h:1", bootstrap: { url: "https://h", username: b, password_file: f } }',
      };
      const e = refusal(() => load(text ?? withTransports(t[name]!)));
      expect(e.code).toBe('config_invalid');
      expect(e.message).toMatch(re);
    });
  });
});
