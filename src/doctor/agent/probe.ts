/**
 * One look at the issuer through one transport, as the agent would take it: the root whose
 * SPKI hash is `ca_pin` (HTTPS: from the presented TLS chain; MQTT: from the broker's chain or
 * the signed bundle — the transports' own `ensureRoot`), then a signed `bundle` response verified
 * under that root. Its `issued_at` is the issuer's clock, which the clock check compares with ours.
 *
 * The bundle is verified at the issuer's time, not ours: a clock that is years off (an RTC
 * without battery) would otherwise fail signature verification and hide the real finding — the
 * clock — behind "response_invalid". The signature still proves the issuer said it.
 */
import { randomBytes } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { b64u, parseJws } from '../../protocol/jws.js';
import { verifyResponse } from '../../protocol/verify-response.js';
import type { MqttSession } from '../../transport/mqtt/client.js';
import type { IssuerTransport } from '../../transport/types.js';
import type { AgentConfig, TransportConfig } from '../../agent/config.js';
import type { AgentState } from '../../agent/state/index.js';

/**
 * What a probe needs of the doctor's context. Declared here rather than imported from context.ts,
 * which memoises probes and so depends on this file: one direction, context.ts → probe.ts.
 * AgentDoctorContext satisfies it.
 */
export interface ProbeContext {
  cfg: Pick<AgentConfig, 'caPin'>;
  now(): number;
  state(): Promise<AgentState | undefined>;
  onClose(fn: () => unknown): void;
}

/** Leaves room under the runner's 5 s limit for the verification and the report. */
export const PROBE_TIMEOUT_MS = 4_000;

export interface IssuerProbe {
  rootPem: string;
  /** The issuer's clock (issued_at of the signed bundle), unix ms. */
  issuedAt: number;
  /** Our clock when the request left and when the answer came. */
  sentAt: number;
  receivedAt: number;
  trustDomain: string;
}

/**
 * The MQTT identity doctor presents: the agent's own credentials and response topic (so the
 * broker's ACL is tested as the agent meets it), but its own client id with a clean session —
 * taking the agent's client id would disconnect a running daemon and discard its queued answers.
 */
export async function doctorMqttSession(
  t: Extract<TransportConfig, { type: 'mqtt' }>,
  state: AgentState | undefined,
  now: () => number,
): Promise<MqttSession & { joined: boolean }> {
  const { mqttSession } = await import('../../agent/transports.js');
  // mqttSession persists a bootstrap id when the agent has none; doctor writes nothing.
  const readOnly = {
    getIdentity: () => state?.getIdentity(),
    getOrCreateSetting: (key: string, make: () => string) => state?.getSetting(key) ?? make(),
  } as unknown as AgentState;
  const s = mqttSession(t, readOnly, now, 'renew');
  return {
    ...s,
    clientId: `sigil-doctor-${randomBytes(6).toString('hex')}`,
    joined: !s.responseId.startsWith('bootstrap/'),
  };
}

async function openTransport(ctx: ProbeContext, t: TransportConfig): Promise<IssuerTransport> {
  if (t.type === 'https') {
    const { HttpsIssuerClient } = await import('../../transport/https/client.js');
    // No stored root: the pin is checked against what the issuer presents today.
    return new HttpsIssuerClient({ url: t.url, pin: ctx.cfg.caPin, timeoutMs: PROBE_TIMEOUT_MS });
  }
  const [{ MqttIssuerClient }, { readFileSync }, state] = await Promise.all([
    import('../../transport/mqtt/client.js'),
    import('node:fs'),
    ctx.state().catch(() => undefined),
  ]);
  const session = await doctorMqttSession(t, state, ctx.now);
  return new MqttIssuerClient({
    url: t.url,
    pin: ctx.cfg.caPin,
    timeoutMs: PROBE_TIMEOUT_MS,
    connectTimeoutMs: PROBE_TIMEOUT_MS - 500,
    sessionExpiryS: 0,
    ...(t.caFile ? { brokerCa: readFileSync(t.caFile, 'utf8') } : {}),
    session: () => session,
  });
}

export async function probeIssuer(ctx: ProbeContext, t: TransportConfig): Promise<IssuerProbe> {
  const client = await openTransport(ctx, t);
  ctx.onClose(() => client.close());
  const rootPem = await client.ensureRoot();
  const sentAt = Date.now();
  const body = await client.bundle();
  const receivedAt = Date.now();
  let issuedAt: unknown;
  try {
    issuedAt = (
      JSON.parse(b64u.decode(parseJws(body, 'response_invalid').jws.payload).toString('utf8')) as {
        issued_at?: unknown;
      }
    ).issued_at;
  } catch (e) {
    throw e instanceof SigilError ? e : new SigilError('response_invalid', 'the bundle response payload is not JSON');
  }
  if (typeof issuedAt !== 'number' || !Number.isFinite(issuedAt))
    throw new SigilError('response_invalid', 'the bundle response has no issued_at');
  const verified = verifyResponse(body, 'bundle', null, rootPem, new Date(issuedAt));
  return { rootPem, issuedAt, sentAt, receivedAt, trustDomain: verified.result.trust_domain };
}
