/**
 * The issuer as one object (issue #13, "state owned by a context"): it owns its configuration,
 * its context (CA, stores, caches: ./issuer.ts), its listeners (HTTPS, optionally MQTT) and its
 * timers (serving-certificate rotation, idempotency/token pruning, audit checkpoints), with
 * `start()` and `stop()`. `sigil server start` only parses flags into an IssuerServiceConfig;
 * nothing here is process-wide, so two services in one process share nothing.
 *
 * Start order: the context (fails on a bad data directory before anything listens), HTTPS (a port
 * in use is a clear config error), MQTT (not awaited: a broker that is down must not keep the
 * issuer down), then the audit runtime (an issuer that cannot write checkpoints refuses to start).
 * Stop undoes it in reverse and closes the stores last, after in-flight requests finished.
 */
import cluster from 'node:cluster';
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import { SigilError } from '../errors.js';
import { buildHttpsServer, presentServerIdentity } from '../transport/https/server.js';
import type { HttpLimits } from '../transport/https/limits.js';
import type { MqttResponder } from '../transport/mqtt/responder.js';
import { createLogger, type Logger } from '../util/log.js';
import { readAuditKey } from './audit/audit-key.js';
import { startAuditRuntime } from './audit/runtime.js';
import { ensureAnswerSeal } from './answer-seal-file.js';
import { IDEMPOTENCY_KEEP_MS } from './ops/answer-seal.js';
import { loadCaMaterial, openIssuerStores, paths, readMeta } from './data-dir.js';
import {
  createIssuerContext,
  rotateServerIdentity,
  SERVER_IDENTITY_ROTATE_MS,
  watchStoreChanges,
  type IssuerContext,
} from './issuer.js';
import { CrlPublisher } from './crl/publisher.js';
import { crlFiles } from './crl/state.js';
import { AuditWatcher } from './events/audit-watcher.js';
import type { EventSink, RetryPolicy } from './events/delivery.js';
import { EventPublisher } from './events/publisher.js';
import { WebhookSink, type WebhookConfig } from './events/webhook.js';
import { FleetUi } from './ui/fleet-ui.js';
import { signingPublicKeys } from './credentials/authorities.js';
import { KEY_WATCH_MS, KeyReloader, keyFilesStamp, type KeyReload } from './key-reload.js';
import { Gauge } from './metrics/registry.js';
import { keyId, ROTATABLE_KEYS, type RotatableKey } from './rotating-keys.js';
import { storeWithdrawalMessage } from './withdrawn-keys.js';
import { SessionSeal } from './ui/session-seal.js';
import { startRegistry, type RegistryRuntime } from './issuers/runtime.js';
import { buildUiServer } from './ui/listener.js';
import { registerFleetUi } from './ui/routes.js';

/** How often stored answers past IDEMPOTENCY_KEEP_MS (ops/answer-seal.ts) and spent tokens are pruned. */
const PRUNE_EVERY_MS = 3600_000;
/** Stored answers deleted per statement when pruning (~10 ms of SQLite work each). */
const PRUNE_CHUNK_ROWS = 2000;

/** The MQTT responder's broker endpoint and credentials, files already read. */
export interface IssuerMqttConfig {
  url: string;
  /** CA for the broker's certificate (mqtts); default the Sigil root. */
  ca?: string;
  /** Client certificate and key (mqtts); default the issuer's own serving identity. */
  cert?: string;
  key?: string;
  username?: string;
  password?: string;
}

