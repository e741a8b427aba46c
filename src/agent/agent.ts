/**
 * The agent: join once, renew at ~1/2 of the lifetime, keep serving the last valid identity
 * through outages and restarts (ARCHITECTURE principle 5).
 *
 * Crash safety rests on the outbox: a request is persisted before it is sent and removed in
 * the same transaction that stores its answer. After a crash the same bytes (same request id)
 * are sent again and the issuer answers idempotently, so a lost response never burns a
 * generation and never locks the instance.
 */
import { SigilError, toSigilError } from '../errors.js';
import { TokenJoinAgent } from '../join/token/agent.js';
import type { JoinMethodAgent } from '../join/types.js';
import { loadSigner, parseKeyRef } from '../keystore/index.js';
import type { Jws } from '../protocol/jws.js';
import type { IdentityResult } from '../protocol/messages.js';
import { verifyResponse } from '../protocol/verify-response.js';
import { HttpsIssuerClient } from '../transport/https/client.js';
import type { Logger } from '../util/log.js';
import type { AgentConfig } from './config.js';
import { writeAgentMetrics } from './metrics.js';
import { identityOutput } from './outputs/identity.js';
import type { OutputDestination } from './outputs/types.js';
import { buildJoinRequest, buildRenewRequest, type BuiltRequest } from './requests.js';
import { backoffDelay, renewAt } from './schedule.js';
import { openAgentState, type AgentState, type Identity, type OutboxEntry } from './state/index.js';

export type TickOutcome =
  | { action: 'none'; identity: Identity }
  | { action: 'joined' | 'renewed'; identity: Identity; ttlClamped: boolean; requestedTtlS: number }
  | { action: 'failed'; error: SigilError; identity: Identity | undefined };

export interface AgentDeps {
  now?: () => number;
  rand?: () => number;
}

export class Agent {
  readonly state: AgentState;
  private readonly client: HttpsIssuerClient;
  private readonly method: JoinMethodAgent;
  private readonly outputs: OutputDestination[];
  private readonly now: () => number;
  private readonly rand: () => number;

  constructor(readonly cfg: AgentConfig, private readonly log: Logger, deps: AgentDeps = {}) {
    this.now = deps.now ?? Date.now;
    this.rand = deps.rand ?? Math.random;
    this.method = new TokenJoinAgent(cfg.join.token);
    this.outputs = cfg.outputs.map((o) => identityOutput(o.path, { uid: o.uid, gid: o.gid }));
    this.state = openAgentState(cfg.dataDir);
    const pinned = this.state.getIssuerPin();
    if (pinned && pinned.pin !== cfg.caPin) {
      throw new SigilError('pin_mismatch', `${cfg.dataDir} was pinned to issuer CA ${pinned.pin} but the config says ${cfg.caPin}; if the CA really changed, remove ${cfg.dataDir}/agent.db and join again`);
    }
    const bundle = this.state.getBundle();
    this.client = new HttpsIssuerClient({ url: cfg.issuer, pin: cfg.caPin, ...(bundle?.rootsPem[0] ? { rootPem: bundle.rootsPem[0] } : {}) });
  }

  /** Write outputs from the identity cached in SQLite (e.g. right after a restart while offline). */
  serveCached(): Identity | undefined {
    const id = this.state.getIdentity();
    if (id) this.writeOutputs(id);
    return id;
  }

  private writeOutputs(id: Identity): void {
    const ref = parseKeyRef(id.keyRef);
    const bundle = this.state.getBundle();
    const material = {
      certPem: id.chainPem.join(''),
      ...(ref.storage === 'software' ? { keyPem: ref.pkcs8Pem } : {}),
      bundlePem: (bundle?.rootsPem ?? []).join(''),
    };
    for (const o of this.outputs) o.write(material);
  }

  /** Send one persisted request and, on success, commit its answer and write outputs. */
  private async send(entry: OutboxEntry): Promise<{ identity: Identity; result: IdentityResult }> {
    const op = entry.op as 'join' | 'renew';
    const body = await this.client.post(op, JSON.parse(entry.body) as Jws);
    const root = await this.client.ensureRoot();
    const res = verifyResponse(body, op, entry.requestId, root, new Date(this.now()));
    const r = res.result;
    if (!entry.pendingKeyRef) throw new SigilError('internal', `outbox entry ${entry.requestId} has no key reference`);
    const now = this.now();
    const identity: Identity = {
      instanceId: r.instance_id,
      spiffeId: r.spiffe_id,
      bot: r.bot,
      chainPem: r.chain,
      keyRef: entry.pendingKeyRef,
      keyStorage: 'software',
      exportable: true,
      serial: r.serial,
      notBefore: r.not_before,
      notAfter: r.not_after,
      generation: r.generation,
      joinMethod: this.method.name,
      issuedAt: now,
      renewAfter: renewAt(now, r.not_after, this.cfg.renewFraction, this.rand),
    };
    this.state.saveBundle({ rootsPem: r.bundle, updatedAt: now });
    this.state.completeRenewal(entry.requestId, identity, now);
    this.writeOutputs(identity);
    return { identity, result: r };
  }

