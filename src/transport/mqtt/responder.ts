/**
 * The issuer's MQTT adapter. Like the HTTPS adapter it only moves bytes: take a request from
 * `sigil/v1/<op>`, run that operation of the table (server/ops/table.ts), publish the signed answer to the request's MQTT v5
 * Response Topic with its Correlation Data. Differences that come from the carrier:
 *
 * - A shared subscription ($share/sigil/…) lets several issuers serve one broker; the broker
 *   hands each request to one of them. The session is clean: a request in flight to an issuer
 *   that dies is lost, and the agent's resend (same request id, after its timeout) lands on a
 *   survivor, which answers idempotently.
 * - The broker is untrusted for integrity, so refusals are signed too
 *   (server/ops/respond.ts signErrorResponse), bound to the request id and payload hash.
 * - A request without a usable response topic cannot be answered: it is dropped and counted.
 *   So is one whose answer would go where its sender does not listen (./answer-topic.ts): a
 *   renewal or credential request is answered only on the topic of the instance that signed it,
 *   a join only on a bootstrap topic (the table's answerTo). Nothing a client sends can crash the responder: every path ends in a signed
 *   answer, a counted drop, or a logged internal error.
 */
import type { IConnackPacket, IPublishPacket, MqttClient } from 'mqtt';
import { randomBytes } from 'node:crypto';
import { SigilError, toSigilError } from '../../errors.js';
import { b64u, type Jws } from '../../protocol/jws.js';
import { OPS } from '../../protocol/messages.js';
import { requestIdSchema } from '../../protocol/requests.js';
import { requestHash } from '../../protocol/request-hash.js';
import { capText } from '../../util/untrusted-text.js';
import type { IssuerContext } from '../../server/issuer.js';
import { signErrorResponse } from '../../server/ops/respond.js';
import { operationNamed } from '../../server/ops/table.js';
import { RateLimiter, type RateLimitOptions } from '../../server/rate-limit.js';
import { answerTopicFits, signerAnswerDrop, type TopicDrop } from './answer-topic.js';
import { displayUrl, openMqttClient, parseMqttUrl, type MqttEndpoint } from './connect.js';
import { isValidResponseTopic, MAX_MQTT_PAYLOAD, opOfTopic, SHARED_REQUEST_FILTER } from './topics.js';

/** Correlation Data is an agent's request id (≤ 64 bytes); anything much longer is not ours. */
const MAX_CORRELATION = 256;
/** The broker never sends us more than this; between 64 KiB and this we answer body_too_large. */
const MAX_PACKET = 1024 * 1024;
/**
 * Reconnect pause: jittered over [MIN, window], the window doubling from FIRST per failed try up
 * to MAX. Agents reconnecting after a broker restart publish into nothing until an issuer is
 * subscribed again (PUBACK 0x10, which they retry for ~7 s: pacing.ts CONNECT_ATTEMPTS_MAX), so
 * the issuer must be back within about a second of the broker, however long the broker was
 * down: a window that had grown to 5 s while the broker restarted left 2,600 of a 5,000-agent
 * storm unanswered at first and 6 past their retries (bench renew-mqtt, 16.6 s instead of ≤ 10 s).
 * A handful of issuers trying once a second is no load on a broker.
 */
const RECONNECT_MIN_MS = 100;
const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 1_000;
const PUBACK_WAIT_MS = 10_000;
/**
 * Requests handled at once; the others wait in arrival order. Unbounded, a burst (5,000 agents
 * back after a broker restart) is served like processor sharing: every renewal advances a step
 * at a time and all finish together, after the agents' 15 s timeout — measured: 41 of 5,000
 * answered in 15 s, 4,959 resends. First come, first served, the early ones are answered at the
 * issuer's rate and the last waits only for the backlog (issue #14). Enough to keep the store's
 * write queue and the crypto busy.
 */
const MAX_CONCURRENT = 32;
/** Requests waiting beyond that are dropped (counted): their agents resend after the timeout. */
const MAX_WAITING = 50_000;
/** Drop log lines per reason and minute (see MqttResponder.drop). */
const DROP_LOG_PER_MIN = 20;

