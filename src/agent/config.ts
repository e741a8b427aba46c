/**
 * `agent.yaml`, validated apart from being applied. Relative paths are resolved against the
 * config file's directory, so a config works wherever the agent is started from.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { SigilError } from '../errors.js';
import { AGENT_JOIN_METHODS } from '../join/agent-methods.js';
import { parseWith } from '../protocol/messages.js';
import {
  CONNECT_TIMEOUT_MAX_MS,
  CONNECT_TIMEOUT_MIN_MS,
  DEFAULT_RECONNECT_RATE,
  RECONNECT_SPREAD_MAX_MS,
  spreadForFleet,
} from '../transport/mqtt/pacing.js';
import { yamlErrorText } from '../util/yaml-error.js';
import { TRUST_CHECK_DEFAULT_S } from './trust-check.js';
import * as z from '../util/zod-mini.js';
import {
  credentialOutputVariants,
  durationSchema,
  resolveCredentialOutput,
  type CredentialOutputConfig,
} from './outputs/config.js';

/** Every join method the agent knows (join/agent-methods.ts), in registry order. */
export const JOIN_METHOD_NAMES: readonly string[] = Object.freeze(AGENT_JOIN_METHODS.map((m) => m.descriptor.name));

/** Keys in method `m`'s block that name files (its descriptor's pathKeys); relative ones are resolved against the config's dir. */
function pathKeysOf(m: string): ReadonlySet<string> {
  return new Set(AGENT_JOIN_METHODS.find((e) => e.descriptor.name === m)?.descriptor.pathKeys ?? []);
}

function resolvePaths(v: unknown, abs: (p: string) => string, keys: ReadonlySet<string>): unknown {
  if (Array.isArray(v)) return v.map((x) => resolvePaths(x, abs, keys));
  if (!v || typeof v !== 'object') return v;
  return Object.fromEntries(
    Object.entries(v as Record<string, unknown>).map(([k, x]) => [
      k,
      // URIs such as pkcs11:… or tpm:… are not paths.
      keys.has(k) && typeof x === 'string' && !/^[a-z][a-z0-9+.-]*:/i.test(x) ? abs(x) : resolvePaths(x, abs, keys),
    ]),
  );
}

export const DEFAULT_PKCS11_KEY_LABEL_PREFIX = 'sigil';

const MQTT_URL_RE = /^mqtts?:\/\/[^/]+\/?$/;

/**
 * The schema of agent.yaml, built per call: the config is parsed once at start, and zod schemas
 * kept at module level stay resident in the daemon for nothing (~1.5 MB with the join
 * methods' and the outputs' schemas; issue #19, docs/performance.md "Agent footprint").
 */
