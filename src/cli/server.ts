/**
 * `sigil server …`. The issuer's modules (fastify, the stores, MQTT.js) are imported inside the
 * actions, so that loading the CLI stays fast.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { SigilError } from '../errors.js';
import type { IssuerMqttConfig } from '../server/service.js';
import { EXIT, parseFormat, printJson } from './output.js';
import { parseListen } from '../util/listen.js';
import { registerMigrateStore } from './migrate-store.js';
import { registerIssuerCommands } from './issuers.js';
import { registerRotateKey } from './rotate-key.js';

/** `--public-url`: an https URL without query or fragment; a trailing slash is dropped (it must equal `iss`). */
export function parsePublicUrl(s: string): string {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new SigilError('config_invalid', `--public-url "${s}" is not a URL`);
  }
  if (u.protocol !== 'https:' || u.search || u.hash || u.username || u.password) {
    throw new SigilError(
      'config_invalid',
      `--public-url must be https://HOST[:PORT][/PATH] without query, fragment or credentials, got "${s}"`,
    );
  }
  return u.href.replace(/\/+$/, '');
}

interface LimitOptions {
  idleTimeout?: string;
  headersTimeout?: string;
  requestTimeout?: string;
  keepAliveTimeout?: string;
  maxConnsPerSource?: string;
  joinRate?: string;
  joinBurst?: string;
}

function wholeNumber(v: string, flag: string, min: number): number {
  if (!/^\d{1,9}$/.test(v) || Number(v) < min)
    throw new SigilError('config_invalid', `${flag} must be a whole number ≥ ${min}, got "${v}"`);
  return Number(v);
}

/** The HTTPS listener's limits (transport/https/limits.ts) from `server start` flags; unset flags keep the defaults. */
export async function parseLimitOptions(
  o: LimitOptions,
): Promise<Partial<import('../transport/https/limits.js').HttpLimits>> {
  const { parseDuration } = await import('../util/duration.js');
  const ms = (v: string | undefined): number | undefined =>
    v === undefined ? undefined : parseDuration(v, 'config_invalid') * 1000;
  const limits = {
    ...(o.idleTimeout !== undefined ? { idleTimeoutMs: ms(o.idleTimeout)! } : {}),
    ...(o.headersTimeout !== undefined ? { headersTimeoutMs: ms(o.headersTimeout)! } : {}),
    ...(o.requestTimeout !== undefined ? { requestTimeoutMs: ms(o.requestTimeout)! } : {}),
    ...(o.keepAliveTimeout !== undefined ? { keepAliveTimeoutMs: ms(o.keepAliveTimeout)! } : {}),
    ...(o.maxConnsPerSource !== undefined
      ? { maxConnsPerSource: wholeNumber(o.maxConnsPerSource, '--max-conns-per-source', 0) }
      : {}),
    ...(o.joinRate !== undefined ? { joinRatePerS: wholeNumber(o.joinRate, '--join-rate', 0) } : {}),
    ...(o.joinBurst !== undefined ? { joinBurst: wholeNumber(o.joinBurst, '--join-burst', 1) } : {}),
  };
  const { DEFAULT_HTTP_LIMITS } = await import('../transport/https/limits.js');
  const eff = { ...DEFAULT_HTTP_LIMITS, ...limits };
  // Node refuses headersTimeout > requestTimeout; say so in our words.
  if (eff.headersTimeoutMs > eff.requestTimeoutMs)
    throw new SigilError(
      'config_invalid',
      `--headers-timeout (${eff.headersTimeoutMs / 1000}s) must not exceed --request-timeout (${eff.requestTimeoutMs / 1000}s)`,
    );
  return limits;
}

interface AuditOptions {
  auditCheckpointFile?: string;
  auditCheckpointInterval?: string;
  auditRetention?: string;
}

/** `--audit-*` flags (server/audit/runtime.ts). */
async function parseAuditOptions(
  o: AuditOptions,
): Promise<{ checkpointFile?: string; checkpointIntervalMs: number; retentionMs?: number }> {
  const { parseDuration } = await import('../util/duration.js');
  const { DEFAULT_CHECKPOINT_INTERVAL_MS } = await import('../server/audit/runtime.js');
  return {
    ...(o.auditCheckpointFile !== undefined ? { checkpointFile: o.auditCheckpointFile } : {}),
    checkpointIntervalMs:
      o.auditCheckpointInterval !== undefined
        ? parseDuration(o.auditCheckpointInterval, 'config_invalid') * 1000
        : DEFAULT_CHECKPOINT_INTERVAL_MS,
    ...(o.auditRetention !== undefined
      ? { retentionMs: parseDuration(o.auditRetention, 'config_invalid') * 1000 }
      : {}),
  };
}

