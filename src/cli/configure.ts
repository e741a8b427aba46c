/**
 * `sigil agent configure`: agent.yaml from flags (like `tbot configure` or `step ca bootstrap`).
 * The flags are the config's own keys in kebab case (`--token-file` is `token_file`), and the
 * result is validated exactly as the agent will load it — the schema (agent/config.ts), the join
 * method's own settings schema, and the output paths (agent/outputs/check-path.ts, without
 * creating anything) — before a byte is written: an invalid file is never written.
 *
 * Without `--out` the YAML goes to stdout; with it, the file is written 0600 atomically and an
 * existing one is only replaced with `--force`. Trust is never taken on first use: `--ca-pin`
 * is required; `--ca-pin-from-url` only fetches the issuer's root to print its pin (to compare
 * out of band) or to check that the given pin is what the issuer really presents.
 *
 * The join token never needs to be on the command line, where every local user reads it
 * (`ps`, /proc/PID/cmdline) while the command runs: `--token-file FILE` names a file the agent
 * reads at each start, `--token -` reads it from stdin into the 0600 agent.yaml. `--token VALUE`
 * still works (scripts use it) with a warning on stderr.
 *
 * Everything heavy is imported inside the action: `sigil agent …` must start fast.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { SigilError } from '../errors.js';

const JOIN_METHODS = ['token', 'tpm', 'x509', 'aws_iid', 'gcp', 'azure', 'oidc'] as const;
type JoinMethod = (typeof JOIN_METHODS)[number];

type Kind = 'string' | 'path' | 'list' | 'bool' | 'path-or-false';
/** flag (kebab case) → [config key, kind]; per method, exactly the keys its schema accepts at the top level. */
const METHOD_FLAGS: Record<JoinMethod, Record<string, [string, Kind]>> = {
  token: { 'token-file': ['token_file', 'path'], token: ['token', 'string'] },
  tpm: { tcti: ['tcti', 'string'], ek: ['ek', 'string'], 'event-log': ['event_log', 'path-or-false'] },
  x509: {
    cert: ['cert', 'path'],
    chain: ['chain', 'path'],
    key: ['key', 'path'],
    'key-uri': ['key_uri', 'string'],
    'rsa-scheme': ['rsa_scheme', 'string'],
  },
  aws_iid: {
    'imds-endpoint': ['imds_endpoint', 'string'],
    'binding-key': ['binding_key', 'path'],
    signatures: ['signatures', 'list'],
    timeout: ['timeout', 'string'],
  },
  gcp: {
    audience: ['audience', 'string'],
    'metadata-endpoint': ['metadata_endpoint', 'string'],
    'service-account': ['service_account', 'string'],
    timeout: ['timeout', 'string'],
  },
  azure: {
    'imds-endpoint': ['imds_endpoint', 'string'],
    'managed-identity': ['managed_identity', 'bool'],
    'intermediates-file': ['intermediates_file', 'path'],
    timeout: ['timeout', 'string'],
  },
  oidc: {
    provider: ['provider', 'string'],
    audience: ['audience', 'string'],
    'token-env': ['token_env', 'string'],
    'token-file': ['token_file', 'path'],
  },
};
const ALL_METHOD_FLAGS = [...new Set(Object.values(METHOD_FLAGS).flatMap((f) => Object.keys(f)))];
const PKCS11_FLAGS: Record<string, [string, Kind]> = {
  'pkcs11-module': ['module', 'path'],
  'pkcs11-token': ['token', 'string'],
  'pkcs11-pin-file': ['pin_file', 'path'],
  'pkcs11-pin-env': ['pin_env', 'string'],
  'pkcs11-key-label-prefix': ['key_label_prefix', 'string'],
};

export type ConfigureFlags = Record<string, string | string[] | boolean | undefined>;

const camel = (flag: string): string => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const abs = (p: string): string => path.resolve(p);
const bad = (msg: string): SigilError => new SigilError('config_invalid', msg);

function value(flag: string, v: string | string[] | boolean, kind: Kind): unknown {
  if (kind === 'bool') return v === true;
  const s = String(v);
  if (kind === 'path') return abs(s);
  if (kind === 'path-or-false') return s === 'false' ? false : abs(s);
  if (kind === 'list')
    return s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  if (s === '') throw bad(`--${flag} needs a value`);
  return s;
}