function agentConfigFileSchema() {
  const duration = z.optional(durationSchema());
  const nonEmpty = z.string().check(z.minLength(1));
  const optionalString = z.optional(z.string());
  const tokenJoin = z.strictObject({
    method: z.literal('token'),
    token: optionalString,
    /** Safer than inline: a file only root can read. */
    token_file: optionalString,
  });
  /**
   * Every method but token: `join: { method: M, M: { …method settings… } }`. The block is
   * validated by the method's own schema when the agent builds it (agent/join-method.ts).
   */
  const evidenceJoin = z.catchall(
    z.object({ method: z.enum(JOIN_METHOD_NAMES.filter((m) => m !== 'token') as [string, ...string[]]) }),
    z.unknown(),
  );
  const outputSchema = z.strictObject({
    type: z.literal('identity'),
    path: nonEmpty,
    /** Numeric owner/group for the written files (the workload's user). */
    uid: z.optional(z.int().check(z.nonnegative())),
    gid: z.optional(z.int().check(z.nonnegative())),
  });
  /**
   * Where `key_storage: pkcs11` creates identity keys (docs/pkcs11.md). The names follow the x509
   * join's `pkcs11:` block and RFC 7512 (`token` is the token label). The PIN is only ever read
   * from a file or an environment variable, never written here.
   */
  const pkcs11KeySchema = z.strictObject({
    module: z
      .string()
      .check(
        z.minLength(1),
        z.maxLength(4096),
        z.regex(/^\//, 'must be an absolute path, e.g. /usr/lib/softhsm/libsofthsm2.so'),
      ),
    /** CK_TOKEN_INFO.label is 32 bytes, blank padded. */
    token: z.string().check(z.minLength(1), z.maxLength(32)),
    pin_file: z.optional(z.string().check(z.minLength(1), z.maxLength(4096))),
    pin_env: z.optional(
      z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'is the NAME of an environment variable')),
    ),
    /** Keys are labelled `<prefix>-<12 hex digits>`, a new label for every key. */
    key_label_prefix: z.optional(
      z.string().check(z.regex(/^[A-Za-z0-9._-]{1,32}$/, 'up to 32 letters, digits, dots, dashes or underscores')),
    ),
  });
  /** Before the first join (and after an expiry), how the agent authenticates to the broker. */
  const mqttBootstrap = z.union([
    z.strictObject({
      /** A separate listener for password logins (mosquitto needs one: require_certificate is per listener). */
      url: optionalString,
      username: z.string().check(z.minLength(1), z.maxLength(256)),
      password_file: nonEmpty,
    }),
    z.strictObject({ url: optionalString, cert: nonEmpty, key: nonEmpty }),
  ]);
  /**
   * `reconnect: { spread: 30s }` — after losing the broker, wait uniform [0, spread) before
   * reconnecting — or `reconnect: { fleet_size: 20000, rate: 500 }`: the spread that brings that
   * many agents back at `rate` connects per second (transport/mqtt/pacing.ts).
   */
  const mqttReconnect = z.union([
    z.strictObject({ spread: durationSchema() }),
    z.strictObject({
      fleet_size: z.int().check(z.minimum(1), z.maximum(10_000_000)),
      rate: z.optional(z.int().check(z.minimum(1), z.maximum(1_000_000))),
    }),
  ]);
  const transportSchema = z.discriminatedUnion('type', [
    z.strictObject({ type: z.literal('https'), url: z.url(), timeout: duration }),
    z.strictObject({
      type: z.literal('mqtt'),
      url: z.string().check(z.regex(MQTT_URL_RE, 'must be mqtt://HOST:PORT or mqtts://HOST:PORT')),
      /** CA for the broker's TLS certificate; default: the pinned Sigil root. */
      ca_file: z.optional(nonEmpty),
      bootstrap: z.optional(mqttBootstrap),
      timeout: duration,
      /** How long the broker keeps the agent's session (and queued answers) while it is away. */
      session_expiry: duration,
      /** One connection attempt (TCP, TLS, CONNACK, SUBACK); default 5s, 1s–60s, at most `timeout`. */
      connect_timeout: duration,
      /** Pacing after the broker was lost (docs/mqtt.md, "Reconnect storms"): a spread, or the fleet it is for. */
      reconnect: z.optional(mqttReconnect),
    }),
  ]);
  return z.strictObject({
    /** Shorthand for `transports: [{ type: https, url: … }]`. */
    issuer: z.optional(z.url()),
    /** In order of preference; a retryable failure on one tries the next. */
    transports: z.optional(z.array(transportSchema).check(z.minLength(1), z.maxLength(8))),
    ca_pin: z
      .string()
      .check(
        z.regex(
          /^sha256:[0-9a-f]{64}$/,
          'ca_pin must be sha256:<64 lowercase hex digits> as printed by `sigil server init`',
        ),
      ),
    data_dir: nonEmpty,
    ttl: duration,
    /** Fraction of the lifetime after which to renew (±10% jitter is added). */
    renew_fraction: z.optional(z.number().check(z.gt(0.1), z.lt(0.95))),
    /**
     * Prove the boot state to the issuer this often, independent of renewal (the `attest`
     * operation, ±10% jitter; docs/attest-interval.md). Absent: off. At least ATTEST_EVERY_MIN_S.
     */
    attest_every: duration,
    /**
     * How often the daemon asks whether the issuer rotated a signing key, between renewals, when
     * it has ssh or jwt outputs (./trust-check.ts). Default TRUST_CHECK_DEFAULT_S.
     */
    trust_check_every: duration,
    join: z.union([tokenJoin, evidenceJoin]),
    /**
     * software (default); tpm: the identity key is created in the TPM of the tpm join; pkcs11: on
     * the token of the `pkcs11` block.
     */
    key_storage: z.optional(z.enum(['software', 'tpm', 'pkcs11'])),
    pkcs11: z.optional(pkcs11KeySchema),
    /** `identity`, and the credential outputs of outputs/config.ts (docs/credentials.md). */
    outputs: z._default(
      z.array(z.discriminatedUnion('type', [outputSchema, ...credentialOutputVariants()])).check(z.maxLength(32)),
      [],
    ),
    metrics: z.optional(
      z.strictObject({
        /** host:port for a local Prometheus endpoint (loopback recommended). */
        listen: optionalString,
        /** node_exporter textfile collector path. */
        textfile: optionalString,
      }),
    ),
    log_level: z.optional(z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent'])),
    /** The SPIFFE Workload API and Envoy SDS on a Unix socket (docs/workload-api.md). */
    workload_api: z.optional(
      z.strictObject({
        socket: z
          .string()
          .check(z.minLength(1), z.maxLength(107, 'a Unix socket path is at most 107 bytes (sun_path)')),
        /** Opt-in `unix:sha256` selector: hash executables up to this many bytes (larger ones get no such selector). */
        sha256_max_bytes: z.optional(z.int().check(z.positive(), z.maximum(1_073_741_824))),
        /** Concurrent connections of one local uid (default 32: one user cannot take the socket from the others). */
        max_connections_per_uid: z.optional(z.int().check(z.positive(), z.maximum(4096))),
      }),
    ),
  });
}

