/**
 * The agent's MQTT transport (MQTT v5, QoS 1). A request is published to `sigil/v1/<op>` with
 * Response Topic `sigil/v1/resp/<id>` and Correlation Data = the request id; the answer is
 * matched by correlation data, never by arrival order.
 *
 * Persistent session: the agent connects with clean start off and a session expiry (1 day by
 * default) under a client id that is stable for its identity, and subscribes to its response
 * topic once per session. A response the broker queued while the agent blinked (crash,
 * restart, lost uplink) is delivered on reconnect and matches the resent request, which carries
 * the same request id.
 *
 * Listeners are attached once per client object; a reconnect reuses the object, so nothing is
 * ever registered twice. Answers nobody waits for are counted and kept briefly (a resend of
 * the same request picks its answer up without another round trip).
 *
 * Nothing here decides whether an answer is genuine: the agent verifies every body against the
 * pinned CA (protocol/verify-response.ts). The only trust decision is first contact
 * ({@link ensureRoot}), made by the CA pin exactly as over HTTPS.
 */
import type { IConnackPacket, IPublishPacket, MqttClient } from 'mqtt';
import { randomBytes } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { b64u, type Jws } from '../../protocol/jws.js';
import { PROTOCOL_VERSION } from '../../protocol/messages.js';
import { pinnedRootFromBundle } from '../../protocol/response-verifier.js';
import type { IssuerTransport, PostHooks, RequestOp } from '../types.js';
import { brokerError, displayUrl, openMqttClient, parseMqttUrl } from './connect.js';
import {
  CONNECT_ATTEMPTS_MAX,
  connectRetryDelay,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_RECONNECT_SPREAD_MS,
  isBusyFailure,
  reconnectDelay,
  secureRandom,
} from './pacing.js';
import { peekPinnedRoot } from './tls-pin.js';
import { requestTopic, RESPONSE_PREFIX, type MqttOp } from './topics.js';

/** Who the agent is on the broker right now (bootstrap before the first join, the instance after). */
export interface MqttSession {
  /** Broker URL for this session when it differs from the transport's (a bootstrap listener). */
  url?: string;
  /** Stable per agent and role, so the broker keeps (and redelivers) the session. */
  clientId: string;
  /** Responses arrive on sigil/v1/resp/<responseId>. */
  responseId: string;
  username?: string;
  password?: string;
  /** PEM client certificate chain and key (the SVID once joined, or a bootstrap certificate). */
  cert?: string;
  key?: string;
  /**
   * The bootstrap identity (before the first join, or an mqtts agent whose certificate is in its
   * last minutes or expired): a broker may let it publish joins only, which a refusal names.
   */
  bootstrap?: boolean;
}

export interface MqttClientOptions {
  url: string;
  /** `sha256:<hex>` of the issuer CA root's SubjectPublicKeyInfo. */
  pin: string;
  /** Known root (PEM) from a previous contact. */
  rootPem?: string;
  /** PEM CA for the broker's TLS certificate; default: the pinned Sigil root. */
  brokerCa?: string;
  timeoutMs?: number;
  /**
   * One connection attempt (TCP, TLS, CONNACK, SUBACK); default min(timeoutMs, 5 s). A "busy"
   * failure is retried, jittered, within the request's timeout (./pacing.ts).
   */
  connectTimeoutMs?: number;
  /** After losing a connection it had, wait uniform [0, this) before reconnecting; default 10 s (./pacing.ts). */
  reconnectSpreadMs?: number;
  /** Uniform [0, 1) source for the jitter (tests pin it); default a CSPRNG draw. */
  random?: () => number;
  sessionExpiryS?: number;
  /**
   * Asked before every request: the session to use (a change reconnects). By operation, because
   * the issuer answers a join only on a bootstrap topic and a renewal only on the instance's own
   * (./answer-topic.ts).
   */
  session: (op: MqttOp) => MqttSession;
}

interface Pending {
  resolve(body: unknown): void;
  reject(e: SigilError): void;
}

interface Connection {
  client: MqttClient;
  key: string;
  topic: string;
  /** On the bootstrap identity (MqttSession.bootstrap). */
  bootstrap: boolean;
  /** Connected, and subscribed if the session needed it. */
  up: boolean;
  /** This client object has had a SUBACK for the response topic. */
  subscribed: boolean;
  lastError: SigilError | undefined;
  /** Whether the last failure says "busy, try again" rather than "not here" (./pacing.ts isBusyFailure). */
  lastBusy: boolean;
  /**
   * Reconnected in the background (scheduleReconnect), for requests already published and
   * waiting for their answers; a request still connecting has its own attempts (connection()).
   */
  background: boolean;
  /** Message ids the broker acknowledged with 0x10, No matching subscribers (MQTT.js hides the PUBACK's reason). */
  noSubscribers: Set<number>;
  waiters: Array<{ ok(): void; fail(e: ConnectFailure): void }>;
}