/**
 * `KEY=VALUE` with a dotted key (pkcs11.module=…). true/false are booleans, decimal digits a
 * number, anything else text as given (0x81000002 stays text: the schemas take handles either way).
 */
function setting(block: Record<string, unknown>, kv: string): void {
  const m = /^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)=(.*)$/.exec(kv);
  if (!m) throw bad(`--join-setting ${kv}: expected KEY=VALUE, e.g. tpm.handle=0x81000002`);
  const keys = m[1]!.split('.');
  let at = block;
  for (const k of keys.slice(0, -1)) {
    const next = (at[k] ??= {});
    if (typeof next !== 'object' || next === null)
      throw bad(`--join-setting ${kv}: ${k} is already set to a value, not a block`);
    at = next as Record<string, unknown>;
  }
  const v = m[2]!;
  at[keys.at(-1)!] = v === 'true' ? true : v === 'false' ? false : /^-?\d{1,15}$/.test(v) ? Number(v) : v;
}

/** The agent.yaml document the flags describe (not yet validated). */
export async function configDocument(o: ConfigureFlags): Promise<Record<string, unknown>> {
  const method = o.join as string | undefined;
  if (!method) throw bad(`--join is required: one of ${JOIN_METHODS.join(', ')}`);
  if (!(JOIN_METHODS as readonly string[]).includes(method))
    throw bad(`--join must be one of ${JOIN_METHODS.join(', ')} (got "${method}")`);
  const flags = METHOD_FLAGS[method as JoinMethod];
  const stray = ALL_METHOD_FLAGS.find((f) => o[camel(f)] !== undefined && !(f in flags));
  if (stray)
    throw bad(
      `--${stray} does not apply to --join ${method} (it takes ${
        Object.keys(flags)
          .map((f) => `--${f}`)
          .join(', ') || 'no settings'
      }, and --join-setting KEY=VALUE)`,
    );
  const block: Record<string, unknown> = {};
  for (const [flag, [key, kind]] of Object.entries(flags))
    if (o[camel(flag)] !== undefined) block[key] = value(flag, o[camel(flag)]!, kind);
  for (const kv of (o.joinSetting as string[] | undefined) ?? []) setting(block, kv);
  const join = method === 'token' ? { method, ...block } : { method, [method]: block };

  const https = (o.issuer as string[] | undefined) ?? [];
  const mqtt = (o.mqtt as string[] | undefined) ?? [];
  if (https.length + mqtt.length === 0) throw bad('--issuer URL (https) or --mqtt URL is required');
  const notHttps = https.find((u) => !u.startsWith('https://'));
  if (notHttps)
    throw bad(`--issuer ${notHttps}: must be an https:// URL (use --mqtt for mqtt:// and mqtts:// brokers)`);
  const bootstrap = mqttBootstrap(o);
  if (bootstrap && mqtt.length === 0) throw bad('--mqtt-bootstrap-* flags need an --mqtt URL');
  // An mqtts:// broker admits agents by their certificate, which an agent has only after joining:
  // with no HTTPS issuer to join through, the first join (and the one after an expiry) needs the
  // broker's bootstrap login (docs/mqtt.md), or it stops at the TLS handshake.
  const stuck = mqtt.find((u) => u.startsWith('mqtts://'));
  const plain = mqtt.some((u) => u.startsWith('mqtt://'));
  if (stuck && !bootstrap && https.length === 0 && !plain)
    throw bad(
      `--mqtt ${stuck}: an mqtts:// broker admits an agent by its certificate, which it has only after joining; give the broker's bootstrap login (--mqtt-bootstrap-url URL with --mqtt-bootstrap-username NAME --mqtt-bootstrap-password-file FILE, or --mqtt-bootstrap-cert FILE --mqtt-bootstrap-key FILE), or an --issuer https:// URL to join through (docs/mqtt.md)`,
    );
  // A password must not cross the network in clear to reach a broker the agent talks TLS to.
  if (bootstrap?.['password_file'] !== undefined && bootstrap['url']?.startsWith('mqtt://') && stuck)
    throw bad(
      `--mqtt-bootstrap-url ${bootstrap['url']}: the bootstrap password would cross the network in clear to a broker reached over mqtts://; give an mqtts:// bootstrap listener`,
    );
  const transports = [
    ...https.map((url) => ({ type: 'https', url })),
    ...mqtt.map((url) => ({ type: 'mqtt', url, ...(bootstrap ? { bootstrap } : {}) })),
  ];

  const pkcs11: Record<string, unknown> = {};
  for (const [flag, [key, kind]] of Object.entries(PKCS11_FLAGS))
    if (o[camel(flag)] !== undefined) pkcs11[key] = value(flag, o[camel(flag)]!, kind);
  if (Object.keys(pkcs11).length > 0 && o.keyStorage !== 'pkcs11')
    throw bad('--pkcs11-* flags need --key-storage pkcs11');

  const outputs = ((o.output as string[] | undefined) ?? []).map((spec) => {
    const m = /^([a-z_]+):(.+)$/.exec(spec);
    if (!m) throw bad(`--output ${spec}: expected TYPE:PATH, e.g. identity:/run/sigil/identity`);
    return { type: m[1]!, path: abs(m[2]!) };
  });
  if (!o.dataDir) throw bad('--data-dir DIR is required (where the agent keeps its state, e.g. /var/lib/sigil-agent)');
  return {
    ...(transports.length === 1 && transports[0]!.type === 'https' ? { issuer: https[0] } : { transports }),
    ca_pin: o.caPin,
    data_dir: abs(o.dataDir as string),
    ...(o.ttl !== undefined ? { ttl: o.ttl } : {}),
    ...(o.attestEvery !== undefined ? { attest_every: o.attestEvery } : {}),
    ...(o.trustCheckEvery !== undefined ? { trust_check_every: o.trustCheckEvery } : {}),
    join,
    ...(o.keyStorage !== undefined ? { key_storage: o.keyStorage } : {}),
    ...(Object.keys(pkcs11).length > 0 ? { pkcs11 } : {}),
    ...(outputs.length > 0 ? { outputs } : {}),
    ...(o.workloadApi !== undefined ? { workload_api: { socket: abs(o.workloadApi as string) } } : {}),
  };
}