export type AgentConfigFile = z.infer<ReturnType<typeof agentConfigFileSchema>>;

export const DEFAULT_TRANSPORT_TIMEOUT_S = 15;
export const DEFAULT_MQTT_SESSION_EXPIRY_S = 86_400;

export type MqttBootstrapConfig = { url?: string } & (
  { username: string; passwordFile: string } | { certFile: string; keyFile: string }
);

export type TransportConfig =
  | { type: 'https'; url: string; timeoutMs: number }
  | {
      type: 'mqtt';
      url: string;
      timeoutMs: number;
      caFile?: string;
      bootstrap?: MqttBootstrapConfig;
      sessionExpiryS: number;
      /** Set only when configured; defaults in transport/mqtt/pacing.ts. */
      connectTimeoutMs?: number;
      reconnectSpreadMs?: number;
    };

export interface Pkcs11KeyConfig {
  module: string;
  tokenLabel: string;
  /** Exactly one of pinFile / pinEnv. */
  pinFile?: string;
  pinEnv?: string;
  keyLabelPrefix: string;
}

export interface AgentConfig {
  /** The single HTTPS issuer URL when the config uses `issuer:` (else the first https transport's). */
  issuer: string | undefined;
  /** In order of preference. */
  transports: TransportConfig[];
  caPin: string;
  dataDir: string;
  ttlS: number | undefined;
  renewFraction: number;
  /** `attest_every` in seconds (./attest-schedule.ts); undefined: no interval attestation. */
  attestEveryS?: number;
  /** `trust_check_every` in seconds (./trust-check.ts): every daemon (the root CRL; ssh/jwt outputs follow rotations). */
  trustCheckEveryS?: number;
  /** The method and its settings: its `join.<method>:` block, paths resolved (token: flat, the token itself). */
  join: { method: 'token'; token: string } | { method: string; settings: Record<string, unknown> };
  keyStorage: 'software' | 'tpm' | 'pkcs11';
  /** The TPM for `key_storage: tpm` (the tpm join's TCTI). */
  tpmTcti: string | undefined;
  /** The token for `key_storage: pkcs11`; paths absolute. */
  pkcs11: Pkcs11KeyConfig | undefined;
  outputs: Array<{ type: 'identity'; path: string; uid?: number; gid?: number }>;
  /** SSH, database, Kubernetes and JWT outputs (agent/credentials.ts). */
  credentialOutputs: CredentialOutputConfig[];
  metrics: { listen?: string; textfile?: string };
  logLevel: string | undefined;
  /** `workload_api:` (agent/workload/): the socket path (absolute), the opt-in sha256 selector's size limit. */
  workloadApi?: { socket: string; sha256MaxBytes: number | undefined; maxConnectionsPerUid?: number | undefined };
  /** The config file, for messages. */
  source: string;
}