/** A failed connection attempt, and whether another attempt within the same request is worth it. */
class ConnectFailure extends Error {
  constructor(
    readonly error: SigilError,
    readonly busy: boolean,
  ) {
    super(error.message);
  }
}

/** How this transport paced its connections since it was made (the bench and metrics read it). */
export interface MqttPacingStats {
  /** Connections that were up and were lost (broker restart, network). */
  lost: number;
  /** Connection attempts started, and those that failed. */
  attempts: number;
  failedAttempts: number;
  /** Attempts made again within one request after a busy failure. */
  retries: number;
  /** Requests published again because the broker had no subscriber for them (PUBACK 0x10). */
  republished: number;
  /** Time spent waiting before reconnecting after a loss (the spread), summed. */
  pacedMs: number;
}

const STASH_MAX = 32;
const MAX_RESPONSE_BYTES = 1024 * 1024;

export class MqttIssuerClient implements IssuerTransport {
  readonly kind = 'mqtt' as const;
  readonly url: string;
  readonly timeoutMs: number;
  private readonly tls: boolean;
  private readonly host: string;
  private readonly port: number;
  private rootPem: string | undefined;
  private conn: Connection | undefined;
  private readonly pending = new Map<string, Pending>();
  /** Answers that arrived when nobody waited (late, or queued from before a restart). */
  private readonly stash = new Map<string, unknown>();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private opening: Promise<Connection> | undefined;
  private closed = false;
  /** No new connection attempt before this time (ms): the spread after a loss. */
  private resumeAt = 0;
  /** Consecutive failed attempts of the background reconnect (resets on success). */
  private backgroundFailures = 0;
  private readonly random: () => number;
  readonly pacing: MqttPacingStats = {
    lost: 0,
    attempts: 0,
    failedAttempts: 0,
    retries: 0,
    republished: 0,
    pacedMs: 0,
  };
  /** Answers with a correlation nobody asked for (or none): counted, then stashed or dropped. */
  unmatched = 0;

  constructor(private readonly opts: MqttClientOptions) {
    const { url, tls } = parseMqttUrl(opts.url, 'transports[].url');
    this.url = displayUrl(url);
    this.tls = tls;
    this.host = url.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(url.port || (tls ? 8883 : 1883));
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    this.random = opts.random ?? secureRandom;
    if (opts.rootPem) this.rootPem = pinnedRootFromBundle({ roots: [opts.rootPem] }, opts.pin);
  }

  get root(): string | undefined {
    return this.rootPem;
  }

  /**
   * First contact. mqtts without a broker CA: the broker's TLS chain must contain the pinned
   * root (a broker certificate issued by the Sigil CA), which then verifies the broker. Otherwise
   * the signed bundle: a root is accepted only if its SPKI hash is the pin, and the bundle's
   * signature must verify under it.
   */
  async ensureRoot(): Promise<string> {
    if (this.rootPem) return this.rootPem;
    if (this.tls && this.opts.brokerCa === undefined) {
      this.rootPem = await peekPinnedRoot(this.host, this.port, this.opts.pin, this.timeoutMs, this.url);
      return this.rootPem;
    }
    const body = await this.bundle();
    this.rootPem = pinnedRootFromBundle(body, this.opts.pin);
    return this.rootPem;
  }

  post(op: RequestOp, envelope: Jws, hooks?: PostHooks): Promise<unknown> {
    let requestId: unknown;
    try {
      requestId = (JSON.parse(b64u.decode(envelope.payload).toString('utf8')) as { request_id?: unknown }).request_id;
    } catch {
      requestId = undefined;
    }
    if (typeof requestId !== 'string' || requestId.length === 0)
      throw new TypeError('MqttIssuerClient.post: the envelope payload has no request_id');
    return this.request(op, JSON.stringify(envelope), Buffer.from(requestId, 'utf8'), hooks);
  }

  async bundle(): Promise<unknown> {
    const nonce = randomBytes(16).toString('base64url');
    const body = await this.request(
      'bundle',
      JSON.stringify({ v: PROTOCOL_VERSION, op: 'bundle', nonce }),
      Buffer.from(nonce, 'utf8'),
    );
    checkBundleNonce(body, nonce, Date.now());
    return body;
  }

