/**
 * The agent's way to the issuer: the configured transports in order of preference, with
 * failover. Within one attempt, a retryable failure on transport i (cannot connect, timed out,
 * broker refused, unverifiable answer) tries transport i+1 with the *same* outbox entry — same
 * bytes, same request id — so an issuer that already answered over i answers i+1 from its
 * idempotency record. A verified refusal (not retryable) stops: another carrier would carry
 * the same answer.
 *
 * Every answer is verified here against the pinned root, whichever transport brought it, by
 * the link's own ResponseVerifier (its cache of verified issuer chains belongs to this agent).
 * Every operation goes this way — join, renew and credential (./credential-client.ts) — so each
 * works over every configured transport.
 */
import { readFileSync } from 'node:fs';
import { randomBytes, X509Certificate } from 'node:crypto';
import { SigilError, toSigilError } from '../errors.js';
import { parseJws, x5cDers, type Jws } from '../protocol/jws.js';
import { serialKey } from '../pki/serial-key.js';
import type { CredentialResult } from '../protocol/credential-messages.js';
import type { BundleResult, IdentityOp, IdentityResult } from '../protocol/messages.js';
import type { WorkloadResult } from '../protocol/workload-messages.js';
import { requestHash } from '../protocol/request-hash.js';
import { ResponseVerifier } from '../protocol/response-verifier.js';
import { HttpsIssuerClient } from '../transport/https/client.js';
import { MqttIssuerClient, type MqttSession } from '../transport/mqtt/client.js';
import { bootstrapResponseId, type MqttOp } from '../transport/mqtt/topics.js';
import type { IssuerTransport, PostHooks, RequestOp, TransportKind } from '../transport/types.js';
import type { AgentConfig, MqttBootstrapConfig, TransportConfig } from './config.js';
import type { AgentState, OutboxEntry } from './state/index.js';
import { CLIENT_CERT_MARGIN_MS, mqttClientCert } from './transport-cert.js';

export const MQTT_BOOTSTRAP_SETTING = 'mqtt.bootstrap_id';

export interface TransportStats {
  kind: string;
  url: string;
  failures: number;
  successes: number;
  /** MQTT: answers that matched no waiting request (late, duplicated, or not ours). */
  unmatched?: number;
}