export function parseAgentConfig(text: string, source: string): AgentConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new SigilError('config_invalid', `${source}: YAML error: ${yamlErrorText(e)}`);
  }
  const method = (raw as { join?: { method?: unknown } } | null)?.join?.method;
  if (method !== undefined && !(JOIN_METHOD_NAMES as readonly unknown[]).includes(method)) {
    throw new SigilError(
      'config_invalid',
      `${source}: join.method must be one of ${JOIN_METHOD_NAMES.join(', ')} (got ${JSON.stringify(method)})`,
    );
  }
  const c = parseWith(agentConfigFileSchema(), raw, 'config_invalid', source);
  const base = dirname(resolve(source));
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  const join = resolveJoin(c.join, abs, source);
  const transports = resolveTransports(c, abs, source);
  const credentialOutputs = c.outputs.flatMap((o, i) =>
    o.type === 'identity' ? [] : [resolveCredentialOutput(o, `${source}: outputs.${i}`, abs)],
  );
  return {
    issuer: c.issuer ?? transports.find((t) => t.type === 'https')?.url,
    transports,
    caPin: c.ca_pin,
    dataDir: abs(c.data_dir),
    ttlS: c.ttl,
    renewFraction: c.renew_fraction ?? 0.5,
    ...attestEvery(c.attest_every, source),
    trustCheckEveryS: trustCheckEvery(c.trust_check_every, source),
    join,
    ...keyStorageOf(c, join, abs, source),
    outputs: c.outputs.flatMap((o) => (o.type === 'identity' ? [{ ...o, path: abs(o.path) }] : [])),
    credentialOutputs,
    metrics: {
      ...(c.metrics?.listen ? { listen: c.metrics.listen } : {}),
      ...(c.metrics?.textfile ? { textfile: abs(c.metrics.textfile) } : {}),
    },
    logLevel: c.log_level,
    ...(c.workload_api
      ? {
          workloadApi: {
            socket: abs(c.workload_api.socket),
            sha256MaxBytes: c.workload_api.sha256_max_bytes,
            maxConnectionsPerUid: c.workload_api.max_connections_per_uid,
          },
        }
      : {}),
    source,
  };
}

/**
 * Bounds of `attest_every`. Below a minute an attestation costs more than it tells (a TPM quote
 * and an issuer write transaction per machine), and a fleet would load the issuer like renewals
 * every few seconds; above a day it is no longer "continuous".
 */
export const ATTEST_EVERY_MIN_S = 60;
export const ATTEST_EVERY_MAX_S = 86_400;

function attestEvery(s: number | undefined, source: string): { attestEveryS?: number } {
  if (s === undefined) return {};
  if (s < ATTEST_EVERY_MIN_S || s > ATTEST_EVERY_MAX_S)
    throw new SigilError(
      'config_invalid',
      `${source}: attest_every must be between ${ATTEST_EVERY_MIN_S / 60}m and ${ATTEST_EVERY_MAX_S / 3600}h (got ${s}s); remove it to attest only at join and renewal`,
    );
  return { attestEveryS: s };
}

/**
 * Bounds of `trust_check_every`. Each check is one signed `bundle` answer (no database write at
 * the issuer): every 5 minutes a 10,000-machine fleet asks ~33 a second. Below 30 s it would
 * load an issuer like renewals; above an hour a stolen SSH CA stays trusted too long for the
 * check to be worth having (renewals already carry the sequence).
 */
export const TRUST_CHECK_MIN_S = 30;
export const TRUST_CHECK_MAX_S = 3_600;

function trustCheckEvery(s: number | undefined, source: string): number {
  if (s === undefined) return TRUST_CHECK_DEFAULT_S;
  if (s < TRUST_CHECK_MIN_S || s > TRUST_CHECK_MAX_S)
    throw new SigilError(
      'config_invalid',
      `${source}: trust_check_every must be between ${TRUST_CHECK_MIN_S}s and ${TRUST_CHECK_MAX_S / 60}m (got ${s}s); remove it for the default ${TRUST_CHECK_DEFAULT_S / 60}m`,
    );
  return s;
}

/** The TPM of a join method that certifies a TPM-resident identity key (its registry entry says so), else undefined. */
function identityKeyTpm(join: AgentConfig['join']): string | undefined {
  const entry = AGENT_JOIN_METHODS.find((e) => e.descriptor.name === join.method);
  return 'settings' in join ? entry?.identityKeyTpm?.(join.settings) : undefined;
}