/**
 * The YAML text for `o`, validated the way the agent loads it (throws config_invalid). `source`
 * names the file in messages.
 */
export async function configureAgent(o: ConfigureFlags, source = 'agent.yaml'): Promise<string> {
  requirePin(o);
  const doc = await configDocument(o);
  const [{ stringify }, { parseAgentConfig }, { checkOutputPaths }] = await Promise.all([
    import('yaml'),
    import('../agent/config.js'),
    import('../agent/outputs/check-path.js'),
  ]);
  const text = `# agent.yaml written by \`sigil agent configure\` (docs/configuration.md)\n${stringify(doc)}`;
  let cfg: ReturnType<typeof parseAgentConfig>;
  try {
    cfg = parseAgentConfig(text, source);
  } catch (e) {
    // --output takes TYPE:PATH only; a credential output's other settings (jwt audiences, …) go
    // in the file (the walk of the docs met a bare "outputs.0.audiences: is required").
    const m = e instanceof SigilError && e.code === 'config_invalid' ? /: outputs\.(\d+)\.(\w+)/.exec(e.message) : null;
    const out = m ? (doc['outputs'] as Array<{ type: string }> | undefined)?.[Number(m[1])] : undefined;
    if (!m || !out) throw e;
    throw new SigilError(
      'config_invalid',
      `${(e as SigilError).message} — --output ${out.type}:PATH sets only the type and the path; write the config without that --output (or with --out FILE) and add the ${out.type} output's ${m[2]} to it by hand (docs/credentials.md shows each output's settings)`,
    );
  }
  if ('settings' in cfg.join)
    await checkMethodSettings(cfg.join.method, cfg.join.settings, `${source}: join.${cfg.join.method}`);
  checkOutputPaths(cfg, { create: false });
  return text;
}

function requirePin(o: ConfigureFlags): void {
  if (!o.caPin)
    throw bad(
      '--ca-pin sha256:… is required (printed by `sigil server init` on the issuer): the agent never trusts an issuer on first use; `--ca-pin-from-url URL --print-pin-only` shows what an issuer presents, to compare out of band',
    );
}

