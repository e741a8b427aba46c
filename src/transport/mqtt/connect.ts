/**
 * Opening an MQTT v5 connection for Sigil (agent client and issuer responder alike): URL
 * checks, TLS material, and a lazy import of MQTT.js — it costs ~250 ms of start-up, which an
 * agent restarted while offline must not pay before it has served its cached identity.
 */
import type { IClientOptions, MqttClient } from 'mqtt';
import { SigilError } from '../../errors.js';

export interface MqttEndpoint {
  /** mqtt://host:port or mqtts://host:port. */
  url: string;
  /** PEM trust anchors for the broker's TLS certificate (mqtts). */
  ca?: string | string[];
  /** Client certificate chain and key (PEM), for brokers that authenticate by certificate. */
  cert?: string;
  key?: string;
  username?: string;
  password?: string;
}

export interface MqttSessionOptions {
  clientId: string;
  /** false: a persistent session the broker keeps for `sessionExpiryS` (queued QoS 1 messages survive a blink). */
  clean: boolean;
  sessionExpiryS?: number;
  connectTimeoutMs: number;
  keepaliveS?: number;
  /** Largest packet we accept from the broker (MQTT v5 Maximum Packet Size). */
  maximumPacketSize?: number;
}

/** Parse and check a broker URL; `what` names the setting in messages. */
export function parseMqttUrl(url: string, what: string): { url: URL; tls: boolean } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SigilError(
      'config_invalid',
      `${what}: "${url}" is not a valid URL (expected mqtt://HOST:PORT or mqtts://HOST:PORT)`,
    );
  }
  if (u.protocol !== 'mqtt:' && u.protocol !== 'mqtts:')
    throw new SigilError('config_invalid', `${what}: "${url}" must use mqtt:// or mqtts://`);
  if (u.username || u.password)
    throw new SigilError('config_invalid', `${what}: put broker credentials in their own settings, not in the URL`);
  if (u.pathname !== '' && u.pathname !== '/')
    throw new SigilError('config_invalid', `${what}: "${url}" must not have a path`);
  return { url: u, tls: u.protocol === 'mqtts:' };
}

/** The URL without credentials, for logs and status. */
export const displayUrl = (u: URL): string => `${u.protocol}//${u.host}`;

let mqttModule: Promise<typeof import('mqtt')> | undefined;
const loadMqtt = (): Promise<typeof import('mqtt')> => (mqttModule ??= import('mqtt'));

/**
 * Create (and start connecting) a client. MQTT.js' own reconnect loop is off: a fixed period
 * without jitter would make a fleet reconnect in lockstep; callers reconnect when they need to.
 */
export async function openMqttClient(ep: MqttEndpoint, s: MqttSessionOptions): Promise<MqttClient> {
  const { url, tls } = parseMqttUrl(ep.url, 'MQTT broker');
  const mqtt = await loadMqtt();
  const opts: IClientOptions = {
    protocolVersion: 5,
    clientId: s.clientId,
    clean: s.clean,
    keepalive: s.keepaliveS ?? 60,
    reconnectPeriod: 0,
    connectTimeout: s.connectTimeoutMs,
    resubscribe: false,
    queueQoSZero: false,
    properties: {
      ...(s.sessionExpiryS !== undefined ? { sessionExpiryInterval: s.sessionExpiryS } : {}),
      ...(s.maximumPacketSize !== undefined ? { maximumPacketSize: s.maximumPacketSize } : {}),
    },
    ...(ep.username !== undefined ? { username: ep.username } : {}),
    ...(ep.password !== undefined ? { password: ep.password } : {}),
  };
  if (tls) {
    Object.assign(opts, {
      rejectUnauthorized: true,
      ...(ep.ca !== undefined ? { ca: ep.ca } : {}),
      ...(ep.cert !== undefined ? { cert: ep.cert } : {}),
      ...(ep.key !== undefined ? { key: ep.key } : {}),
    });
  }
  const client = mqtt.connect(url.toString().replace(/\/$/, ''), opts);
  // Small request/answer packets: Nagle plus delayed ACKs would add ~40 ms to every exchange.
  client.on('connect', () => (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true));
  return client;
}

/** A connection failure as the retryable code agents fail over on, naming the broker's reason. */
export function brokerError(e: unknown, url: string): SigilError {
  if (e instanceof SigilError) return e;
  const err = e as NodeJS.ErrnoException & { reasonCode?: number };
  const why =
    err.code && typeof err.code === 'string'
      ? `${err.code}${err.message && !err.message.includes(err.code) ? ` ${err.message}` : ''}`
      : (err.message ?? String(e));
  return new SigilError('issuer_unreachable', `cannot use the MQTT broker ${url}: ${why}`, { cause: e });
}