interface MqttOptions {
  mqttUrl?: string;
  mqttCaFile?: string;
  mqttCertFile?: string;
  mqttKeyFile?: string;
  mqttUsername?: string;
  mqttPasswordFile?: string;
}

function readOption(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new SigilError('config_invalid', `${flag} ${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
}

/**
 * The MQTT responder's broker endpoint from `--mqtt-*` flags, files read (server/service.ts starts
 * it). Over mqtts the issuer presents, unless told otherwise, its own serving identity (an SVID of
 * spiffe://<td>/sigil/issuer from the Sigil CA, CN "Sigil issuer" — the username a broker with
 * use_identity_as_username sees) and trusts the Sigil root for the broker's certificate.
 */
function mqttConfig(o: MqttOptions): IssuerMqttConfig | undefined {
  if (!o.mqttUrl) {
    for (const f of ['mqttCaFile', 'mqttCertFile', 'mqttKeyFile', 'mqttUsername', 'mqttPasswordFile'] as const) {
      if (o[f] !== undefined)
        throw new SigilError(
          'config_invalid',
          `--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --mqtt-url`,
        );
    }
    return undefined;
  }
  if ((o.mqttCertFile === undefined) !== (o.mqttKeyFile === undefined))
    throw new SigilError('config_invalid', '--mqtt-cert-file and --mqtt-key-file go together');
  return {
    url: o.mqttUrl,
    ...(o.mqttCaFile !== undefined ? { ca: readOption(o.mqttCaFile, '--mqtt-ca-file') } : {}),
    ...(o.mqttCertFile !== undefined ? { cert: readOption(o.mqttCertFile, '--mqtt-cert-file') } : {}),
    ...(o.mqttKeyFile !== undefined ? { key: readOption(o.mqttKeyFile, '--mqtt-key-file') } : {}),
    ...(o.mqttUsername !== undefined ? { username: o.mqttUsername } : {}),
    ...(o.mqttPasswordFile !== undefined
      ? { password: readOption(o.mqttPasswordFile, '--mqtt-password-file').trim() }
      : {}),
  };
}

interface UiOptions {
  ui?: boolean;
  uiListen?: string;
  uiIdleTimeout?: string;
  uiSessionLifetime?: string;
}

/** `--ui-*` flags into IssuerServiceConfig.ui (server/ui/). */
async function parseUiOptions(o: UiOptions): Promise<import('../server/service.js').IssuerServiceConfig['ui']> {
  if (o.ui === false) {
    if (o.uiListen !== undefined)
      throw new SigilError('config_invalid', '--ui-listen and --no-ui contradict each other');
    return false;
  }
  const { parseDuration } = await import('../util/duration.js');
  const ms = (v: string | undefined): number | undefined =>
    v === undefined ? undefined : parseDuration(v, 'config_invalid') * 1000;
  const idle = ms(o.uiIdleTimeout);
  const lifetime = ms(o.uiSessionLifetime);
  if (idle !== undefined && lifetime !== undefined && lifetime < idle)
    throw new SigilError('config_invalid', '--ui-session-lifetime must not be shorter than --ui-idle-timeout');
  return {
    ...(o.uiListen !== undefined ? { listen: parseListen(o.uiListen) } : {}),
    ...(idle !== undefined ? { sessionIdleMs: idle } : {}),
    ...(lifetime !== undefined ? { sessionAbsoluteMs: lifetime } : {}),
  };
}

const STORE_HELP =
  'where the state lives: postgres://[user@]host[:port][,host2…]/db[?target_session_attrs=read-write] for several issuers on one database (docs/store-postgres.md; put the password in PGPASSWORD or ~/.pgpass, not the URL); default $SIGIL_STORE, else DATA_DIR/issuer.db';

export function registerServer(program: Command, run: (fn: () => Promise<void> | void) => Promise<void>): void {
  const server = program.command('server').description('run and administer the issuer');

  server
    .command('init')
    .description('create the CA (root + issuing intermediate), the admin credential and the store')
    .requiredOption('--data-dir <dir>', 'issuer data directory')
    .requiredOption('--trust-domain <name>', 'SPIFFE trust domain, e.g. example.org')
    .option('--store <url>', STORE_HELP)
    .option('--format <fmt>', 'table or json')
    .action((o: { dataDir: string; trustDomain: string; store?: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        const { initDataDirWithStore } = await import('../server/data-dir.js');
        const r = await initDataDirWithStore(o.dataDir, o.trustDomain, o.store ?? process.env['SIGIL_STORE']);
        if (fmt === 'json')
          printJson({
            ca_pin: r.pin,
            trust_domain: r.trustDomain,
            data_dir: o.dataDir,
            admin_token_file: r.adminTokenPath,
          });
        else {
          process.stdout.write(`initialised issuer for trust domain ${r.trustDomain} in ${o.dataDir}\n`);
          process.stdout.write(`admin credential: ${r.adminTokenPath} (0600)\n`);
          process.stdout.write(`CA pin (give this to agents as ca_pin):\n${r.pin}\n`);
        }
      }),
    );

  server
    .command('start')
    .description('serve the issuer API over HTTPS (and MQTT with --mqtt-url)')
    .requiredOption('--data-dir <dir>', 'issuer data directory')
    .option('--store <url>', STORE_HELP)
    .option('--listen <host:port>', 'address to listen on (port 0 picks a free port)', '127.0.0.1:8443')
    .option('--tls-san <name...>', 'extra DNS names / IPs for the issuer TLS certificate')
    .option(
      '--firmware-profiles <dir>',
      'firmware profiles for tpm join rules (default: $SIGIL_FIRMWARE_PROFILES_DIR, else firmware-profiles/ of the install)',
    )
    .option(
      '--public-url <url>',
      'issuer URL relying parties use: JWT-SVID iss and OIDC discovery (default: the listen URL; docs/vault.md)',
    )
    .option('--log-level <level>', 'trace|debug|info|warn|error', undefined)
    .option(
      '--mqtt-url <url>',
      'also serve agents through an MQTT v5 broker: mqtt://HOST:PORT or mqtts://HOST:PORT (docs/mqtt.md)',
    )
    .option('--mqtt-ca-file <file>', "CA for the broker's TLS certificate (default: the Sigil root)")
    .option(
      '--mqtt-cert-file <file>',
      "client certificate for the broker (default for mqtts: the issuer's own serving certificate)",
    )
    .option('--mqtt-key-file <file>', 'key of --mqtt-cert-file')
    .option('--mqtt-username <name>', 'broker username (brokers with password logins)')
    .option('--mqtt-password-file <file>', 'file holding the broker password')
    .option(
      '--audit-checkpoint-file <file>',
      'append signed audit checkpoints here (default DATA_DIR/audit-checkpoints.jsonl)',
    )
    .option(
      '--audit-checkpoint-interval <dur>',
      'sign a checkpoint of the audit chain this often when it grew (default 10m)',
    )
    .option(
      '--audit-retention <dur>',
      'prune audit rows older than this, hourly, after a signed checkpoint (default: keep all)',
    )
    .option('--idle-timeout <dur>', 'close an HTTPS connection idle this long before or between requests (default 10s)')
    .option('--headers-timeout <dur>', 'TLS handshake and request headers must arrive within this (default 10s)')
    .option('--request-timeout <dur>', 'a whole request must arrive within this (default 30s)')
    .option(
      '--keep-alive-timeout <dur>',
      'close a kept-alive connection this long after its last response (default 10s)',
    )
    .option(
      '--max-conns-per-source <n>',
      'open HTTPS connections per remote address; more are closed at once (default 64, 0: no cap)',
    )
    .option('--join-rate <n>', 'join requests per second per remote address, sustained (default 50, 0: no limit)')
    .option('--join-burst <n>', 'join requests per remote address in a burst (default 200)')
    .option(
      '--crl-refresh <dur>',
      'sign a new CRL at least this often; relying parties get nextUpdate = 2x this (default 1h; docs/crl.md)',
    )
    .option(
      '--event-webhook <url>',
      'POST signed events (instance_locked, certificate_revoked, …) to this https:// URL; repeat for more (docs/events.md)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      '--event-webhook-ca <file>',
      "CA certificates (PEM) for the webhooks' TLS certificates (default: the system's)",
    )
    .option(
      '--ui-listen <host:port>',
      'serve the fleet view (/ui/) on this address only, not on --listen (docs/fleet-ui.md)',
    )
    .option(
      '--workers <n>',
      'serve with N issuer processes sharing the listener, for N cores (needs --store postgres://; docs/scaling.md)',
    )
    .option('--no-ui', 'do not serve the fleet view')
    .option('--ui-idle-timeout <dur>', 'sign a fleet-view session out after this long without a request (default 15m)')
    .option(
      '--ui-session-lifetime <dur>',
      'sign a fleet-view session out this long after sign-in, active or not (default 8h)',
    )
    .action(
      (
        o: {
          dataDir: string;
          store?: string;
          listen: string;
          tlsSan?: string[];
          logLevel?: string;
          publicUrl?: string;
          firmwareProfiles?: string;
          crlRefresh?: string;
          eventWebhook?: string[];
          eventWebhookCa?: string;
          workers?: string;
        } & UiOptions &
          MqttOptions &
          AuditOptions &
          LimitOptions,
      ) =>
        run(async () => {
          // SIGHUP (systemctl reload) caught before anything is slow (main.ts already does, ./reload-signal.ts).
          const { catchReloadSignal, onReloadSignal } = await import('./reload-signal.js');
          catchReloadSignal();
          // Shorter major-GC pauses for a busy issuer (./issuer-heap.ts).
          (await import('./issuer-heap.js')).tuneIssuerHeap();
          // Flags only: everything the issuer owns (context, listeners, timers) is the IssuerService.
          const { host, port } = parseListen(o.listen);
          const limits = await parseLimitOptions(o);
          const publicUrl = o.publicUrl === undefined ? undefined : parsePublicUrl(o.publicUrl);
          const audit = await parseAuditOptions(o);
          const mqtt = mqttConfig(o);
          const { parseDuration } = await import('../util/duration.js');
          const crlRefreshMs =
            o.crlRefresh !== undefined ? parseDuration(o.crlRefresh, 'config_invalid') * 1000 : undefined;
          if (o.eventWebhookCa !== undefined && !o.eventWebhook?.length)
            throw new SigilError('config_invalid', '--event-webhook-ca needs --event-webhook');
          const webhookCa =
            o.eventWebhookCa !== undefined ? readOption(o.eventWebhookCa, '--event-webhook-ca') : undefined;
          const webhooks = (o.eventWebhook ?? []).map((url) => ({
            url,
            ...(webhookCa !== undefined ? { ca: webhookCa } : {}),
          }));
          const ui = await parseUiOptions(o);
          const store = o.store ?? process.env['SIGIL_STORE'];
          // --workers N > 1: this process only supervises N issuer processes (server/cluster.ts).
          const workers = o.workers !== undefined ? await import('../server/cluster.js') : undefined;
          if (workers && !workers.isClusterWorker()) {
            const { storeKind } = await import('../server/data-dir-store.js');
            const n = workers.parseWorkers(o.workers!, storeKind(store));
            if (n > 1)
              return workers.superviseWorkers({ workers: n, say: (line) => process.stdout.write(`${line}\n`) });
          }
          const [{ IssuerService }, { rotatedInPlace }] = await Promise.all([
            import('../server/service.js'),
            import('../server/issuers/runtime.js'),
          ]);
          const service = IssuerService.open({
            dataDir: o.dataDir,
            ...(store !== undefined ? { store } : {}),
            host,
            port,
            limits,
            audit,
            ...(o.tlsSan ? { tlsSans: o.tlsSan } : {}),
            ...(publicUrl !== undefined ? { publicUrl } : {}),
            ...(o.logLevel !== undefined ? { logLevel: o.logLevel } : {}),
            ...(o.firmwareProfiles !== undefined ? { firmwareProfilesDir: o.firmwareProfiles } : {}),
            ...(mqtt ? { mqtt } : {}),
            ...(crlRefreshMs !== undefined ? { crl: { refreshMs: crlRefreshMs } } : {}),
            ...(webhooks.length > 0 ? { events: { webhooks } } : {}),
            ...(workers ? { onKeysChanged: () => workers.reportKeysChanged() } : {}),
            ui,
          });
          await (workers ? workers.whileStarting(() => service.start()) : service.start());
          const { ca } = service.ctx;
          const { redactStoreUrl } = await import('../server/store/postgres/connection.js');
          service.log.info(
            {
              url: service.url,
              public_url: service.ctx.publicUrl,
              trust_domain: ca.trustDomain,
              ca_pin: ca.pin,
              // Never the password: the URL as given, credentials replaced by ***.
              store: store === undefined ? 'sqlite' : redactStoreUrl(store),
            },
            'issuer ready',
          );
          process.stdout.write(
            `sigil issuer listening on ${service.url} (trust domain ${ca.trustDomain}, ca pin ${ca.pin})\n`,
          );
          if (service.ui) process.stdout.write(`sigil fleet view on ${service.uiUrl || service.url}/ui/\n`);
          workers?.reportListening(service.url);
          await new Promise<void>((resolve) => {
            const stop = (sig: string): void => {
              service.log.info({ signal: sig }, 'shutting down');
              void service.stop().finally(resolve);
            };
            process.once('SIGTERM', () => stop('SIGTERM'));
            process.once('SIGINT', () => stop('SIGINT'));
            // systemctl reload: read the credential keys again (after sigil server rotate-key, or
            // key files copied from another issuer); they are also picked up within ~10 s without it.
            onReloadSignal(() => {
              void service
                .reloadKeys()
                .then((r) =>
                  service.log.info({ signal: 'SIGHUP', result: r.result }, `credential keys reload: ${r.result}`),
                );
            });
            // Retired or revoked in the issuer registry (docs/issuers.md): stop serving. Rotated in
            // place (`rotate-intermediate`): exit 75 (EX_TEMPFAIL), so that the service manager
            // (Restart=on-failure) starts it again with the new intermediate; with no replacement,
            // exit 0 and stay down (a start would be refused).
            service.ctx.intermediates?.onRetired((status) => {
              workers?.reportRetired(status);
              if (rotatedInPlace(o.dataDir, service.ctx.ca.intermediatePem)) {
                service.log.warn(
                  { status },
                  "this issuer's intermediate was rotated in place: exiting 75 so that the service manager starts it again with the new one",
                );
                process.exitCode = EXIT.tempfail;
              }
              stop(`issuer ${status}`);
            });
          });
        }),
    );

  server
    .command('ui-token')
    .description('issue (or revoke) a read-only viewer credential for the fleet view (docs/fleet-ui.md)')
    .requiredOption('--data-dir <dir>', 'issuer data directory')
    .option('--name <name>', 'who the viewer is (a-z 0-9 . _ -); a new token replaces their old one')
    .option('--role <role>', 'viewer (the only role a ui-token has; administrators sign in with admin.token)', 'viewer')
    .option('--revoke <name>', "remove this viewer's credential")
    .option('--format <fmt>', 'table or json')
    .action((o: { dataDir: string; name?: string; role: string; revoke?: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        const { issueViewerToken, revokeViewerToken, viewersPath } = await import('../server/ui/viewer-credentials.js');
        const { readMeta } = await import('../server/data-dir.js');
        readMeta(o.dataDir);
        if (o.role !== 'viewer')
          throw new SigilError(
            'config_invalid',
            `--role ${o.role}: ui tokens are for viewers; administrators sign in with DATA_DIR/admin.token`,
          );
        if ((o.name === undefined) === (o.revoke === undefined))
          throw new SigilError('config_invalid', 'give --name NAME (issue) or --revoke NAME');
        if (o.revoke !== undefined) {
          const removed = revokeViewerToken(o.dataDir, o.revoke);
          if (fmt === 'json') printJson({ viewer: o.revoke, revoked: removed });
          else
            process.stdout.write(
              removed
                ? `revoked viewer ${o.revoke} (its open fleet-view sessions end at their next request to an issuer reading this file: with several issuers, revoke on each)\n`
                : `no viewer ${o.revoke}\n`,
            );
          return;
        }
        const token = issueViewerToken(o.dataDir, o.name!, Date.now());
        if (fmt === 'json') printJson({ viewer: o.name, role: 'viewer', token, file: viewersPath(o.dataDir) });
        else
          process.stdout.write(
            `viewer ${o.name} (read-only); sign in to /ui/ with this token (shown once, its hash is in ${viewersPath(o.dataDir)}):\n${token}\n`,
          );
      }),
    );

  registerRotateKey(server, run);
  registerMigrateStore(server, run);
  registerIssuerCommands(server, run);
}