/** The method's own schema (join/agent-methods.ts), which the agent applies only when it builds the method (agent/join-method.ts). */
async function checkMethodSettings(method: string, settings: Record<string, unknown>, where: string): Promise<void> {
  const [{ parseWith }, { AGENT_JOIN_METHODS }] = await Promise.all([
    import('../protocol/messages.js'),
    import('../join/agent-methods.js'),
  ]);
  const entry = AGENT_JOIN_METHODS.find((e) => e.descriptor.name === method);
  if (entry) parseWith(entry.configSchema(), settings, 'config_invalid', where);
}

/** Write `text` to `file` 0600 atomically; an existing file only with `force`. */
export async function writeConfigFile(file: string, text: string, force: boolean): Promise<void> {
  const target = abs(file);
  if (!force && fs.existsSync(target)) throw new SigilError('conflict', `${target} exists; pass --force to replace it`);
  const { writeFileAtomic } = await import('../util/atomic-file.js');
  writeFileAtomic(target, text, { mode: 0o600 });
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export const TOKEN_ARGV_WARNING =
  'warning: --token puts the join token on the command line, where every local user can read it (ps, /proc/PID/cmdline) while this runs; pass it on stdin with --token - or use --token-file FILE\n';

/** `--token -`: the join token from `input` (stdin), so it never appears in argv. */
export async function tokenFromStdin(input: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of input) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  const token = Buffer.concat(chunks).toString('utf8').trim();
  // Never echo what was read: it may be the token with a stray character.
  if (token === '')
    throw bad(
      '--token -: nothing on stdin; pipe the join token in, e.g. sigil agent configure … --token - < token.txt',
    );
  if (/\s/.test(token)) throw bad('--token -: expected one token on stdin, got several words or lines');
  return token;
}

