/**
 * Each MQTT transport's broker, met with the agent's own credentials: the connection is
 * accepted (CONNACK), and the session may subscribe to the topic its answers come on — for a
 * joined instance `sigil/v1/resp/<instance id>`, before that its bootstrap topic. A broker
 * whose ACL refuses that subscription accepts the agent's requests and drops every answer
 * (docs/mqtt.md: the refusal comes in the SUBACK, reason 0x87 with the dynamic-security plugin).
 *
 * Doctor connects under its own client id with a clean session (./probe.ts doctorMqttSession):
 * the ACL is by credentials, and the agent's own session must not be taken over.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { MqttClient } from 'mqtt';
import type { TransportConfig } from '../../agent/config.js';
import { toSigilError } from '../../errors.js';
import { spkiPin } from '../../pki/chain.js';
import { fail, ok, NETWORK_TIMEOUT_MS, type Check, type CheckOutcome } from '../types.js';
import type { AgentDoctorContext } from './context.js';
import { doctorMqttSession, PROBE_TIMEOUT_MS } from './probe.js';

type MqttTransport = Extract<TransportConfig, { type: 'mqtt' }>;

/** MQTT v5 reason codes a broker answers CONNECT and SUBSCRIBE with (§3.2.2.2, §3.9.3). */
const REASONS: Record<number, string> = {
  0x80: 'Unspecified error',
  0x83: 'Implementation specific error',
  0x84: 'Unsupported protocol version',
  0x85: 'Client identifier not valid',
  0x86: 'Bad user name or password',
  0x87: 'Not authorized',
  0x88: 'Server unavailable',
  0x89: 'Server busy',
  0x8a: 'Banned',
  0x8c: 'Bad authentication method',
  0x8f: 'Topic filter invalid',
  0x97: 'Quota exceeded',
  0x9f: 'Connection rate exceeded',
};
const reason = (rc: number): string => `reason 0x${rc.toString(16)} ${REASONS[rc] ?? ''}`.trim();

/** The CA for an mqtts broker: ca_file, else the pinned root (as stored, else as the issuer check learned it). */
async function brokerCa(ctx: AgentDoctorContext, i: number, t: MqttTransport): Promise<string> {
  if (t.caFile) return readFileSync(t.caFile, 'utf8');
  const stored = (await ctx.state().catch(() => undefined))?.getBundle()?.rootsPem.find((pem) => {
    try {
      return spkiPin(new X509Certificate(pem)) === ctx.cfg.caPin;
    } catch {
      return false;
    }
  });
  return stored ?? (await ctx.probe(i)).rootPem;
}

function connected(client: MqttClient, url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`no CONNACK from ${url} within ${PROBE_TIMEOUT_MS} ms`)),
      PROBE_TIMEOUT_MS,
    );
    client.once('connect', () => (clearTimeout(t), resolve()));
    client.once('error', (e: Error & { code?: unknown }) => {
      clearTimeout(t);
      reject(
        typeof e.code === 'number'
          ? Object.assign(new Error(`the broker refused the connection: ${reason(e.code)}`), { connack: e.code })
          : e,
      );
    });
    client.once('close', () => (clearTimeout(t), reject(new Error(`${url} closed the connection`))));
  });
}

/**
 * The SUBACK reason code (< 0x80: the granted QoS). MQTT.js reports a refusal as an error that
 * carries the SUBACK packet (ErrorWithSubackPacket), not the code itself.
 */
function subscribe(client: MqttClient, topic: string): Promise<number> {
  return new Promise((resolve, reject) => {
    client.subscribe(topic, { qos: 1 }, (err, granted) => {
      const rc = (err as { packet?: { granted?: unknown[] } } | null | undefined)?.packet?.granted?.[0];
      if (typeof rc === 'number') resolve(rc);
      else if (err) reject(err);
      else resolve((granted?.[0]?.qos as number | undefined) ?? 0x80);
    });
  });
}

/** OpenSSL's words for TLS alert 116 (RFC 8446 §6.2), as Node reports them. */
const CERT_REQUIRED = /certificate required|CERTIFICATE_REQUIRED|alert number 116/i;