export interface IssuerServiceConfig {
  dataDir: string;
  /** `--store`: a postgres:// URL for state shared by several issuers; default the data directory's SQLite file. */
  store?: string;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Extra names for the serving certificate (the listen host is always added). */
  tlsSans?: string[];
  /** `--public-url`: JWT-SVID `iss` and OIDC discovery; default the listen URL. */
  publicUrl?: string;
  logLevel?: string;
  /** Firmware profiles for tpm join rules; default $SIGIL_FIRMWARE_PROFILES_DIR, else the install's. */
  firmwareProfilesDir?: string;
  limits?: Partial<HttpLimits>;
  audit: { checkpointFile?: string; checkpointIntervalMs: number; retentionMs?: number };
  mqtt?: IssuerMqttConfig;
  /** How often the serving certificate is re-issued; default SERVER_IDENTITY_ROTATE_MS (a day). Tests shorten it. */
  rotateEveryMs?: number;
  /** How often the credential key files are looked at for a rotate-key step; default KEY_WATCH_MS (5 s). Tests shorten it. */
  keyWatchMs?: number;
  /**
   * Called when this issuer's own watch (not a SIGHUP) took a rotate-key step or a withdrawal from
   * the store: a `--workers` worker tells the primary, which makes the other workers read now
   * instead of each at its own next poll (./cluster.ts).
   */
  onKeysChanged?: () => void;
  /** The CRL for relying parties (docs/crl.md): `crl_refresh` (default 1 h) and how often locks are looked for. */
  crl?: { refreshMs?: number; watchMs?: number };
  /**
   * Pushed events (docs/events.md): webhooks (`--event-webhook`), and the MQTT topics
   * sigil/v1/events/<type> when `mqtt` is configured (unless `mqtt: false`). Retry and queue
   * bounds default to server/events/delivery.ts; tests shorten them.
   */
  events?: { webhooks?: WebhookConfig[]; mqtt?: boolean; retry?: RetryPolicy; queueLimit?: number };
  /**
   * The fleet view (docs/fleet-ui.md) under /ui/ on the HTTPS listener, or only on `listen`
   * (`--ui-listen`); session timeouts default to server/ui/session.ts. false: no fleet view.
   */
  ui?: false | { listen?: { host: string; port: number }; sessionIdleMs?: number; sessionAbsoluteMs?: number };
}

/** 0.0.0.0 / :: — every address of the machine, none a client can be told to use. */
export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || /^[0:]+$/.test(host);
}

export class IssuerService {
  readonly ctx: IssuerContext;
  readonly log: Logger;
  /** https://host:port actually listened on; set by start(). */
  url = '';
  #app: FastifyInstance | undefined;
  #uiApp: FastifyInstance | undefined;
  /** The fleet view's state (sessions, sign-in throttle), unless `ui: false`. */
  readonly ui: FleetUi | undefined;
  /** https://host:port of `--ui-listen`, set by start(); '' when the view is on the main listener. */
  uiUrl = '';
  #responder: MqttResponder | undefined;
  #audit: { stop(): Promise<void> } | undefined;
  /** Keeps ctx.intermediates current (issue #15; issuers/runtime.ts). */
  #registry: RegistryRuntime | undefined;
  #timers: NodeJS.Timeout[] = [];
  #mqttUsesServingIdentity = false;
  #stopped: Promise<void> | undefined;
  /** Signs and serves the CRL (GET /v1/crl); its timer runs from start() to stop(). */
  readonly crl: CrlPublisher;
  /** The one tail of the audit log the CRL and pushed events derive from. */
  readonly auditWatcher: AuditWatcher;
  /** Signs audit-derived events and delivers them to webhooks and MQTT (docs/events.md). */
  readonly events: EventPublisher;
  /** Picks up `sigil server rotate-key` steps without a restart (./key-reload.ts). */
  readonly keys: KeyReloader;
  /** issuer.json's `issuer_name` (server add-issuer), for the audit rows this issuer writes of its own accord. */
  readonly #issuerName: { issuer_name?: string };
  /** The host put in the serving certificate and the advertised URL when listening on every address. */
  readonly #wildcardHost: string | undefined;