export function registerConfigure(program: Command, run: (fn: () => Promise<void> | void) => Promise<void>): void {
  const agent = program.commands.find((c) => c.name() === 'agent');
  if (!agent) return;
  const cmd = agent
    .command('configure')
    .description('write agent.yaml from flags (validated as the agent loads it; never an invalid file)')
    .option('--issuer <url>', 'issuer https:// URL (repeatable, in order of preference)', collect)
    .option('--mqtt <url>', 'MQTT broker mqtt(s)://HOST:PORT (repeatable, after the --issuer ones)', collect)
    .option('--mqtt-bootstrap-url <url>', "the broker's bootstrap listener, for joins (default: the --mqtt URL)")
    .option('--mqtt-bootstrap-username <name>', 'bootstrap login: user name (with --mqtt-bootstrap-password-file)')
    .option('--mqtt-bootstrap-password-file <file>', 'bootstrap login: a file holding the password')
    .option('--mqtt-bootstrap-cert <file>', 'bootstrap login: a client certificate (with --mqtt-bootstrap-key)')
    .option('--mqtt-bootstrap-key <file>', 'bootstrap login: its private key')
    .option('--ca-pin <pin>', 'sha256:<hex> of the issuer CA, as printed by `sigil server init` (required)')
    .option(
      '--ca-pin-from-url <url>',
      "fetch the issuer's root over TLS: with --print-pin-only print its pin; else check it equals --ca-pin",
    )
    .option('--print-pin-only', 'with --ca-pin-from-url: print the pin and write nothing')
    .option('--join <method>', JOIN_METHODS.join('|'))
    .option('--data-dir <dir>', 'agent state directory')
    .option('--ttl <duration>', 'requested certificate lifetime, e.g. 1h')
    .option('--attest-every <duration>', 'prove the boot state this often besides renewals, 1m-24h (tpm join)')
    .option(
      '--trust-check-every <duration>',
      'with ssh/jwt outputs: how often to ask whether the issuer rotated a key, 30s-1h (default 5m)',
    )
    .option('--key-storage <where>', 'software|tpm|pkcs11')
    .option('--output <type:path>', 'an output, e.g. identity:/run/sigil/identity (repeatable)', collect)
    .option(
      '--workload-api <socket>',
      'serve the SPIFFE Workload API and Envoy SDS on this Unix socket, e.g. /run/sigil/workload.sock (docs/workload-api.md)',
    )
    .option('--join-setting <key=value>', 'any other join method setting, dotted for nested ones (repeatable)', collect)
    .option('--out <file>', 'write the config here (0600) instead of stdout')
    .option('--force', 'with --out: replace an existing file');
  for (const f of ALL_METHOD_FLAGS) {
    const methods = JOIN_METHODS.filter((m) => f in METHOD_FLAGS[m]);
    const kinds = methods.map((m) => METHOD_FLAGS[m][f]![1]);
    const spec = kinds.includes('bool') ? `--${f}` : `--${f} <value>`;
    const help =
      f === 'token'
        ? 'join setting token (token): `-` reads it from stdin; a value given here is visible to other local users, prefer --token-file'
        : `join setting ${METHOD_FLAGS[methods[0]!][f]![0]} (${methods.join(', ')})`;
    // A list is repeatable or comma-separated: `--signatures a --signatures b` kept only b before.
    if (kinds.includes('list')) cmd.option(spec, `${help}; repeatable, or comma-separated`, collect);
    else cmd.option(spec, help);
  }
  for (const [f, [key]] of Object.entries(PKCS11_FLAGS))
    cmd.option(`--${f} <value>`, `pkcs11.${key} (with --key-storage pkcs11)`);
  cmd.action((o: ConfigureFlags) =>
    run(async () => {
      if (typeof o.token === 'string' && o.token !== '-') process.stderr.write(TOKEN_ARGV_WARNING);
      if (o.printPinOnly && !o.caPinFromUrl) throw bad('--print-pin-only needs --ca-pin-from-url URL');
      if (!o.printPinOnly) requirePin(o);
      if (o.caPinFromUrl) {
        const { fetchIssuerPin } = await import('./issuer-pin.js');
        const got = await fetchIssuerPin(o.caPinFromUrl as string);
        if (o.printPinOnly) {
          process.stdout.write(`${got.pin}\n`);
          process.stderr.write(
            `root presented by ${o.caPinFromUrl as string}: ${got.subject}; compare this pin with the one \`sigil server init\` printed on the issuer before using it\n`,
          );
          return;
        }
        if (o.caPin && got.pin !== o.caPin)
          throw new SigilError(
            'pin_mismatch',
            `${o.caPinFromUrl as string} presents a root with pin ${got.pin}, not --ca-pin ${o.caPin as string}; nothing written`,
          );
      }
      if (o.force && !o.out) throw bad('--force only applies with --out FILE');
      // Only for the token join: with another method `--token` is refused as a stray flag.
      if (o.token === '-' && o.join === 'token') o.token = await tokenFromStdin();
      const text = await configureAgent(o, o.out ? abs(o.out as string) : 'agent.yaml');
      if (!o.out) {
        process.stdout.write(text);
        return;
      }
      await writeConfigFile(o.out as string, text, o.force === true);
      process.stderr.write(
        `wrote ${abs(o.out as string)}; start the agent with: sigil agent run --config ${abs(o.out as string)}\n`,
      );
    }),
  );
}

/** The `bootstrap:` block the --mqtt-bootstrap-* flags give (one for every --mqtt transport), or undefined. */
function mqttBootstrap(o: ConfigureFlags): Record<string, string> | undefined {
  const f = (k: string): string | undefined => o[k] as string | undefined;
  const [url, user, pw, cert, key] = [
    f('mqttBootstrapUrl'),
    f('mqttBootstrapUsername'),
    f('mqttBootstrapPasswordFile'),
    f('mqttBootstrapCert'),
    f('mqttBootstrapKey'),
  ];
  if ([url, user, pw, cert, key].every((v) => v === undefined)) return undefined;
  if ((user === undefined) !== (pw === undefined))
    throw bad('--mqtt-bootstrap-username and --mqtt-bootstrap-password-file go together');
  if ((cert === undefined) !== (key === undefined))
    throw bad('--mqtt-bootstrap-cert and --mqtt-bootstrap-key go together');
  if (user !== undefined && cert !== undefined)
    throw bad('give the bootstrap login as a user name and password, or as a certificate and key, not both');
  if (user === undefined && cert === undefined)
    throw bad(
      '--mqtt-bootstrap-url needs the login: --mqtt-bootstrap-username with --mqtt-bootstrap-password-file, or --mqtt-bootstrap-cert with --mqtt-bootstrap-key',
    );
  return {
    ...(url !== undefined ? { url } : {}),
    ...(user !== undefined ? { username: user, password_file: abs(pw!) } : { cert: abs(cert!), key: abs(key!) }),
  };
}