export interface MqttResponderOptions extends MqttEndpoint {
  ctx: IssuerContext;
  clientId?: string;
  /** Uniform draws in [0, 1) for the reconnect jitter (tests pin it); default Math.random. */
  random?: () => number;
  /** Join rate limits (server/rate-limit.ts); defaults: MQTT_JOIN_LIMITS. */
  joinLimits?: { perTopic: RateLimitOptions; overall: RateLimitOptions };
}

/**
 * Joins over MQTT, limited before the join method runs (issue #11 item 4). The issuer never
 * learns the publisher's address, only the Response Topic it named, which the publisher chooses:
 * a per-topic bucket stops one careless or looping agent (its bootstrap id is stable), and an
 * overall bucket bounds what the whole broker can make this issuer spend on joins — the part a
 * flood rotating through topics can still take. Over either: a signed `rate_limited` refusal
 * with retry_after_ms, which agents honour (agent.ts recordFailure); not audited, counted as
 * outcome rate_limited.
 */
export const MQTT_JOIN_LIMITS = {
  perTopic: { ratePerS: 10, burst: 50 },
  overall: { ratePerS: 200, burst: 400 },
} as const;

type Drop = TopicDrop | 'bad_correlation' | 'publish_failed' | 'overloaded';

export class MqttResponder {
  private client: MqttClient | undefined;
  private stopping = false;
  private inflight = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** Reconnect tries since the connection was last up. */
  private reconnectTries = 0;
  private readyOnce: (() => void) | undefined;
  /** Answers published and not yet acknowledged, and the broker's limit for them. */
  private unacked = 0;
  private receiveMaximum = 20;
  private readonly senders: Array<() => void> = [];
  readonly url: string;
  /** Requests dropped without an answer, by reason (also in sigil_requests_total). */
  /** Per drop reason: the current minute's logged and unlogged lines (see drop()). */
  private readonly dropLog = new Map<Drop, { since: number; logged: number; quiet: number }>();
  readonly dropped: Record<Drop, number> = {
    bad_response_topic: 0,
    unauthenticated: 0,
    bad_correlation: 0,
    publish_failed: 0,
    overloaded: 0,
  };
  /** Requests received and not yet started, oldest first (MAX_CONCURRENT run at once). */
  private readonly waiting: Array<{ topic: string; payload: Buffer; packet: IPublishPacket }> = [];

  private readonly joinPerTopic: RateLimiter;
  private readonly joinOverall: RateLimiter;

  /** Set when the client certificate changed: the next reconnect opens a new client with it. */
  private identityChanged = false;

  constructor(private opts: MqttResponderOptions) {
    this.url = displayUrl(parseMqttUrl(opts.url, '--mqtt-url').url);
    const limits = opts.joinLimits ?? MQTT_JOIN_LIMITS;
    this.joinPerTopic = new RateLimiter(limits.perTopic);
    this.joinOverall = new RateLimiter(limits.overall);
  }

  /** Take a join token for `responseTopic` and one overall, or refuse with when to come back. */
  private limitJoin(responseTopic: string): void {
    const mine = this.joinPerTopic.take(responseTopic);
    if (!mine.ok)
      throw new SigilError(
        'rate_limited',
        `too many join requests answered on this topic; retry in ${mine.retryAfterMs} ms`,
        { retryAfterMs: mine.retryAfterMs },
      );
    const all = this.joinOverall.take('*');
    if (!all.ok)
      throw new SigilError(
        'rate_limited',
        `the issuer is taking too many joins over MQTT; retry in ${all.retryAfterMs} ms`,
        { retryAfterMs: all.retryAfterMs },
      );
  }

  /**
   * Present this client certificate from the next connection on (the issuer's serving identity is
   * rotated daily and lives 30 days: server/service.ts). The open connection keeps its session —
   * TLS checks the certificate only at the handshake — so nothing is dropped now.
   */
  setClientIdentity(cert: string, key: string): void {
    this.opts = { ...this.opts, cert, key };
    this.identityChanged = true;
  }