function readSecret(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new SigilError('config_invalid', `${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
}

/**
 * Who the agent is on an MQTT broker for a request of `op`. Joined, for anything but a join:
 * client id `sigil-<instance>`, responses on sigil/v1/resp/<instance> — the only topic the issuer
 * answers its renewals on (transport/mqtt/answer-topic.ts) — and over mqtts a client certificate
 * whose CN is the instance id: the SVID itself for a software key, the MQTT transport certificate
 * for a TPM or PKCS#11 key (./transport-cert.ts), while it has CLIENT_CERT_MARGIN_MS left (over
 * plain mqtt:// no certificate expires, so no margin). Otherwise, and for every join, the
 * bootstrap identity (joins are answered only on bootstrap topics), with a response id persisted
 * in the agent state so that a join resent after a crash listens where its queued answer waits.
 * A renewal in the certificate's last CLIENT_CERT_MARGIN_MS over mqtts goes out on the bootstrap
 * session and goes unanswered (a bootstrap login may not even publish it); the agent retries,
 * and after the expiry drops it and joins again (agent.ts).
 */
export function mqttSession(
  t: Extract<TransportConfig, { type: 'mqtt' }>,
  state: AgentState,
  now: () => number,
  op: MqttOp = 'renew',
): MqttSession {
  const tls = t.url.startsWith('mqtts:');
  const creds = (b: MqttBootstrapConfig | undefined): Partial<MqttSession> => {
    if (!b) return {};
    if ('username' in b)
      return { username: b.username, password: readSecret(b.passwordFile, 'bootstrap.password_file') };
    return { cert: readSecret(b.certFile, 'bootstrap.cert'), key: readSecret(b.keyFile, 'bootstrap.key') };
  };
  const id = op === 'join' ? undefined : state.getIdentity();
  if (id && (!tls || id.notAfter - CLIENT_CERT_MARGIN_MS > now())) {
    const base = { clientId: `sigil-${id.instanceId}`, responseId: id.instanceId };
    if (!tls) return { ...base, ...creds(t.bootstrap) };
    const client = mqttClientCert(id, now());
    if (client) return { ...base, cert: client.cert, key: client.key };
  }
  const bootId = state.getOrCreateSetting(MQTT_BOOTSTRAP_SETTING, () => randomBytes(12).toString('hex'));
  return {
    ...(t.bootstrap?.url ? { url: t.bootstrap.url } : {}),
    clientId: `sigil-b-${bootId}`,
    responseId: bootstrapResponseId(bootId),
    bootstrap: true,
    ...creds(t.bootstrap),
  };
}

export function buildTransports(cfg: AgentConfig, state: AgentState, now: () => number): IssuerTransport[] {
  const root = state.getBundle()?.rootsPem[0];
  return cfg.transports.map((t): IssuerTransport => {
    if (t.type === 'https')
      return new HttpsIssuerClient({
        url: t.url,
        pin: cfg.caPin,
        timeoutMs: t.timeoutMs,
        ...(root ? { rootPem: root } : {}),
      });
    return new MqttIssuerClient({
      url: t.url,
      pin: cfg.caPin,
      timeoutMs: t.timeoutMs,
      sessionExpiryS: t.sessionExpiryS,
      ...(t.connectTimeoutMs !== undefined ? { connectTimeoutMs: t.connectTimeoutMs } : {}),
      ...(t.reconnectSpreadMs !== undefined ? { reconnectSpreadMs: t.reconnectSpreadMs } : {}),
      ...(root ? { rootPem: root } : {}),
      ...(t.caFile ? { brokerCa: readSecret(t.caFile, 'ca_file') } : {}),
      session: (op) => mqttSession(t, state, now, op),
    });
  });
}

export class IssuerLink {
  private readonly counts: Array<{ failures: number; successes: number }>;
  /** The transport used last (success or the last one tried). */
  lastUsed: IssuerTransport | undefined;
  /** Verifies every answer this link brings (and remembers the issuer chains it verified). */
  readonly verifier = new ResponseVerifier();
  #onRefused: ((e: SigilError, signerLeafDer: Buffer | undefined) => void) | undefined;

  constructor(private readonly transports: IssuerTransport[]) {
    if (transports.length === 0) throw new TypeError('IssuerLink needs at least one transport');
    this.counts = transports.map(() => ({ failures: 0, successes: 0 }));
  }

  /**
   * Refuse everything signed, and every HTTPS server certified, under an intermediate the pinned
   * root revoked (`fn`: the agent's kept root CRL, ./root-crl-state.ts): the answers' signer
   * chains (the verifier) and the HTTPS transports' TLS chains, whose error bodies are unsigned.
   * MQTT's TLS is the broker's own; its answers are all signed.
   */
  revocations(fn: () => ReadonlySet<string>): this {
    this.verifier.revocations(fn);
    for (const t of this.transports) if (t instanceof HttpsIssuerClient) t.refuseRevoked(fn);
    return this;
  }

  /**
   * Told of each refusal of a `credential` or `workload` request, with the leaf of the identity
   * that signed it (an `issuer_revoked` one makes that identity's renewal due now: agent.ts).
   */
  onRefused(fn: (e: SigilError, signerLeafDer: Buffer | undefined) => void): this {
    this.#onRefused = fn;
    return this;
  }

  #told(err: unknown, envelope: Jws): never {
    const e = toSigilError(err);
    if (!e.retryable && this.#onRefused) {
      let leaf: Buffer | undefined;
      try {
        leaf = x5cDers(parseJws(envelope).header)[0];
      } catch {
        leaf = undefined;
      }
      this.#onRefused(e, leaf);
    }
    throw err;
  }

  /** Per-transport counters since this process started (for metrics). */
  get stats(): TransportStats[] {
    return this.transports.map((t, i) => ({
      kind: t.kind,
      url: t.url,
      ...this.counts[i]!,
      ...(t instanceof MqttIssuerClient ? { unmatched: t.unmatched } : {}),
    }));
  }

  /** The pinned root, from the first transport that can establish it. */
  async root(): Promise<string> {
    return this.each(async (t) => t.ensureRoot(), false);
  }

  /** Whether a transport of this kind is configured. */
  has(kind: TransportKind): boolean {
    return this.transports.some((t) => t.kind === kind);
  }

  /**
   * Send an outbox entry and verify the answer; a signed refusal is thrown as its SigilError.
   * `only`: use transports of that kind alone (an expired identity's renewal: agent.ts).
   */
  async send(
    entry: OutboxEntry,
    rootPem: string,
    now: () => number,
    hooks?: PostHooks,
    only?: TransportKind,
  ): Promise<IdentityResult> {
    const op = entry.op as IdentityOp;
    const envelope = JSON.parse(entry.body) as Jws;
    const hash = requestHash(envelope);
    return this.each(
      async (t) => {
        const body = await t.post(op, envelope, hooks);
        return this.verifier.responseOrError(body, op, entry.requestId, hash, rootPem, new Date(now())).result;
      },
      true,
      only,
    );
  }

  /**
   * Send a signed `credential` request and verify its answer (a signed refusal is thrown as its
   * SigilError), with the same failover as renewals: the same envelope on the next transport.
   */
  async credential(envelope: Jws, requestId: string, rootPem: string, now: () => number): Promise<CredentialResult> {
    const hash = requestHash(envelope);
    // Known only to agents that send credential requests (response-verifier.ts says why).
    this.verifier.know({ credential: (await import('../protocol/credential-messages.js')).credentialResponseSchema });
    return this.each(async (t) => {
      const body = await t.post('credential', envelope);
      return this.verifier.responseOrError(body, 'credential', requestId, hash, rootPem, new Date(now())).result;
    }).catch((e: unknown) => this.#told(e, envelope));
  }

  /**
   * Send a signed `workload` request (agent/workload/issuer-client.ts) and verify its answer, with
   * the failover of {@link credential}.
   */
  async workload(envelope: Jws, requestId: string, rootPem: string, now: () => number): Promise<WorkloadResult> {
    const hash = requestHash(envelope);
    this.verifier.know({ workload: (await import('../protocol/workload-messages.js')).workloadResponseSchema });
    return this.each(async (t) => {
      const body = await t.post('workload', envelope);
      return this.verifier.responseOrError(body, 'workload', requestId, hash, rootPem, new Date(now())).result;
    }).catch((e: unknown) => this.#told(e, envelope));
  }

  /** The issuer's signed `bundle` answer, verified against the pinned root (the Workload API's bundles). */
  async bundle(rootPem: string, now: () => number): Promise<BundleResult> {
    return (await this.signedBundle(rootPem, now)).result;
  }

  /**
   * The same, with the serials of the certificates its signer chain carries (x5c below the root;
   * pki/serial-key.ts form): a root CRL this answer brings must not list the issuer that served
   * it (agent/root-crl-state.ts).
   */
  async signedBundle(rootPem: string, now: () => number): Promise<{ result: BundleResult; signerSerials: string[] }> {
    return this.each(async (t) => {
      const body = await t.bundle();
      const result = this.verifier.responseOrError(body, 'bundle', null, null, rootPem, new Date(now())).result;
      const { header } = parseJws(body, 'response_invalid');
      return { result, signerSerials: x5cDers(header).map((d) => serialKey(new X509Certificate(d).serialNumber)) };
    });
  }

  /**
   * Send an envelope and return the raw answer body; the caller verifies it (join challenge
   * rounds, whose answers are either a challenge or an identity: join/exchange.ts).
   */
  async postRaw(op: RequestOp, envelope: Jws, hooks?: PostHooks): Promise<unknown> {
    return this.each(async (t) => t.post(op, envelope, hooks));
  }

  /** Try each transport in order; `countSuccess`: a success is an answered request (not a cached root). */
  private async each<T>(fn: (t: IssuerTransport) => Promise<T>, countSuccess = true, only?: TransportKind): Promise<T> {
    const failures: string[] = [];
    let last: SigilError | undefined;
    for (let i = 0; i < this.transports.length; i++) {
      const t = this.transports[i]!;
      if (only !== undefined && t.kind !== only) continue;
      this.lastUsed = t;
      try {
        const r = await fn(t);
        if (countSuccess) this.counts[i]!.successes++;
        return r;
      } catch (err) {
        const e = toSigilError(err);
        this.counts[i]!.failures++;
        if (!e.retryable) throw e;
        last = e;
        failures.push(`${t.url}: ${e.message}`);
      }
    }
    if (!last)
      throw new SigilError('issuer_unreachable', `no ${only ?? ''} transport is configured`.replace('  ', ' '));
    if (failures.length === 1) throw last;
    throw new SigilError(last.code, `no transport reached the issuer — ${failures.join('; ')}`, {
      cause: last,
      ...(last.retryAfterMs !== undefined ? { retryAfterMs: last.retryAfterMs } : {}),
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.transports.map(async (t) => t.close()));
  }
}