  private async request(op: MqttOp, payload: string, correlation: Buffer, hooks?: PostHooks): Promise<unknown> {
    const topic = requestTopic(op);
    if (this.closed) throw new SigilError('issuer_unreachable', `the MQTT transport to ${this.url} is closed`);
    const key = correlation.toString('hex');
    if (this.stash.has(key)) {
      const body = this.stash.get(key);
      this.stash.delete(key);
      return body;
    }
    this.pending.get(key)?.reject(new SigilError('issuer_unreachable', 'superseded by a resend of the same request'));
    // After a lost connection, wait out this agent's place in the spread first — outside the
    // request's timeout, so that a spread longer than the timeout does not fail every request.
    await this.paced();
    if (this.closed) throw new SigilError('issuer_unreachable', `the MQTT transport to ${this.url} is closed`);
    let timer: NodeJS.Timeout | undefined;
    let mine: Pending | undefined;
    const answer = new Promise<unknown>((resolve, reject) => {
      mine = { resolve, reject };
      this.pending.set(key, mine);
      timer = setTimeout(
        () =>
          reject(
            new SigilError(
              'issuer_unreachable',
              `no answer over ${this.url} within ${this.timeoutMs} ms (the request stays queued and is resent with the same request id)`,
            ),
          ),
        this.timeoutMs,
      );
    });
    answer.catch(() => undefined);
    try {
      // A queued answer from before a restart may arrive as soon as the session resumes, even
      // before the resend is published: whichever comes first wins.
      const conn = await Promise.race([this.connection(op), answer.then(() => undefined)]);
      for (let attempt = 1, c = conn; c; attempt++) {
        const delivered = await Promise.race([
          this.publish(c, topic, payload, correlation),
          answer.then(() => undefined),
        ]);
        if (delivered === undefined) break; // answered already
        if (attempt === 1) hooks?.sent?.();
        // PUBACK 0x10, No matching subscribers (MQTT v5 §3.4.2.1): no issuer is subscribed yet —
        // typically one still reconnecting after the same broker restart. Nothing reached an
        // issuer, so publish the same bytes again after a jittered pause instead of waiting out
        // the whole timeout; bounded like connection attempts (a broker that always says so
        // costs at most CONNECT_ATTEMPTS_MAX publishes per request).
        if (delivered || attempt >= CONNECT_ATTEMPTS_MAX) break;
        this.pacing.republished++;
        const pause = connectRetryDelay(attempt, this.random);
        if (
          (await Promise.race([new Promise((r) => setTimeout(() => r(true), pause)), answer.then(() => false)])) ===
          false
        )
          break;
        c = await Promise.race([this.connection(op), answer.then(() => undefined)]);
      }
      return await answer;
    } finally {
      clearTimeout(timer);
      if (this.pending.get(key) === mine) this.pending.delete(key);
    }
  }

  /** Publish and wait for the PUBACK: true if the broker had a subscriber for it, false if it said it had none. */
  private publish(conn: Connection, topic: string, payload: string, correlation: Buffer): Promise<boolean> {
    return new Promise((resolve, reject) => {
      conn.client.publish(
        topic,
        payload,
        { qos: 1, properties: { responseTopic: conn.topic, correlationData: correlation } },
        (err, packet) => {
          const mid = packet?.messageId;
          const unheard = mid !== undefined && conn.noSubscribers.delete(mid);
          if (!err) return resolve(!unheard);
          // MQTT v5 PUBACK ≥ 0x80, e.g. 0x87 Not authorized: the broker's ACL refused the topic.
          reject(publishRefused(this.url, topic, err, conn.bootstrap));
        },
      );
    });
  }

  /** Wait until this agent's turn to reconnect after a loss (./pacing.ts reconnectDelay). */
  private async paced(): Promise<void> {
    const wait = this.resumeAt - Date.now();
    if (wait <= 0) return;
    this.pacing.pacedMs += wait;
    await new Promise((r) => setTimeout(r, wait));
  }