  /**
   * Publish a signed event (server/events, docs/events.md) at QoS 1 on this connection; resolves at
   * the PUBACK. Rejects while disconnected: the event queue retries with backoff.
   */
  publishEvent(topic: string, payload: string): Promise<void> {
    const client = this.client;
    if (!client?.connected) return Promise.reject(new Error('not connected to the broker'));
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no PUBACK')), PUBACK_WAIT_MS);
      client.publish(topic, payload, { qos: 1 }, (err) => {
        clearTimeout(t);
        if (err) reject(err);
        else resolve();
      });
    });
  }

  /** Connect and subscribe; resolves once the first subscription is in place. Reconnects by itself afterwards. */
  async start(): Promise<void> {
    const ready = new Promise<void>((resolve) => (this.readyOnce = resolve));
    await this.connect();
    await ready;
  }

  private async connect(): Promise<void> {
    const { ctx } = this.opts;
    const client = await openMqttClient(this.opts, {
      clientId: this.opts.clientId ?? `sigil-issuer-${process.pid}-${randomBytes(6).toString('hex')}`,
      clean: true,
      connectTimeoutMs: 10_000,
      maximumPacketSize: MAX_PACKET,
    });
    this.client = client;
    client.on('connect', (connack: IConnackPacket) => {
      // The broker's Receive Maximum (MQTT v5 §3.2.2.3.3; mosquitto: max_inflight_messages,
      // default 20). Overrunning it lets the broker disconnect us (§3.3.4), losing the requests
      // queued for this clean session — seen in the reconnect-storm bench. MQTT.js does not
      // enforce it for outgoing messages; publish() does.
      this.receiveMaximum = connack.properties?.receiveMaximum ?? 65_535;
      this.unacked = 0;
      this.reconnectTries = 0;
      this.wakeSenders();
      client.subscribe(SHARED_REQUEST_FILTER, { qos: 1 }, (err, granted) => {
        // Refused at SUBSCRIBE (MQTT v5 §3.9.3, reason ≥ 0x80): the broker's policy says this
        // identity may not serve requests — usually an issuer pointed at an agents' listener.
        const code = granted?.find((g) => (g.qos as number) >= 0x80)?.qos as number | undefined;
        const refused =
          err || code !== undefined
            ? new Error(
                `the broker refused the subscription to ${SHARED_REQUEST_FILTER} (${err ? err.message : `reason 0x${code!.toString(16)}`}): is --mqtt-url the issuers' listener (8885 in scripts/mosquitto/mosquitto.conf.example), and does the broker give this identity the sigil-issuer role? See docs/mqtt.md`,
              )
            : undefined;
        if (refused) {
          ctx.log.error({ err: refused, url: this.url }, 'mqtt responder could not subscribe');
          client.end(true);
          return;
        }
        ctx.log.info({ url: this.url, filter: SHARED_REQUEST_FILTER }, 'mqtt responder subscribed');
        this.readyOnce?.();
        this.readyOnce = undefined;
      });
    });
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    client.on('error', (err) =>
      ctx.log.warn(
        { err: { message: err.message, code: (err as NodeJS.ErrnoException).code }, url: this.url },
        'mqtt responder connection error',
      ),
    );
    client.on('close', () => {
      if (this.stopping || this.client !== client) return;
      // Jittered so that several issuers do not hammer a restarting broker together.
      const window = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** Math.min(this.reconnectTries++, 10));
      const delay = RECONNECT_MIN_MS + (this.opts.random ?? Math.random)() * (window - RECONNECT_MIN_MS);
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = setTimeout(() => {
        if (this.stopping || client.connected) return;
        if (!this.identityChanged) return void client.reconnect();
        // MQTT.js reconnects with the options it was created with: a rotated certificate needs a new client.
        this.identityChanged = false;
        client.end(true);
        this.connect().catch((err: unknown) =>
          ctx.log.error({ err, url: this.url }, 'mqtt responder could not reconnect with its new certificate'),
        );
      }, delay);
    });
  }

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (this.stopping) return;
    if (this.waiting.length >= MAX_WAITING)
      return this.drop(opOfTopic(topic) ?? 'unknown', 'overloaded', { topic, waiting: this.waiting.length });
    this.waiting.push({ topic, payload, packet });
    this.pump();
  }

  /** Start waiting requests, oldest first, while fewer than MAX_CONCURRENT run. */
  private pump(): void {
    while (this.inflight < MAX_CONCURRENT && this.waiting.length > 0 && !this.stopping) {
      const m = this.waiting.shift()!;
      this.inflight++;
      this.handle(m.topic, m.payload, m.packet)
        .catch((err: unknown) =>
          this.opts.ctx.log.error({ err }, 'mqtt responder: unexpected failure (request left unanswered)'),
        )
        .finally(() => {
          this.inflight--;
          this.pump();
        });
    }
  }

  private count(op: string, outcome: string): void {
    this.opts.ctx.metrics.requests.inc({ transport: 'mqtt', op, outcome });
  }

  private async handle(topic: string, payload: Buffer, packet: IPublishPacket): Promise<void> {
    const { ctx } = this.opts;
    const operation = operationNamed(opOfTopic(topic));
    const op = operation?.name ?? 'unknown';
    const responseTopic = packet.properties?.responseTopic;
    const correlation = packet.properties?.correlationData;
    if (!isValidResponseTopic(responseTopic))
      return this.drop(op, 'bad_response_topic', { topic, response_topic: String(responseTopic ?? '').slice(0, 200) });
    // Checked before the operation runs: a join is not performed (its token not spent) for an
    // answer that could not be published.
    if (!answerTopicFits(op, responseTopic))
      return this.drop(op, 'bad_response_topic', { topic, response_topic: responseTopic });
    if (correlation !== undefined && (!Buffer.isBuffer(correlation) || correlation.length > MAX_CORRELATION))
      return this.drop(op, 'bad_correlation', { topic });

    const remote = `mqtt:${responseTopic}`;
    /** The parsed envelope, once it parsed: a refusal is bound to it (requestBinding). */
    let body: unknown;
    let answer: Jws;
    let outcome = 'ok';
    /** The instance whose chain and signature verified (operations answered to their signer). */
    let signer: string | undefined;
    try {
      if (!operation)
        throw new SigilError(
          'not_found',
          `no operation at topic ${topic.slice(0, 200)} (expected sigil/v1/${OPS.join(', ')})`,
        );
      if (payload.length > MAX_MQTT_PAYLOAD)
        throw new SigilError('body_too_large', `the request exceeds ${MAX_MQTT_PAYLOAD} bytes`);
      try {
        body = JSON.parse(payload.toString('utf8'));
      } catch {
        throw new SigilError('malformed_json');
      }
      if (operation.rateLimited) this.limitJoin(responseTopic);
      // MQTT is not confidential: the broker and every peer that may read response topics see
      // the answer, so secret-bearing answers are encrypted to the requester (server/ops/credential.ts).
      answer = await operation.handle(ctx, {
        body: operation.takesBody ? body : undefined,
        nonce: operation.takesBody ? undefined : requestNonce(body),
        remote,
        confidential: false,
        carrier: 'mqtt',
        hooks: { onAuthenticated: (who) => (signer = who.instanceId) },
      });
    } catch (err) {
      // The operations have audited and counted their own refusals.
      const e = toSigilError(err);
      if (e.code === 'internal' && !(err instanceof SigilError))
        ctx.log.error({ err }, 'mqtt responder: internal error');
      outcome = e.code;
      // Only a refusal needs the binding (a success answers with the operation's own): its hash
      // over the whole signing input and the payload's second parse are not paid per renewal.
      const binding = requestBinding(body);
      answer = signErrorResponse(ctx, op, binding.requestId, binding.requestHash, e);
    }
    if (operation?.answerTo === 'signer') {
      // The request ran (a success is recorded and replays idempotently), but its answer goes
      // nowhere but to its signer: never onto a topic another instance reads.
      const why = signerAnswerDrop(responseTopic, signer);
      if (why) return this.drop(op, why, { topic, response_topic: responseTopic, signer: signer ?? null, outcome });
    }
    await this.publish(op, responseTopic, answer, correlation);
    this.count(op, outcome);
  }

  private async publish(op: string, topic: string, answer: Jws, correlation: Buffer | undefined): Promise<void> {
    while (this.unacked >= this.receiveMaximum) await new Promise<void>((r) => this.senders.push(r));
    const client = this.client;
    if (!client) return;
    this.unacked++;
    await new Promise<void>((resolve) => {
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        this.unacked = Math.max(0, this.unacked - 1);
        this.wakeSenders();
        resolve();
      };
      // We wait for the PUBACK to respect the broker's window and to count a failure, but not
      // forever (after a reconnect MQTT.js may never call back for an old packet).
      const t = setTimeout(finish, PUBACK_WAIT_MS);
      client.publish(
        topic,
        JSON.stringify(answer),
        { qos: 1, properties: correlation ? { correlationData: correlation } : {} },
        (err) => {
          clearTimeout(t);
          // The agent resends after its timeout; a lost answer is replayed idempotently then.
          if (err) this.drop(op, 'publish_failed', { topic, err: err.message });
          finish();
        },
      );
    });
  }

  /** Let as many waiting answers go as there are free slots (each re-checks when it resumes). */
  private wakeSenders(): void {
    for (let free = this.receiveMaximum - this.unacked; free > 0 && this.senders.length > 0; free--)
      this.senders.shift()!();
  }

  /**
   * Counted always; logged for the first DROP_LOG_PER_MIN of each reason a minute, then once more
   * with how many went unlogged. Drops are what anyone on the broker can cause, so their log
   * lines are bounded in number and in size (client-chosen topics are capped), like refusals.
   */
  private drop(op: string, why: Drop, fields: Record<string, unknown>): void {
    this.dropped[why]++;
    this.count(op, `dropped_${why}`);
    const now = Date.now();
    const w = this.dropLog.get(why);
    const win = w && now - w.since < 60_000 ? w : { since: now, logged: 0, quiet: 0 };
    this.dropLog.set(why, win);
    if (win.logged >= DROP_LOG_PER_MIN) {
      win.quiet++;
      return;
    }
    win.logged++;
    const capped = Object.fromEntries(
      Object.entries(fields).map(([k, v]) => [k, typeof v === 'string' ? capText(v) : v]),
    );
    const unlogged = w && w !== win && w.quiet > 0 ? { unlogged_before: w.quiet } : {};
    this.opts.ctx.log.warn({ ...capped, ...unlogged, op, reason: why }, 'mqtt request dropped without an answer');
  }

  /** Stop taking requests, let those in flight finish (up to `graceMs`), then disconnect. */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    // Not started: dropped with the clean session, like requests still queued at the broker; agents resend.
    this.waiting.length = 0;
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    if (!client) return;
    // MQTT.js queues packets while offline: only ask a connected broker, and never wait long.
    if (client.connected)
      await Promise.race([
        client.unsubscribeAsync(SHARED_REQUEST_FILTER).catch(() => undefined),
        new Promise((r) => setTimeout(r, 1_000)),
      ]);
    const end = Date.now() + graceMs;
    while (this.inflight > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    // Forced: a graceful end waits for acknowledgements of packets a broker restart may have
    // orphaned, and would keep the process alive. Whatever is lost, agents resend.
    await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
  }
}