/**
 * Why the broker did not take the session, and what fixes it. A certificate listener (8883 in
 * scripts/mosquitto/) answers a client without a certificate with TLS alert 116 "certificate
 * required": an agent that has not joined (or whose identity expired) has no certificate there, so
 * it needs the transport's `bootstrap:` (the password listener, or a factory certificate) — without
 * it, `agent run` fails the same way with only OpenSSL's words.
 */
export function connectFailure(
  e: Error & { connack?: number },
  url: string,
  who: string,
  t: Pick<MqttTransport, 'bootstrap'>,
): CheckOutcome {
  const detail = `cannot connect to ${url} (${who}): ${e.message}`;
  if (e.connack !== undefined)
    return fail(
      detail,
      "check the transport's bootstrap credentials (bootstrap.username/password_file or cert/key) and the broker's client list",
    );
  if (CERT_REQUIRED.test(e.message)) {
    if (who === 'bootstrap session' && !t.bootstrap)
      return fail(
        `${detail}: the broker requires a client certificate, and before its first join (or after an expiry) the agent has none`,
        'add bootstrap: to this transport — { url: mqtts://BROKER:8884, username: bootstrap, password_file: FILE } (the password listener) or { cert: FILE, key: FILE } (a factory certificate) (docs/mqtt.md "The agent")',
      );
    return fail(
      `${detail}: the broker requires a client certificate and took none from this session`,
      "check the transport's bootstrap cert/key, or point bootstrap.url at the broker's password listener (docs/mqtt.md)",
    );
  }
  return fail(detail, `check that the broker listens at ${url} (and ca_file for its TLS certificate)`);
}

export const brokerCheck = (i: number, t: MqttTransport): Check<AgentDoctorContext> => ({
  name: `broker:${t.url}`,
  timeoutMs: NETWORK_TIMEOUT_MS,
  async run(ctx, signal): Promise<CheckOutcome> {
    const state = await ctx.state().catch(() => undefined);
    const session = await doctorMqttSession(t, state, ctx.now);
    const url = session.url ?? t.url;
    const tls = url.startsWith('mqtts:');
    const who = session.joined ? 'instance session' : 'bootstrap session';
    let ca: string | undefined;
    if (tls) {
      try {
        ca = await brokerCa(ctx, i, t);
      } catch (e) {
        // Learning the root went through this same broker: its refusal is this check's finding.
        if (CERT_REQUIRED.test(toSigilError(e).message)) return connectFailure(e as Error, url, who, t);
        return fail(
          `cannot verify the broker's TLS certificate: no ca_file and the pinned root is unknown (${toSigilError(e).message})`,
          'set ca_file for this transport, or fix the issuer check first',
        );
      }
    }
    const { openMqttClient } = await import('../../transport/mqtt/connect.js');
    const client = await openMqttClient(
      {
        url,
        ...(ca !== undefined ? { ca } : {}),
        ...(session.username !== undefined ? { username: session.username } : {}),
        ...(session.password !== undefined ? { password: session.password } : {}),
        ...(session.cert !== undefined && tls ? { cert: session.cert, key: session.key! } : {}),
      },
      { clientId: session.clientId, clean: true, sessionExpiryS: 0, connectTimeoutMs: PROBE_TIMEOUT_MS - 500 },
    );
    const end = (): void => void client.end(true);
    ctx.onClose(end);
    signal.addEventListener('abort', end);
    try {
      await connected(client, url);
    } catch (e) {
      return connectFailure(e as Error & { connack?: number }, url, who, t);
    }
    const topic = `sigil/v1/resp/${session.responseId}`;
    let granted: number;
    try {
      granted = await subscribe(client, topic);
    } catch (e) {
      return fail(`connected, but subscribing to ${topic} failed: ${(e as Error).message}`, 'check the broker log');
    } finally {
      end();
    }
    if (granted >= 0x80) {
      return fail(
        `connected (${who}), but the broker refused the subscription to ${topic} (${reason(granted)}): its ACL drops every answer to this agent`,
        `allow this client to subscribe to sigil/v1/resp/${session.joined ? '+' : 'bootstrap/+'} (mosquitto dynamic security: role ${session.joined ? 'sigil-agent' : 'sigil-bootstrap'}; docs/mqtt.md "What the roles allow")`,
      );
    }
    return ok(`connected to ${url} (${who}) and subscribed to ${topic} (QoS ${granted})`);
  },
});
