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
import { pinnedRootFromBundle } from '../../protocol/verify-response.js';
import type { IssuerTransport, PostHooks, RequestOp } from '../types.js';
import { brokerError, displayUrl, openMqttClient, parseMqttUrl } from './connect.js';
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
  /** Time to wait for the broker's CONNACK and SUBACK; default min(timeoutMs, 10 s). */
  connectTimeoutMs?: number;
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
  /** Connected, and subscribed if the session needed it. */
  up: boolean;
  /** This client object has had a SUBACK for the response topic. */
  subscribed: boolean;
  lastError: SigilError | undefined;
  waiters: Array<{ ok(): void; fail(e: SigilError): void }>;
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
  /** Answers with a correlation nobody asked for (or none): counted, then stashed or dropped. */
  unmatched = 0;

  constructor(private readonly opts: MqttClientOptions) {
    const { url, tls } = parseMqttUrl(opts.url, 'transports[].url');
    this.url = displayUrl(url);
    this.tls = tls;
    this.host = url.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(url.port || (tls ? 8883 : 1883));
    this.timeoutMs = opts.timeoutMs ?? 15_000;
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

  bundle(): Promise<unknown> {
    const nonce = randomBytes(16).toString('base64url');
    return this.request(
      'bundle',
      JSON.stringify({ v: PROTOCOL_VERSION, op: 'bundle', nonce }),
      Buffer.from(nonce, 'utf8'),
    );
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
      if (conn) {
        const acked = await Promise.race([
          this.publish(conn, topic, payload, correlation).then(() => true),
          answer.then(() => false),
        ]);
        if (acked) hooks?.sent?.();
      }
      return await answer;
    } finally {
      clearTimeout(timer);
      if (this.pending.get(key) === mine) this.pending.delete(key);
    }
  }

  private publish(conn: Connection, topic: string, payload: string, correlation: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      conn.client.publish(
        topic,
        payload,
        { qos: 1, properties: { responseTopic: conn.topic, correlationData: correlation } },
        (err) => {
          if (!err) return resolve();
          // MQTT v5 PUBACK ≥ 0x80, e.g. 0x87 Not authorized: the broker's ACL refused the topic.
          reject(
            new SigilError(
              'issuer_unreachable',
              `the broker ${this.url} refused the publish to ${topic}: ${err.message}; check its ACL for this client`,
              { cause: err },
            ),
          );
        },
      );
    });
  }

  /** The connection for the current session, (re)connecting or switching identity as needed. */
  private async connection(op: MqttOp): Promise<Connection> {
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
      conn = this.conn = await this.opening;
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
        fail(
          new SigilError(
            'issuer_unreachable',
            `could not connect to the MQTT broker ${this.url} within ${this.connectTimeoutMs} ms`,
          ),
        );
      }, this.connectTimeoutMs + 1_000);
      const waiter = {
        ok: () => (clearTimeout(t), ok()),
        fail: (e: SigilError) => (clearTimeout(t), fail(e)),
      };
      conn.waiters.push(waiter);
    });
  }

  private get connectTimeoutMs(): number {
    return this.opts.connectTimeoutMs ?? Math.min(this.timeoutMs, 10_000);
  }

  private settle(conn: Connection, e?: SigilError): void {
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
      up: false,
      subscribed: false,
      lastError: undefined,
      waiters: [],
    };
    client.on('connect', (connack: IConnackPacket) => {
      // A session the broker kept has our subscription only if it was ever acknowledged: a
      // connection that died between CONNACK and SUBACK (seen in reconnect storms) leaves a
      // session without one. So each client object subscribes once, and again only if the broker
      // lost the session. A repeated SUBSCRIBE replaces the subscription (MQTT v5 §3.8.4): no
      // duplicate deliveries; queued answers flow as soon as the session resumes either way.
      if (connack.sessionPresent && conn.subscribed) {
        conn.up = true;
        return this.settle(conn);
      }
      client.subscribe(conn.topic, { qos: 1 }, (err, granted) => {
        if (err || granted?.some((g) => (g.qos as number) >= 0x80)) {
          const e = new SigilError(
            'issuer_unreachable',
            `the broker ${this.url} refused the subscription to ${conn.topic}${err ? `: ${err.message}` : ''}; check its ACL for this client`,
          );
          conn.lastError = e;
          this.settle(conn, e);
          client.end(true);
          return;
        }
        conn.subscribed = true;
        conn.up = true;
        this.settle(conn);
      });
    });
    client.on('message', (t: string, body: Buffer, packet: IPublishPacket) =>
      this.onMessage(t, body, packet, conn.topic),
    );
    client.on('error', (err) => {
      conn.lastError = brokerError(err, this.url);
    });
    client.on('close', () => {
      conn.up = false;
      this.settle(
        conn,
        conn.lastError ?? new SigilError('issuer_unreachable', `the connection to the MQTT broker ${this.url} closed`),
      );
      this.scheduleReconnect(conn);
    });
    return conn;
  }

  /** Reconnect (jittered) only while requests wait; an idle agent stays quietly disconnected. */
  private scheduleReconnect(conn: Connection): void {
    if (this.closed || this.conn !== conn || this.pending.size === 0) return;
    clearTimeout(this.reconnectTimer);
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
          conn.client.reconnect();
        }
      },
      250 + Math.random() * 750,
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