/**
 * The request id and payload hash a refusal is bound to, read from the (not yet verified)
 * envelope. Only a well-formed id is echoed; the hash covers the exact payload bytes, so a
 * refusal can only ever match the request that caused it (protocol/messages.ts).
 */
function requestBinding(body: unknown): { requestId: string | null; requestHash: string | null } {
  const payloadB64 = (body as { payload?: unknown } | null)?.payload;
  const protectedB64 = (body as { protected?: unknown } | null)?.protected;
  const b64uRe = /^[A-Za-z0-9_-]*$/;
  if (
    typeof payloadB64 !== 'string' ||
    !b64uRe.test(payloadB64) ||
    typeof protectedB64 !== 'string' ||
    !b64uRe.test(protectedB64)
  )
    return { requestId: null, requestHash: null };
  const bytes = b64u.decode(payloadB64);
  // The whole signing input (header names the signer): protocol/request-hash.ts.
  const hash = requestHash({ protected: protectedB64, payload: payloadB64 });
  let requestId: string | null = null;
  try {
    const id = (JSON.parse(bytes.toString('utf8')) as { request_id?: unknown } | null)?.request_id;
    if (requestIdSchema.safeParse(id).success) requestId = id as string;
  } catch {
    // not JSON: no id to echo
  }
  return { requestId, requestHash: hash };
}

/**
 * The nonce of a request without an envelope (`{v, op: 'bundle', nonce}`), to echo in its signed
 * answer; anything else is no nonce (an older agent's request is answered as before).
 */
function requestNonce(body: unknown): string | undefined {
  const n = body !== null && typeof body === 'object' ? (body as { nonce?: unknown }).nonce : undefined;
  return typeof n === 'string' && /^[A-Za-z0-9_-]{16,64}$/.test(n) ? n : undefined;
}