function keyStorageOf(
  c: AgentConfigFile,
  join: AgentConfig['join'],
  abs: (p: string) => string,
  source: string,
): Pick<AgentConfig, 'keyStorage' | 'tpmTcti' | 'pkcs11'> {
  const joinTpm = identityKeyTpm(join);
  const storage = c.key_storage ?? (joinTpm !== undefined ? 'tpm' : 'software');
  if (c.pkcs11 !== undefined && storage !== 'pkcs11')
    throw new SigilError(
      'config_invalid',
      `${source}: pkcs11: is set but key_storage is ${storage}; set key_storage: pkcs11 (or remove the pkcs11 block)`,
    );
  if (storage === 'software') return { keyStorage: 'software', tpmTcti: undefined, pkcs11: undefined };
  if (storage === 'pkcs11')
    return { keyStorage: 'pkcs11', tpmTcti: undefined, pkcs11: pkcs11KeyConfig(c.pkcs11, join, abs, source) };
  if (joinTpm === undefined) {
    const methods = AGENT_JOIN_METHODS.filter((e) => e.identityKeyTpm !== undefined).map((e) => e.descriptor.name);
    throw new SigilError(
      'config_invalid',
      `${source}: key_storage: tpm needs join.method ${methods.join(' or ')} (its TCTI names the TPM)`,
    );
  }
  return { keyStorage: 'tpm', tpmTcti: joinTpm, pkcs11: undefined };
}

function pkcs11KeyConfig(
  p: AgentConfigFile['pkcs11'],
  join: AgentConfig['join'],
  abs: (p: string) => string,
  source: string,
): Pkcs11KeyConfig {
  // The tpm join's proof is TPM2_Certify of the identity key: a token key cannot give it.
  if (identityKeyTpm(join) !== undefined)
    throw new SigilError(
      'config_invalid',
      `${source}: key_storage: pkcs11 cannot be used with join.method ${join.method} (the ${join.method} join certifies a TPM-resident identity key); use key_storage: tpm, or another join method`,
    );
  if (p === undefined)
    throw new SigilError(
      'config_invalid',
      `${source}: key_storage: pkcs11 needs a pkcs11: { module, token, pin_file | pin_env } block`,
    );
  if ((p.pin_file === undefined) === (p.pin_env === undefined)) {
    throw new SigilError(
      'config_invalid',
      `${source}: pkcs11: give exactly one of pin_file (a file holding the user PIN) or pin_env (the name of a variable holding it)`,
    );
  }
  return {
    module: p.module,
    tokenLabel: p.token,
    ...(p.pin_file !== undefined ? { pinFile: abs(p.pin_file) } : {}),
    ...(p.pin_env !== undefined ? { pinEnv: p.pin_env } : {}),
    keyLabelPrefix: p.key_label_prefix ?? DEFAULT_PKCS11_KEY_LABEL_PREFIX,
  };
}

function resolveJoin(j: AgentConfigFile['join'], abs: (p: string) => string, source: string): AgentConfig['join'] {
  if (j.method !== 'token') {
    const m = j.method;
    const extra = Object.keys(j).filter((k) => k !== 'method' && k !== m);
    if (extra.length)
      throw new SigilError(
        'config_invalid',
        `${source}: join: unknown key "${extra[0]}" (a ${m} join has method and ${m})`,
      );
    const block = (j as Record<string, unknown>)[m] ?? {};
    if (typeof block !== 'object' || Array.isArray(block))
      throw new SigilError('config_invalid', `${source}: join.${m} must be a mapping`);
    return { method: m, settings: resolvePaths(block, abs, pathKeysOf(m)) as Record<string, unknown> };
  }
  const t = j as Extract<AgentConfigFile['join'], { method: 'token' }>;
  let token = t.token;
  if (t.token_file) {
    const writeIt = `write the token there, readable by the agent only: (umask 077; echo TOKEN > ${abs(t.token_file)})`;
    try {
      token = readFileSync(abs(t.token_file), 'utf8').trim();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new SigilError(
        'config_invalid',
        `${source}: join.token_file ${t.token_file}: ${code}${code === 'ENOENT' ? `; ${writeIt}` : ''}`,
      );
    }
    if (!token)
      throw new SigilError('config_invalid', `${source}: join.token_file ${t.token_file} is empty; ${writeIt}`);
  }
  if (!token)
    throw new SigilError('config_invalid', `${source}: join.token or join.token_file is required for method token`);
  return { method: 'token', token };
}