  private constructor(
    private readonly cfg: IssuerServiceConfig,
    log: Logger,
  ) {
    this.log = log;
    // Before the keys are read: a rotate-key step landing meanwhile is then seen as a change.
    const keyStamp = keyFilesStamp(cfg.dataDir);
    const issuerName = (readMeta(cfg.dataDir) as { issuer_name?: unknown }).issuer_name;
    this.#issuerName = typeof issuerName === 'string' ? { issuer_name: issuerName } : {};
    const ca = loadCaMaterial(cfg.dataDir);
    // A restore that left these keys out would otherwise change every SSH and JWT trust anchor
    // without a word (found walking the runbook).
    if (ca.credentialKeysCreated.length > 0)
      log.warn(
        { created: ca.credentialKeysCreated },
        `created new credential keys (${ca.credentialKeysCreated.join(', ')}): expected on the first start after an upgrade; after a restore, the backup lacked them, and every sshd, ssh client and JWT verifier that trusted the old ones needs the new ones (sigil ctl ca export)`,
      );
    // The public host must be in the serving certificate: verifiers fetch discovery over TLS.
    // Listening on every address, the listen URL (https://0.0.0.0:…) is no address a relying party can use.
    this.#wildcardHost = !cfg.publicUrl && isWildcardHost(cfg.host) ? hostname() : undefined;
    const publicHost = cfg.publicUrl ? new URL(cfg.publicUrl).hostname.replace(/^\[(.*)\]$/, '$1') : this.#wildcardHost;
    // The serving issuer creates audit.key for a data directory that predates it.
    const stores = openIssuerStores(cfg.dataDir, {
      createAuditKey: true,
      ...(cfg.store !== undefined ? { store: cfg.store } : {}),
    });
    try {
      // Stored answers are sealed under a key derived from audit.key (ops/answer-seal.ts), which
      // openIssuerStores has just created or checked; a PostgreSQL issuer refuses to open without one.
      const auditKey = readAuditKey(paths(cfg.dataDir).auditKey);
      if (!auditKey) throw new SigilError('config_invalid', `${paths(cfg.dataDir).auditKey} is missing`);
      this.ctx = createIssuerContext({
        ca,
        stores,
        log,
        answerSeal: ensureAnswerSeal(cfg.dataDir, auditKey, Date.now()),
        tlsSans: [cfg.host, ...(cfg.tlsSans ?? []), ...(publicHost ? [publicHost] : [])],
        ...(cfg.firmwareProfilesDir !== undefined ? { firmwareProfilesDir: cfg.firmwareProfilesDir } : {}),
      });
      this.keys = new KeyReloader({
        dataDir: cfg.dataDir,
        trustDomain: ca.trustDomain,
        target: this.ctx,
        log,
        now: () => this.ctx.now(),
        stamp: keyStamp,
        store: stores.admin,
      });
      const keys = this.keys;
      this.ctx.metrics.registry.register(
        new Gauge(
          'sigil_signing_key_withdrawn',
          'Credential signing keys (key: jwt, ssh-user, ssh-host) this issuer stopped using because a compromise rotation withdrew them and the new key file has not arrived (1 = halted)',
          () => {
            const halted = keys.halted();
            return ROTATABLE_KEYS.map((key) => ({ labels: { key }, value: halted.includes(key) ? 1 : 0 }));
          },
        ),
      );
      this.ctx.metrics.registry.register(
        new Gauge(
          'sigil_key_reload_pending',
          "1 when the issuer's last read of its credential key files was refused (a file failed a check) or left a key waiting for its key file; the keys in use stay",
          () => [{ labels: {}, value: keys.pending() ? 1 : 0 }],
        ),
      );
      this.auditWatcher = new AuditWatcher({
        audit: stores.audit,
        now: () => this.ctx.now(),
        ...(cfg.crl?.watchMs !== undefined ? { watchMs: cfg.crl.watchMs } : {}),
        onError: (err) => log.warn({ err }, 'audit watch failed'),
        ...(stores.whenDurable ? { whenDurable: () => stores.whenDurable!() } : {}),
      });
      // On PostgreSQL another issuer's lock or unlock is announced (LISTEN/NOTIFY,
      // store/postgres/change-feed.ts): look at the audit tail at once, not at the next tick.
      watchStoreChanges(stores, () => this.auditWatcher.poll(), log);
      this.crl = new CrlPublisher({
        issuer: { certDer: ca.intermediateDer, key: ca.intermediateKey },
        stores,
        files: crlFiles(cfg.dataDir),
        ...(cfg.crl?.refreshMs !== undefined ? { refreshMs: cfg.crl.refreshMs } : {}),
        ...(cfg.crl?.watchMs !== undefined ? { watchMs: cfg.crl.watchMs } : {}),
        now: () => this.ctx.now(),
        log,
        watcher: this.auditWatcher,
      });
      const sinks: EventSink[] = (cfg.events?.webhooks ?? []).map((w) => new WebhookSink(w));
      if (cfg.mqtt && cfg.events?.mqtt !== false) {
        // The responder's connection (QoS 1); until it is up, sends fail and are retried.
        sinks.push({
          name: 'mqtt',
          send: (jws, ev) =>
            this.#responder
              ? this.#responder.publishEvent(`sigil/v1/events/${ev.type}`, jws)
              : Promise.reject(new Error('the MQTT responder is not running')),
        });
      }
      this.ui =
        cfg.ui === false
          ? undefined
          : new FleetUi(this.ctx, {
              dataDir: cfg.dataDir,
              sessionSeal: new SessionSeal(auditKey.secret),
              session: {
                ...(cfg.ui?.sessionIdleMs !== undefined ? { idleMs: cfg.ui.sessionIdleMs } : {}),
                ...(cfg.ui?.sessionAbsoluteMs !== undefined ? { absoluteMs: cfg.ui.sessionAbsoluteMs } : {}),
              },
            });
      this.events = new EventPublisher({
        ctx: this.ctx,
        watcher: this.auditWatcher,
        crl: this.crl,
        sinks,
        ...(cfg.events?.retry ? { retry: cfg.events.retry } : {}),
        ...(cfg.events?.queueLimit !== undefined ? { queueLimit: cfg.events.queueLimit } : {}),
      });
    } catch (e) {
      void stores.close();
      throw e;
    }
  }