  /**
   * The connection for the current session. A busy broker (no CONNACK in time, reset, CONNACK
   * "busy") gets another attempt after a jittered pause, at most CONNECT_ATTEMPTS_MAX per request
   * and never past the request's timeout; any other failure ends the request now (failover).
   */
  private async connection(op: MqttOp): Promise<Connection> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.connectOnce(op);
      } catch (e) {
        if (!(e instanceof ConnectFailure)) throw e;
        if (!e.busy || attempt >= CONNECT_ATTEMPTS_MAX || this.closed) throw e.error;
        this.pacing.retries++;
        await new Promise((r) => setTimeout(r, connectRetryDelay(attempt, this.random)));
      }
    }
  }

  private async connectOnce(op: MqttOp): Promise<Connection> {
    const session = this.opts.session(op);
    const key = [
      session.url ?? '',
      session.clientId,
      session.responseId,
      session.username ?? '',
      session.cert ?? '',
    ].join('\0');
    let conn = this.conn;
    if (conn && conn.key !== key) {
      // Bootstrap → instance (or back, after expiry): the old session has nothing left for us.
      this.retire(conn, true);
      conn = this.conn = undefined;
    }
    if (conn && !conn.up && !conn.client.connected && !conn.client.reconnecting) {
      // Down and nobody reconnecting it: start over with a fresh client rather than revive one
      // whose last attempt may have left it half way (the broker keeps our session either way).
      this.retire(conn, false);
      conn = this.conn = undefined;
    }
    if (!conn) {
      // One connection attempt at a time, whoever asks.
      this.opening ??= this.open(session, key).finally(() => (this.opening = undefined));
      try {
        conn = this.conn = await this.opening;
      } catch (e) {
        throw new ConnectFailure(brokerError(e, this.url), false);
      }
    }
    await this.waitUp(conn);
    return conn;
  }

  /** Connected (and subscribed), or a coded failure — never an endless wait. */
  private waitUp(conn: Connection): Promise<void> {
    if (conn.up) return Promise.resolve();
    return new Promise((ok, fail) => {
      const t = setTimeout(() => {
        conn.waiters = conn.waiters.filter((w) => w !== waiter);
        // MQTT.js gives up at connectTimeoutMs; this is the backstop. Start over with a new client.
        if (this.conn === conn) {
          this.retire(conn, false);
          this.conn = undefined;
        }
        fail(
          new ConnectFailure(
            new SigilError(
              'issuer_unreachable',
              `could not connect to the MQTT broker ${this.url} within ${this.connectTimeoutMs} ms`,
            ),
            true,
          ),
        );
      }, this.connectTimeoutMs + 1_000);
      const waiter = {
        ok: () => (clearTimeout(t), ok()),
        fail: (e: ConnectFailure) => (clearTimeout(t), fail(e)),
      };
      conn.waiters.push(waiter);
    });
  }

  private get connectTimeoutMs(): number {
    return this.opts.connectTimeoutMs ?? Math.min(this.timeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
  }

  private get spreadMs(): number {
    return this.opts.reconnectSpreadMs ?? DEFAULT_RECONNECT_SPREAD_MS;
  }

  private settle(conn: Connection, e?: ConnectFailure): void {
    const waiters = conn.waiters.splice(0);
    for (const w of waiters) e ? w.fail(e) : w.ok();
  }

  private async open(session: MqttSession, key: string): Promise<Connection> {
    const url = session.url ?? this.opts.url;
    const tls = parseMqttUrl(url, 'bootstrap.url').tls;
    const ca = tls ? (this.opts.brokerCa ?? (await this.ensureRoot())) : undefined;
    let client: MqttClient;
    try {
      client = await openMqttClient(
        {
          url,
          ...(ca !== undefined ? { ca } : {}),
          ...(session.username !== undefined ? { username: session.username } : {}),
          ...(session.password !== undefined ? { password: session.password } : {}),
          ...(session.cert !== undefined && tls ? { cert: session.cert } : {}),
          ...(session.key !== undefined && tls ? { key: session.key } : {}),
        },
        {
          clientId: session.clientId,
          clean: false,
          sessionExpiryS: this.opts.sessionExpiryS ?? 86_400,
          connectTimeoutMs: this.connectTimeoutMs,
          maximumPacketSize: MAX_RESPONSE_BYTES,
        },
      );
    } catch (e) {
      throw brokerError(e, this.url);
    }
    const conn: Connection = {
      client,
      key,
      topic: `${RESPONSE_PREFIX}${session.responseId}`,
      bootstrap: session.bootstrap === true,
      up: false,
      subscribed: false,
      lastError: undefined,
      lastBusy: true,
      background: false,
      noSubscribers: new Set(),
      waiters: [],
    };
    this.pacing.attempts++;
    client.on('connect', (connack: IConnackPacket) => {
      // A session the broker kept has our subscription only if it was ever acknowledged: a
      // connection that died between CONNACK and SUBACK (seen in reconnect storms) leaves a
      // session without one. So each client object subscribes once, and again only if the broker
      // lost the session. A repeated SUBSCRIBE replaces the subscription (MQTT v5 §3.8.4): no
      // duplicate deliveries; queued answers flow as soon as the session resumes either way.
      if (connack.sessionPresent && conn.subscribed) {
        this.markUp(conn);
        return this.settle(conn);
      }
      client.subscribe(conn.topic, { qos: 1 }, (err, granted) => {
        if (err || granted?.some((g) => (g.qos as number) >= 0x80)) {
          const e = new SigilError(
            'issuer_unreachable',
            `the broker ${this.url} refused the subscription to ${conn.topic}${err ? `: ${err.message}` : ''}; check its ACL for this client`,
          );
          conn.lastError = e;
          conn.lastBusy = false;
          this.settle(conn, new ConnectFailure(e, false));
          client.end(true);
          return;
        }
        conn.subscribed = true;
        this.markUp(conn);
        this.settle(conn);
      });
    });
    // 'packetreceive' comes before MQTT.js handles the PUBACK and calls the publish callback.
    client.on('packetreceive', (p) => {
      if (p.cmd === 'puback' && p.reasonCode === 0x10 && p.messageId !== undefined) conn.noSubscribers.add(p.messageId);
    });
    client.on('message', (t: string, body: Buffer, packet: IPublishPacket) =>
      this.onMessage(t, body, packet, conn.topic),
    );
    client.on('error', (err) => {
      conn.lastError = brokerError(err, this.url);
      if (conn.lastBusy) conn.lastBusy = isBusyFailure(err);
    });
    client.on('close', () => {
      const wasUp = conn.up;
      conn.up = false;
      if (wasUp) {
        // The whole fleet may have lost the broker at this instant: take a random place in the spread.
        this.pacing.lost++;
        this.backgroundFailures = 0;
        this.resumeAt = Date.now() + reconnectDelay(this.spreadMs, this.random);
      } else {
        this.pacing.failedAttempts++;
        this.backgroundFailures++;
      }
      this.settle(
        conn,
        new ConnectFailure(
          conn.lastError ??
            new SigilError('issuer_unreachable', `the connection to the MQTT broker ${this.url} closed`),
          conn.lastBusy,
        ),
      );
      // The next attempt classifies its own failure.
      conn.lastError = undefined;
      conn.lastBusy = true;
      if (wasUp || conn.background) this.scheduleReconnect(conn);
    });
    return conn;
  }

  private markUp(conn: Connection): void {
    conn.up = true;
    conn.background = false;
    this.resumeAt = 0;
    this.backgroundFailures = 0;
  }

  /**
   * Reconnect only while requests wait for their answers (they may be queued in our session); an
   * idle agent stays quietly disconnected. After a loss, at this agent's place in the spread; after
   * a failed attempt, after the jittered doubling pause — bounded by the waiting requests' timeouts.
   */
  private scheduleReconnect(conn: Connection): void {
    if (this.closed || this.conn !== conn || this.pending.size === 0) return;
    if (this.backgroundFailures >= CONNECT_ATTEMPTS_MAX) return;
    clearTimeout(this.reconnectTimer);
    const delay = Math.max(
      this.resumeAt - Date.now(),
      this.backgroundFailures > 0 ? connectRetryDelay(this.backgroundFailures, this.random) : 0,
    );
    this.reconnectTimer = setTimeout(
      () => {
        if (
          !this.closed &&
          this.conn === conn &&
          this.pending.size > 0 &&
          !conn.client.connected &&
          !conn.client.reconnecting &&
          !conn.client.disconnecting
        ) {
          conn.lastError = undefined;
          conn.background = true;
          this.pacing.attempts++;
          conn.client.reconnect();
        }
      },
      Math.max(0, delay),
    );
  }

  private onMessage(topic: string, body: Buffer, packet: IPublishPacket, ourTopic: string): void {
    const corr = packet.properties?.correlationData;
    if (topic !== ourTopic || !Buffer.isBuffer(corr) || body.length > MAX_RESPONSE_BYTES) {
      this.unmatched++;
      return;
    }
    const key = corr.toString('hex');
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      this.unmatched++;
      this.pending.get(key)?.reject(new SigilError('response_invalid', `the answer over ${this.url} is not JSON`));
      return;
    }
    const p = this.pending.get(key);
    if (p) return p.resolve(parsed);
    this.unmatched++;
    this.stash.set(key, parsed);
    if (this.stash.size > STASH_MAX) this.stash.delete(this.stash.keys().next().value!);
  }

  /** End a connection we no longer use; `dropSession` asks the broker to forget its session. */
  private retire(conn: Connection, dropSession: boolean): void {
    conn.client.removeAllListeners('close');
    conn.client.on('error', () => undefined);
    if (conn.client.connected && dropSession) {
      conn.client.end(false, { properties: { sessionExpiryInterval: 0 } });
      // A graceful end waits for acknowledgements that may never come; never let it hang on.
      setTimeout(() => {
        if (!conn.client.disconnected) conn.client.stream?.destroy();
      }, 2_000).unref();
    } else conn.client.end(true);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    for (const p of this.pending.values())
      p.reject(new SigilError('issuer_unreachable', `the MQTT transport to ${this.url} was closed`));
    this.pending.clear();
    if (this.conn) {
      this.conn.client.removeAllListeners('close');
      this.conn.client.on('error', () => undefined);
      this.conn.client.end(true);
      this.conn = undefined;
    }
  }
}