/** `issuer:` or `transports:` (exactly one) → the transports, paths resolved, defaults applied. */
function resolveTransports(c: AgentConfigFile, abs: (p: string) => string, source: string): TransportConfig[] {
  if (c.issuer && c.transports)
    throw new SigilError(
      'config_invalid',
      `${source}: give either issuer or transports, not both (issuer: URL is short for one https transport)`,
    );
  if (!c.issuer && !c.transports) throw new SigilError('config_invalid', `${source}: issuer or transports is required`);
  return (c.transports ?? [{ type: 'https' as const, url: c.issuer! }]).map((t): TransportConfig => {
    const timeoutMs = (t.timeout ?? DEFAULT_TRANSPORT_TIMEOUT_S) * 1000;
    if (t.type === 'https') return { type: 'https', url: t.url, timeoutMs };
    const b = t.bootstrap;
    const bootstrap: MqttBootstrapConfig | undefined = !b
      ? undefined
      : 'username' in b
        ? { ...(b.url ? { url: b.url } : {}), username: b.username, passwordFile: abs(b.password_file) }
        : { ...(b.url ? { url: b.url } : {}), certFile: abs(b.cert), keyFile: abs(b.key) };
    if (bootstrap?.url !== undefined && !MQTT_URL_RE.test(bootstrap.url))
      throw new SigilError('config_invalid', `${source}: bootstrap.url must be mqtt://HOST:PORT or mqtts://HOST:PORT`);
    return {
      type: 'mqtt',
      url: t.url,
      timeoutMs,
      ...(t.ca_file ? { caFile: abs(t.ca_file) } : {}),
      ...(bootstrap ? { bootstrap } : {}),
      sessionExpiryS: t.session_expiry ?? DEFAULT_MQTT_SESSION_EXPIRY_S,
      ...mqttPacing(t, timeoutMs, source),
    };
  });
}

/** `connect_timeout` and `reconnect`, checked against their bounds and the request timeout. */
function mqttPacing(
  t: Pick<
    Extract<NonNullable<AgentConfigFile['transports']>[number], { type: 'mqtt' }>,
    'connect_timeout' | 'reconnect'
  >,
  timeoutMs: number,
  source: string,
): { connectTimeoutMs?: number; reconnectSpreadMs?: number } {
  const out: { connectTimeoutMs?: number; reconnectSpreadMs?: number } = {};
  if (t.connect_timeout !== undefined) {
    const ms = t.connect_timeout * 1000;
    if (ms < CONNECT_TIMEOUT_MIN_MS || ms > CONNECT_TIMEOUT_MAX_MS || ms > timeoutMs)
      throw new SigilError(
        'config_invalid',
        `${source}: connect_timeout must be between ${CONNECT_TIMEOUT_MIN_MS / 1000}s and ${CONNECT_TIMEOUT_MAX_MS / 1000}s and at most the transport's timeout (${timeoutMs / 1000}s); got ${t.connect_timeout}s`,
      );
    out.connectTimeoutMs = ms;
  }
  const r = t.reconnect;
  if (r !== undefined) {
    const ms = 'spread' in r ? r.spread * 1000 : spreadForFleet(r.fleet_size, r.rate ?? DEFAULT_RECONNECT_RATE);
    const raw = 'spread' in r ? ms : Math.round((r.fleet_size / (r.rate ?? DEFAULT_RECONNECT_RATE)) * 1000);
    if (raw > RECONNECT_SPREAD_MAX_MS)
      throw new SigilError(
        'config_invalid',
        `${source}: reconnect spread must be at most ${RECONNECT_SPREAD_MAX_MS / 3_600_000}h (got ${Math.round(raw / 1000)}s${'spread' in r ? '' : ' from fleet_size / rate; raise rate (connects per second your brokers and issuers take)'})`,
      );
    out.reconnectSpreadMs = ms;
  }
  return out;
}

export function loadAgentConfig(path: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SigilError(
      'config_invalid',
      `cannot read agent config ${resolve(path)}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'ENOENT: no such file; give the path of agent.yaml with --config FILE' : ((e as NodeJS.ErrnoException).code ?? 'error')}`,
    );
  }
  return parseAgentConfig(text, path);
}