  /** Build the context from the data directory; nothing listens yet. */
  static open(cfg: IssuerServiceConfig, log?: Logger): IssuerService {
    return new IssuerService(
      cfg,
      log ?? createLogger({ name: 'sigil-server', ...(cfg.logLevel ? { level: cfg.logLevel } : {}) }),
    );
  }

  /** Listen and start the timers; on any failure everything started so far is stopped again. */
  async start(): Promise<void> {
    const { cfg, ctx } = this;
    // A networked store connects and migrates on open: an unreachable database or a foreign audit
    // key stops the start here, before anything listens.
    const { ready } = ctx.stores as { ready?: Promise<void> };
    if (ready) {
      try {
        await ready;
      } catch (e) {
        await this.stop();
        throw e;
      }
    }
    // A signing key the store remembers as withdrawn by a compromise rotation (a ca/ restored from
    // before it, or files not yet copied from the issuer where it ran): refuse, as for one the list names.
    try {
      await this.keys.refreshFromStore(true);
      const hit = this.keys.rememberedWithdrawals()[0];
      if (hit) throw new SigilError('config_invalid', storeWithdrawalMessage(cfg.dataDir, hit));
      // A staged or retired key the store remembers as withdrawn: never published, from the first request.
      this.keys.applyKnownWithdrawals();
      // Say which keys this start publishes beside the signing ones (after the store's memory of
      // withdrawn keys was applied), so the operator can see a rotate-key step took (runbook
      // "Rotate a key"); later steps are logged by the key reloader.
      const rotating = this.ctx.credentials.rotating.filter(
        (k) => k.state !== 'withdrawn' && k.trustedUntil > Date.now(),
      );
      if (rotating.length > 0)
        this.log.info(
          { rotating: rotating.map((k) => ({ kind: k.kind, state: k.state, since: new Date(k.since).toISOString() })) },
          `publishing a key rotation in progress: ${rotating
            .map((k) =>
              k.state === 'next'
                ? `${k.kind} next key (staged ${new Date(k.since).toISOString()})`
                : `${k.kind} retired key (until ${new Date(k.trustedUntil).toISOString()})`,
            )
            .join(', ')}`,
        );
    } catch (e) {
      await this.stop();
      throw e;
    }
    // The other issuers' intermediates, before anything listens; a retired issuer stops here.
    try {
      this.#registry = await startRegistry(ctx, { log: this.log, dataDir: cfg.dataDir });
    } catch (e) {
      await this.stop();
      throw e;
    }
    this.#app = buildHttpsServer({ ctx, crl: this.crl, ...(cfg.limits ? { limits: cfg.limits } : {}) });
    const uiListen = cfg.ui ? cfg.ui.listen : undefined;
    if (this.ui && !uiListen) registerFleetUi(this.#app, this.ui);
    try {
      await this.#app.listen({ host: cfg.host, port: cfg.port });
      if (this.ui && uiListen) {
        this.#uiApp = buildUiServer(this.ui);
        await this.#uiApp.listen(uiListen);
        const a = this.#uiApp.server.address();
        const h = uiListen.host.includes(':') ? `[${uiListen.host}]` : uiListen.host;
        this.uiUrl = `https://${h}:${typeof a === 'object' && a ? a.port : uiListen.port}`;
      }
    } catch (e) {
      await this.stop();
      throw new SigilError(
        'config_invalid',
        `cannot listen on ${cfg.host}:${cfg.port}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    try {
      if (cfg.mqtt) this.#responder = await this.#startMqtt(cfg.mqtt);
      const addr = this.#app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : cfg.port;
      this.url = `https://${cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host}:${port}`;
      ctx.publicUrl = cfg.publicUrl ?? (this.#wildcardHost ? `https://${this.#wildcardHost}:${port}` : this.url);
      if (this.#wildcardHost) {
        this.log.warn(
          { listen: `${cfg.host}:${cfg.port}`, public_url: ctx.publicUrl },
          `listening on every address without --public-url: advertising ${ctx.publicUrl} (this machine's hostname) as the issuer URL (JWT-SVID iss, OIDC discovery); set --public-url to the URL relying parties reach`,
        );
      }
      // Several issuers share a PostgreSQL store: each would name itself as iss, and a verifier
      // configured with one issuer's URL refuses the others' tokens (found walking the docs).
      // Said once per machine: the workers of one `--workers N` share their listen URL.
      if (cfg.store !== undefined && !cfg.publicUrl && (cluster.worker?.id ?? 1) === 1) {
        this.log.warn(
          { public_url: ctx.publicUrl },
          `a shared store without --public-url: JWT-SVIDs and OIDC discovery name this issuer (${ctx.publicUrl}) as iss, so other issuers of the store mint tokens with another iss; give every issuer the same --public-url (the load balancer's URL: docs/store-postgres.md)`,
        );
      }
      this.#audit = await startAuditRuntime(ctx, {
        ...cfg.audit,
        checkpointFile: cfg.audit.checkpointFile ?? paths(cfg.dataDir).auditCheckpoints,
      });
      // The serving certificate lives 30 days and is re-issued daily: a long-running issuer never
      // serves an expired one (./issuer.ts createServerIdentity).
      this.#every(cfg.rotateEveryMs ?? SERVER_IDENTITY_ROTATE_MS, 'serving certificate rotation', () => {
        const id = rotateServerIdentity(ctx);
        if (this.#app) presentServerIdentity(this.#app, id);
        if (this.#uiApp) presentServerIdentity(this.#uiApp, id);
        // An MQTT responder that logs in with the serving identity must not reconnect with an expired one.
        if (this.#responder && this.#mqttUsesServingIdentity) this.#responder.setClientIdentity(id.certPem, id.keyPem);
        this.log.info({ not_after: new Date(id.notAfter).toISOString() }, 'rotated the issuer serving certificate');
      });
      // rotate-key steps, and key files copied from another issuer, without a restart.
      this.#every(cfg.keyWatchMs ?? KEY_WATCH_MS, 'credential key reload', async () => {
        await this.keys.refreshFromStore();
        const before = this.keys.halted();
        const r = this.keys.poll();
        await this.#auditHalts(before);
        if (r.result === 'applied') cfg.onKeysChanged?.();
      });
      this.#every(PRUNE_EVERY_MS, 'pruning', async () => {
        const before = ctx.now() - IDEMPOTENCY_KEEP_MS;
        // In chunks, renewals between them: one DELETE of an hour of stored answers (3.6 million
        // rows at 1,000 renewals/s) would hold the writer, and on SQLite the event loop, for seconds.
        while ((await ctx.stores.idempotency.prune(before, PRUNE_CHUNK_ROWS)) === PRUNE_CHUNK_ROWS)
          await new Promise<void>((resolve) => setImmediate(resolve));
        await ctx.stores.tokens.prune(before);
      });
      // The first CRL now (a signing failure is logged, and retried by the publisher's timer).
      await this.crl.check().catch((err: unknown) => this.log.warn({ err }, 'first CRL failed'));
      this.crl.start();
      this.auditWatcher.start();
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /** Read the credential keys, the rotation list and the store's withdrawn keys again now (SIGHUP); see ./key-reload.ts. */
  async reloadKeys(): Promise<KeyReload> {
    await this.keys.refreshFromStore();
    const before = this.keys.halted();
    const r = this.keys.reload();
    await this.#auditHalts(before);
    return r;
  }