/** How old a bundle answer without the nonce (an issuer before it) may be: the request clock skew. */
export const UNBOUND_BUNDLE_MAX_AGE_MS = 5 * 60_000;

/**
 * A bundle answer is the same for every requester, and its MQTT correlation data is not signed:
 * a broker could answer with any bundle the issuer ever signed while its serving certificate
 * lasts — an intermediate or a JWT key replaced since (review of issue #16). The issuer echoes
 * the request's nonce in the signed payload; an answer naming another nonce is refused here,
 * and its signature (which covers the nonce) is checked by the caller's verifier. An issuer from
 * before the echo sends none: its answer must then be fresh by its issued_at. The payload is read
 * unverified — only to refuse early; nothing from it is used before the signature is checked.
 */
export function checkBundleNonce(body: unknown, nonce: string, now: number): void {
  let p: { nonce?: unknown; issued_at?: unknown } | undefined;
  try {
    const payload = (body as Partial<Jws> | null)?.payload;
    p = typeof payload === 'string' ? (JSON.parse(b64u.decode(payload).toString('utf8')) as typeof p) : undefined;
  } catch {
    p = undefined;
  }
  if (!p || typeof p !== 'object')
    throw new SigilError('response_invalid', 'the bundle answer is not a signed envelope');
  if (p.nonce === nonce) return;
  if (p.nonce !== undefined)
    throw new SigilError(
      'response_invalid',
      "the bundle answer echoes another request's nonce (a replayed answer); ignoring it",
    );
  const age = typeof p.issued_at === 'number' ? now - p.issued_at : Number.NaN;
  if (!(Math.abs(age) <= UNBOUND_BUNDLE_MAX_AGE_MS))
    throw new SigilError(
      'response_invalid',
      `the bundle answer carries no nonce and was issued ${Number.isNaN(age) ? 'at an unknown time' : `${Math.round(age / 1000)} s ago`} (at most ${UNBOUND_BUNDLE_MAX_AGE_MS / 1000} s allowed): a replayed answer, or this machine's clock is off (NTP)`,
    );
}