  private async newRequest(current: Identity | undefined, now: number): Promise<BuiltRequest> {
    const ttl = this.cfg.ttlS !== undefined ? { ttlS: this.cfg.ttlS } : {};
    if (current && current.notAfter > now) {
      return buildRenewRequest({ current: loadSigner(parseKeyRef(current.keyRef)), chainPem: current.chainPem, now, ...ttl });
    }
    return buildJoinRequest({ method: this.method.name, evidence: (c) => this.method.evidence(c), now, ...ttl });
  }

  /**
   * One pass: resend a pending request if there is one; otherwise join (no identity, or it
   * expired) or renew (due, or `force`). Never throws: failures are recorded and returned.
   */
  async tick(opts: { force?: boolean } = {}): Promise<TickOutcome> {
    const now = this.now();
    const current = this.state.getIdentity();
    try {
      let entry = this.state.getOutbox()[0];
      const due = entry !== undefined || !current || current.notAfter <= now || now >= current.renewAfter || opts.force === true;
      if (!due) return { action: 'none', identity: current! };
      await this.client.ensureRoot();
      this.state.pinIssuer(this.cfg.caPin, now);
      if (!this.state.getBundle() && this.client.root) this.state.saveBundle({ rootsPem: [this.client.root], updatedAt: now });
      if (!entry) {
        const built = await this.newRequest(current, now);
        this.state.putOutbox(built.entry);
        entry = built.entry;
      }
      const { identity, result } = await this.send(entry);
      this.state.setStatus({ consecutiveFailures: 0, lastError: null, lastAttemptAt: now, nextAttemptAt: identity.renewAfter, transport: 'https' });
      this.log.info({ op: entry.op, serial: identity.serial, spiffe_id: identity.spiffeId, not_after: new Date(identity.notAfter).toISOString(), ttl_clamped: result.ttl_clamped }, entry.op === 'join' ? 'joined' : 'renewed');
      this.updateMetrics();
      return { action: entry.op === 'join' ? 'joined' : 'renewed', identity, ttlClamped: result.ttl_clamped, requestedTtlS: result.requested_ttl_s };
    } catch (err) {
      return { action: 'failed', error: this.recordFailure(err, current, now), identity: current };
    }
  }

  private recordFailure(err: unknown, current: Identity | undefined, now: number): SigilError {
    let e = toSigilError(err);
    if (e.code === 'internal') this.log.error({ err }, 'internal error in agent');
    const pending = this.state.getOutbox()[0];
    if (pending && !e.retryable) {
      // The issuer refused this exact request; resending it can only fail again. A new request
      // (new id, new timestamp) is built on the next attempt.
      this.state.deleteOutbox(pending.requestId);
    }
    const expired = !current || current.notAfter <= now;
    if (expired && !this.method.canReattest && ['token_reused', 'token_expired', 'token_invalid', 'cert_expired'].includes(e.code) && current) {
      e = new SigilError('reattest_required', `the identity expired and the ${this.method.name} join method cannot re-attest by itself (${e.code}); create a new token with \`sigil ctl token create --bot ${current.bot}\`, put it in join.token, and run \`sigil agent run --once --config ${this.cfg.source}\``);
    }
    const st = this.state.getStatus();
    const failures = st.consecutiveFailures + 1;
    const next = now + backoffDelay(failures - 1, this.rand);
    this.state.setStatus({ consecutiveFailures: failures, lastError: `${e.code}: ${e.message}`, lastAttemptAt: now, nextAttemptAt: next, transport: 'https' });
    this.state.appendHistory({ at: now, op: pending?.op ?? (current ? 'renew' : 'join'), outcome: 'error', code: e.code, message: e.message.slice(0, 500) });
    this.log.warn({ code: e.code, failures, retry_in_ms: next - now }, `attempt failed: ${e.message}`);
    this.updateMetrics();
    return e;
  }

  private updateMetrics(): void {
    if (this.cfg.metrics.textfile) {
      try {
        writeAgentMetrics(this.cfg.metrics.textfile, this.state, this.now());
      } catch (e) {
        this.log.warn({ err: e }, 'could not write the metrics textfile');
      }
    }
  }

  /** When the daemon should wake next. */
  nextWake(): number {
    const now = this.now();
    const st = this.state.getStatus();
    const id = this.state.getIdentity();
    if (st.consecutiveFailures > 0 && st.nextAttemptAt) return st.nextAttemptAt;
    if (this.state.getOutbox().length) return now;
    return id ? Math.max(now, id.renewAfter) : now;
  }

  /** The daemon: serve what we have, then renew forever until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const cached = this.serveCached();
    if (cached) this.log.info({ serial: cached.serial, not_after: new Date(cached.notAfter).toISOString() }, 'serving cached identity');
    this.updateMetrics();
    while (!signal.aborted) {
      if (this.now() >= this.nextWake()) await this.tick();
      const wait = Math.max(250, this.nextWake() - this.now());
      await sleep(Math.min(wait, 60_000), signal);
    }
  }

  close(): void {
    this.client.close();
    this.state.close();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