  /**
   * An audit row when this issuer stops signing with a withdrawn key, or starts again: a decision
   * of its own (no operator ran it here), which on a shared store the other issuers' operators
   * see too. The key by kid or SSH fingerprint, never a secret.
   */
  async #auditHalts(before: readonly RotatableKey[]): Promise<void> {
    const after = this.keys.halted();
    const cas = this.ctx.credentials;
    for (const kind of ROTATABLE_KEYS) {
      const was = before.includes(kind);
      const is = after.includes(kind);
      if (was === is) continue;
      const signing = signingPublicKeys(cas)[kind];
      await this.ctx.stores.audit
        .append(
          {
            action: is ? 'signing_key_halted' : 'signing_key_resumed',
            outcome: 'ok',
            actor: 'system',
            remote: 'local',
            ...(is ? { code: 'signing_key_withdrawn' } : {}),
            // Which issuer decided: on a shared store every issuer writes its own row.
            details: { kind, key_id: keyId(signing, kind), host: hostname(), ...this.#issuerName },
          },
          this.ctx.now(),
        )
        .catch((err: unknown) =>
          this.log.warn({ err }, `the audit row for ${kind} ${is ? 'halted' : 'resumed'} could not be written`),
        );
    }
  }

  /** Stop listening, let in-flight requests finish, write the final audit checkpoint, close the stores. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      for (const t of this.#timers) clearInterval(t);
      this.#registry?.stop();
      await Promise.all([this.#app?.close(), this.#uiApp?.close(), this.crl.stop(), this.auditWatcher.stop()]);
      // After the last look at the audit log; what is still queued is counted as dead letters.
      this.events.stop();
      await this.#responder?.stop();
      // After the in-flight requests: the final summaries and checkpoint cover their rows too.
      await this.#audit?.stop();
      // Waits for a running prune or other queued transactions, then closes.
      await this.ctx.stores.close();
    })();
    return this.#stopped;
  }

  #every(ms: number, what: string, fn: () => void | Promise<void>): void {
    const t = setInterval(() => {
      // A throw or a rejection is logged; the timer keeps running.
      (async () => fn())().catch((err: unknown) => this.log.warn({ err }, `${what} failed`));
    }, ms);
    t.unref();
    this.#timers.push(t);
  }

  async #startMqtt(m: IssuerMqttConfig): Promise<MqttResponder> {
    const { MqttResponder } = await import('../transport/mqtt/responder.js');
    const tls = m.url.startsWith('mqtts:');
    const { ctx } = this;
    this.#mqttUsesServingIdentity = tls && m.cert === undefined;
    const responder = new MqttResponder({
      ctx,
      url: m.url,
      ...(tls
        ? { ca: m.ca ?? ctx.ca.rootPem, cert: m.cert ?? ctx.server.certPem, key: m.key ?? ctx.server.keyPem }
        : {}),
      ...(m.username !== undefined ? { username: m.username } : {}),
      ...(m.password !== undefined ? { password: m.password } : {}),
    });
    // Not awaited: a broker that is down must not keep the issuer down.
    responder.start().then(
      () => process.stdout.write(`sigil issuer mqtt responder subscribed on ${responder.url}\n`),
      (e: unknown) => this.log.error({ err: e }, 'mqtt responder failed to start'),
    );
    return responder;
  }
}