/** What only a joined instance publishes (the bootstrap role publishes join and bundle). */
const INSTANCE_OPS = ['renew', 'credential', 'workload', 'attest'] as const;

/**
 * A broker's refusal of a publish (MQTT v5 PUBACK >= 0x80, e.g. 0x87 Not authorized: its ACL).
 * On the bootstrap login a refused instance operation (renew, credential, workload, attest) is
 * what the documented ACL intends (bootstrap publishes joins and bundles only), not a broker
 * mistake: the message says so instead of "check its ACL".
 */
export function publishRefused(url: string, topic: string, err: Error, bootstrap: boolean): SigilError {
  const why =
    bootstrap && INSTANCE_OPS.some((op) => topic === requestTopic(op))
      ? 'the agent is on its bootstrap login, which the broker lets publish joins and bundle requests only: it has not joined yet, its certificate is in its last minutes or expired, or (a TPM or PKCS#11 key) it holds no MQTT transport certificate (docs/mqtt.md "Offline behaviour"); after the expiry it joins again (tpm, x509, cloud joins) or reports reattest_required (a token join)'
      : 'check its ACL for this client';
  return new SigilError(
    'issuer_unreachable',
    `the broker ${url} refused the publish to ${topic}: ${err.message}; ${why}`,
    {
      cause: err,
    },
  );
}
