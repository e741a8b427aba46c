/**
 * The agent: join once, renew at ~1/2 of the lifetime, keep serving the last valid identity
 * through outages and restarts (ARCHITECTURE principle 5).
 *
 * Crash safety rests on the outbox: a request is persisted before it is sent and removed in
 * the same transaction that stores its answer. After a crash the same bytes (same request id)
 * are sent again — over whichever transport works — and the issuer answers idempotently, so a
 * lost response never burns a generation and never locks the instance. test-hooks.ts can kill
 * the process at each step to prove it.
 */
import { SigilError, toSigilError } from '../errors.js';
import { runJoinExchange } from '../join/exchange.js';
import { loadSigner, parseKeyRef, serializeKeyRef, TpmAccesses, withTcti, type Signer } from '../keystore/index.js';
import type { IdentityResult } from '../protocol/messages.js';
import type { IssuerTransport, TransportKind } from '../transport/types.js';
import type { KeyStorage } from '../keystore/signer.js';
import type { Logger } from '../util/log.js';
import type { AgentConfig } from './config.js';
import {
  joinMethodFor,
  loadJoinMethod,
  reattestHint,
  USED_CREDENTIAL_SETTING,
  type AgentJoinMethod,
  type LoadedAgentJoinMethod,
} from './join-method.js';
import { checkIdentityAnswer } from './answer-check.js';
import { RENEW_NOW_SETTING, REVOKED_SERIAL_SETTING, TRUST_SEQUENCE_SETTING } from './credential-status.js';
import type { CredentialOutputs, OutputOutcome } from './credentials.js';
import { writeAgentMetrics } from './metrics.js';
import { checkOutputPaths } from './outputs/check-path.js';
import { identityOutput, SVID_TSS2_KEY_FILE } from './outputs/identity.js';
import { identityKeyPem } from './outputs/identity-key.js';
import { IdentityKeys } from './identity-keys.js';
import type { OutputDestination } from './outputs/types.js';
import { buildJoinRequest, buildRenewRequest, type BuiltRequest, type NewKey } from './requests.js';
import { renewalBinding } from '../attest/binding.js';
import type { RenewalProofs } from '../join/registry.js';

import { backoffDelay, renewAt } from './schedule.js';
import { openAgentState, type AgentState, type Identity, type OutboxEntry } from './state/index.js';
import {
  agentClock,
  attestEveryOverrideMs,
  crashPoint,
  duringOutput,
  trustCheckEveryOverrideMs,
} from './test-hooks.js';
import type { AttestSchedule } from './attest-schedule.js';
import type { TrustCheck } from './trust-check.js';
import { RootCrlState } from './root-crl-state.js';
import { fromPem } from '../pki/pem.js';
import { mqttsRenewalMarginWarning, newTransportKey, transportCertOf, wantsTransportCert } from './transport-cert.js';
import { buildTransports, IssuerLink } from './transports.js';
import type { WorkloadApiServer } from './workload/server.js';
import { isoTime } from '../util/iso-time.js';

/** Set when the issuer refused a renewal with `pcr_selection_changed`: the next attempt joins again. */
const REJOIN_SETTING = 'join.rejoin_requested';

export type TickOutcome =
  | { action: 'none'; identity: Identity }
  | { action: 'joined' | 'renewed'; identity: Identity; ttlClamped: boolean; requestedTtlS: number }
  | { action: 'failed'; error: SigilError; identity: Identity | undefined };

export interface AgentDeps {
  now?: () => number;
  rand?: () => number;
  /** An already opened state (the CLI opens it early to serve the cached identity). */
  state?: AgentState;
  /** Transports to use instead of those built from the config (tests). */
  transports?: IssuerTransport[];
  /**
   * Level of the "attempt failed" log line. The daemon warns (the log is all it has); a one-shot
   * command (`run --once`, `renew`) reports the failure itself as its error line, once.
   */
  failureLogLevel?: 'warn' | 'debug';
  /** The Workload API, already serving the cache (`sigil agent run`, workload/early-start.ts); run() attaches the issuer. */
  workloadApi?: { server: WorkloadApiServer; log: { setTarget(log: Logger): void } };
  /** The code the config names, loaded ({@link loadAgentModules}); absent: loaded at the first tick or run. */
  modules?: AgentModules;
}

/**
 * The code an agent's configuration names, imported before the agent is built: its join method's
 * (registry entry + load()), and agent/credentials.ts — jose, SSH, Kubernetes — only when there
 * are credential outputs. A token agent thus never loads the TPM stack, PKCS#11 or the outputs
 * (issue #19).
 */
export interface AgentModules {
  joinMethod: LoadedAgentJoinMethod;
  credentials: typeof import('./credentials.js') | undefined;
}

export async function loadAgentModules(cfg: AgentConfig): Promise<AgentModules> {
  const [joinMethod, credentials] = await Promise.all([
    loadJoinMethod(cfg),
    cfg.credentialOutputs.length > 0 ? import('./credentials.js') : undefined,
  ]);
  return { joinMethod, credentials };
}

/** Codes that, for a method that cannot re-attest, mean a person has to issue a new credential. */
const NEEDS_PERSON = new Set(['token_reused', 'token_expired', 'token_invalid', 'cert_expired', 'issuer_revoked']);

export class Agent {
  readonly state: AgentState;
  readonly link: IssuerLink;
  /** The root CRL the agent keeps (from the trust check's bundle answers). */
  readonly rootCrl: RootCrlState;
  /** Built in the constructor from deps.modules, else by {@link ready}. */
  private join!: AgentJoinMethod;
  private loading: Promise<void> | undefined;
  /** Makes identity keys where the config says and retires the ones nothing needs. */
  private readonly keys: IdentityKeys;
  /**
   * The TPMs this agent uses, one access per TCTI, handed to everything that touches them —
   * identity keys, the join method, credential outputs — so that their TPM operations queue
   * behind each other instead of colliding (keystore/tpm-access.ts).
   */
  private readonly tpm = new TpmAccesses();
  /** This process has made an identity attempt (identityWake: a new credential is tried at once, once). */
  private attempted = false;
  private mqttsMarginWarned = false;
  private readonly outputs: OutputDestination[];
  /** SSH, database, Kubernetes and JWT outputs, each on its own schedule (agent/credentials.ts). */
  credentials: CredentialOutputs | undefined;
  private readonly now: () => number;
  private readonly rand: () => number;
  private readonly failureLogLevel: 'warn' | 'debug';
  /** Joins and renewals ask for an MQTT transport certificate (./transport-cert.ts). */
  private readonly transportCert: boolean;
  /** The SPIFFE Workload API and SDS (`workload_api:`, ./workload/), while the daemon runs. */
  private workloadApi: WorkloadApiServer | undefined;
  private readonly earlyWorkloadApi: AgentDeps['workloadApi'];

  constructor(
    readonly cfg: AgentConfig,
    private readonly log: Logger,
    deps: AgentDeps = {},
  ) {
    this.now = deps.now ?? agentClock();
    this.rand = deps.rand ?? Math.random;
    this.failureLogLevel = deps.failureLogLevel ?? 'warn';
    this.earlyWorkloadApi = deps.workloadApi;
    try {
      // Before anything is sent: a join spent on outputs that cannot be written is lost (issue #12).
      checkOutputPaths(cfg);
    } catch (e) {
      deps.state?.close();
      throw e;
    }
    if (deps.modules) this.join = joinMethodFor(cfg, deps.modules.joinMethod, this.tpm);
    this.transportCert = wantsTransportCert(cfg);
    this.keys = new IdentityKeys(cfg, log, this.tpm, (key) => this.join.onKeyCreated?.(key));
    this.outputs = cfg.outputs.map((o) => identityOutput(o.path, { uid: o.uid, gid: o.gid }));
    this.state = deps.state ?? openAgentState(cfg.dataDir);
    const pinned = this.state.getIssuerPin();
    if (pinned && pinned.pin !== cfg.caPin) {
      this.state.close();
      throw new SigilError(
        'pin_mismatch',
        `${cfg.dataDir} was pinned to issuer CA ${pinned.pin} but the config says ${cfg.caPin}; if the CA really changed, remove ${cfg.dataDir}/agent.db and join again`,
      );
    }
    this.link = new IssuerLink(deps.transports ?? buildTransports(cfg, this.state, this.now));
    // Answers signed, and HTTPS servers certified, under an intermediate the root revoked are
    // refused (./root-crl-state.ts).
    this.rootCrl = new RootCrlState(this.state);
    this.link.revocations(() => this.rootCrl.revoked());
    this.link.onRefused((e, leaf) => {
      if (e.code === 'issuer_revoked') this.signerRefusedRevoked(leaf);
    });
    if (deps.modules) this.installCredentials(deps.modules);
  }

  private installCredentials(m: AgentModules): void {
    this.credentials = m.credentials?.createCredentialOutputs(
      this.cfg,
      this.state,
      this.log,
      this.now,
      this.link,
      this.tpm,
      this.failureLogLevel,
    );
  }

  /** Without deps.modules: load them once (rejects with the config error the constructor would have thrown). */
  private ready(): Promise<void> {
    if (this.join !== undefined) return Promise.resolve();
    this.loading ??= loadAgentModules(this.cfg).then((m) => {
      this.join = joinMethodFor(this.cfg, m.joinMethod, this.tpm);
      this.installCredentials(m);
    });
    return this.loading;
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
    // PKCS#8 for a software key, TSS2 PRIVATE KEY for a TPM key, nothing for PKCS#11.
    const keyPem = identityKeyPem(ref);
    const material = {
      certPem: id.chainPem.join(''),
      ...(keyPem !== undefined ? { keyPem, ...(ref.storage === 'tpm' ? { keyFile: SVID_TSS2_KEY_FILE } : {}) } : {}),
      bundlePem: (bundle?.rootsPem ?? []).join(''),
    };
    for (const o of this.outputs) o.write(material);
  }

  /** Send one persisted request and, on success, commit its answer and write outputs. */
  private async send(
    entry: OutboxEntry,
    root: string,
    only?: TransportKind,
  ): Promise<{ identity: Identity; result: IdentityResult }> {
    const r = await this.link.send(entry, root, this.now, { sent: () => crashPoint('after_send') }, only);
    crashPoint('after_response');
    return this.commit(entry, r, root);
  }

  /** A new identity key where the config says keys live (software, the join's TPM, a PKCS#11 token). */
  private newKey(): Promise<NewKey> {
    return this.keys.create();
  }

  /** The join method's fresh boot-state evidence bound to `binding`; undefined when the instance needs none. */
  private freshEvidence(binding: Buffer): Promise<Record<string, unknown> | undefined> {
    return this.join.freshEvidence?.(binding, this.state) ?? Promise.resolve(undefined);
  }

  /**
   * A renewal's key proof and boot-state evidence (issue #16: a quote bound to the request and
   * its new key). With the method's `renewalProofs` (tpm) one call makes both — the key proof is
   * asked for first, with the new key, and the evidence is that call's — else each its own.
   */
  private renewalProofHooks(): {
    attest: (key: Signer, requestId: string) => Promise<Record<string, unknown> | undefined>;
    evidence?: (requestId: string, spki: Buffer) => Promise<Record<string, unknown> | undefined>;
  } {
    const both = this.join.renewalProofs;
    const fresh = (requestId: string, spki: Buffer) => this.freshEvidence(renewalBinding(requestId, spki));
    if (!both)
      return {
        attest: (key, requestId) => this.attestNewKey(key, requestId),
        ...(this.join.freshEvidence ? { evidence: fresh } : {}),
      };
    let made: { requestId: string; spki: Buffer; proofs: Promise<RenewalProofs> } | undefined;
    return {
      attest: async (key, requestId) => {
        const spki = key.publicKeySpki();
        made = { requestId, spki, proofs: both(key, requestId, renewalBinding(requestId, spki), this.state) };
        return (await made.proofs).keyProof;
      },
      evidence: async (requestId, spki) =>
        made && made.requestId === requestId && made.spki.equals(spki)
          ? (await made.proofs).evidence
          : fresh(requestId, spki),
    };
  }

  /** The join method's proof of where a renewal's new key lives (tpm: TPM2_Certify by the AK of the last join). */
  private attestNewKey(key: Signer, requestId: string): Promise<Record<string, unknown> | undefined> {
    return this.join.renewalKeyProof?.(key, requestId, this.state) ?? Promise.resolve(undefined);
  }

  /**
   * A join with a challenge round (x509, tpm, azure: join/exchange.ts). Round 0 changes nothing
   * on the issuer; the envelope that answers a challenge is persisted in the outbox before it
   * is sent, so after a crash the same bytes are resent and answered idempotently.
   */
  private async joinWithChallenge(
    root: string,
  ): Promise<{ identity: Identity; result: IdentityResult; entry: OutboxEntry }> {
    let pendingKeyRef = '';
    let persisted: OutboxEntry | undefined;
    const transport = this.transportCert ? newTransportKey() : undefined;
    const transportEntry = transport ? { transportKeyPem: transport.pkcs8Pem } : {};
    const res = await runJoinExchange({
      method: this.join.method,
      // Made inside the first round (a TPM key on the same connection as the evidence).
      identity: async () => {
        const { signer, ref } = await this.newKey();
        pendingKeyRef = serializeKeyRef(ref);
        return signer;
      },
      rootPem: () => root,
      verifier: this.link.verifier,
      now: this.now,
      ...(this.cfg.ttlS !== undefined ? { ttlS: this.cfg.ttlS } : {}),
      ...(transport ? { transportKey: transport.signer } : {}),
      send: async (envelope, step) => {
        if (step.round >= 1) {
          // Same request id, new timestamp and evidence: replace the earlier round's entry.
          if (persisted) this.state.deleteOutbox(persisted.requestId);
          persisted = {
            requestId: step.requestId,
            op: 'join',
            body: JSON.stringify(envelope),
            createdAt: this.now(),
            pendingKeyRef,
            ...transportEntry,
          };
          crashPoint('before_persist');
          this.state.putOutbox(persisted);
          crashPoint('after_persist');
        }
        return this.link.postRaw('join', envelope, { sent: () => crashPoint('after_send') });
      },
    });
    crashPoint('after_response');
    // The method's after-join hook (tpm: keep this join's AK; renewals prove their new keys with it).
    this.join.onJoined?.(res.requestId, this.state);
    const entry = persisted ?? {
      requestId: res.requestId,
      op: 'join',
      body: JSON.stringify(res.envelope),
      createdAt: this.now(),
      pendingKeyRef,
      ...transportEntry,
    };
    if (!persisted) this.state.putOutbox(entry);
    return { ...this.commit(entry, res.payload.result, root), entry };
  }

  /** Store an answered request's identity (one transaction with the outbox) and write outputs. */
  private commit(entry: OutboxEntry, r: IdentityResult, root: string): { identity: Identity; result: IdentityResult } {
    if (!entry.pendingKeyRef) throw new SigilError('internal', `outbox entry ${entry.requestId} has no key reference`);
    const now = this.now();
    // Ours? Our key, and for a renewal our instance; its chain to the pinned root and a bundle of
    // that root (./answer-check.ts) — else nothing is stored.
    checkIdentityAnswer(entry.op === 'renew' ? 'renew' : 'join', entry.body, r, this.state.getIdentity(), {
      rootPem: root,
      caPin: this.cfg.caPin,
      at: new Date(now),
    });
    // Where the key is as the agent knows it; the issuer records only what it can verify.
    const key = this.keys.facts(entry.pendingKeyRef);
    const transport = transportCertOf(entry.transportKeyPem, r, this.log);
    const identity: Identity = {
      instanceId: r.instance_id,
      spiffeId: r.spiffe_id,
      bot: r.bot,
      chainPem: r.chain,
      keyRef: entry.pendingKeyRef,
      keyStorage: key.keyStorage,
      exportable: key.exportable,
      // What the issuer recorded (it proved hardware residency, or recorded software/exportable).
      issuerKeyStorage: r.key_storage as KeyStorage,
      issuerExportable: r.exportable,
      serial: r.serial,
      notBefore: r.not_before,
      notAfter: r.not_after,
      generation: r.generation,
      joinMethod: this.join.method.name,
      issuedAt: now,
      renewAfter: renewAt(now, r.not_after, this.cfg.renewFraction, this.rand),
      ...(transport ? { transport } : {}),
    };
    // The issuer has accepted the credential, so it is spent whatever happens next.
    if (entry.op === 'join' && this.join.singleUseCredential)
      this.state.setSetting(USED_CREDENTIAL_SETTING, this.join.singleUseCredential);
    this.state.saveBundle({ rootsPem: r.bundle, updatedAt: now });
    // A key rotation on the issuer: the ssh outputs' trust files are due (credentials.ts). Only a
    // rise is taken (as by the trust check, ./trust-check.ts): a peer issuer that has not read a
    // step yet, or a stored answer replayed from before it, must not take it back — the outputs
    // would be written with the withdrawn CA again (review of the trust check). Written only when
    // it rose: a steady renewal adds no write.
    if (r.trust_sequence !== undefined && r.trust_sequence > Number(this.state.getSetting(TRUST_SEQUENCE_SETTING) ?? 0))
      this.state.setSetting(TRUST_SEQUENCE_SETTING, String(r.trust_sequence));
    this.state.completeRenewal(entry.requestId, identity, now);
    // The renewal's quote (if it carried one) was accepted: the method keeps its counters (issue #16).
    if (entry.op === 'renew') this.join.onAttestationAccepted?.(this.state);
    duringOutput(() => this.writeOutputs(identity));
    return { identity, result: r };
  }

  private async newRequest(current: Identity | undefined, now: number): Promise<BuiltRequest> {
    const ttl = this.cfg.ttlS !== undefined ? { ttlS: this.cfg.ttlS } : {};
    if (current && current.notAfter > now && !this.revoked(current) && this.join.method.rejoinOnRenew !== true) {
      const signer = loadSigner(withTcti(parseKeyRef(current.keyRef), this.cfg.tpmTcti), { tpm: this.tpm });
      try {
        return await buildRenewRequest({
          current: signer,
          chainPem: current.chainPem,
          now,
          ...ttl,
          newKey: () => this.newKey(),
          ...this.renewalProofHooks(),
          transport: this.transportCert,
        });
      } finally {
        // A PKCS#11 signer holds a session on the token; the next renewal opens the key again.
        if (signer.storage === 'pkcs11') signer.close?.();
      }
    }
    const method = this.join.method;
    return buildJoinRequest({
      method: method.name,
      evidence: (c) => method.evidence(c),
      now,
      ...ttl,
      newKey: () => this.newKey(),
      transport: this.transportCert,
    });
  }

  /**
   * Whether this identity was issued under a revoked intermediate: the issuer refused its renewal
   * so, or the root CRL the agent keeps lists that intermediate (./root-crl-state.ts).
   */
  private revoked(id: Identity): boolean {
    return this.state.getSetting(REVOKED_SERIAL_SETTING) === id.serial || this.rootCrl.listsIssuerOf(id);
  }

  /**
   * A credential, workload or attest request was refused `issuer_revoked`: the identity that
   * signed it must renew now — the renewal's refusal, if it comes, ends it (re-join, or a new
   * token) — instead of at its renewal time, hours away. Not ended here: such a refusal over
   * HTTPS is vouched for by TLS alone, and the renewal is the one question about this identity
   * the agent already trusts that far. Only that identity: a renewal may have replaced it while
   * the request was out. Persisted, so that a cron'd agent's next pass renews. Never throws.
   */
  private signerRefusedRevoked(signerLeafDer: Buffer | undefined): void {
    try {
      const current = this.state.getIdentity();
      if (!current || !signerLeafDer || this.revoked(current) || this.renewNow(current)) return;
      if (!fromPem(current.chainPem[0]!, 'CERTIFICATE').equals(signerLeafDer)) return;
      this.state.setSetting(RENEW_NOW_SETTING, current.serial);
      this.log[this.failureLogLevel](
        { serial: current.serial },
        'a request was refused: the intermediate CA of this identity was revoked; renewing now',
      );
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'could not record the refusal');
    }
  }

  /** Whether a refusal outside a renewal made this identity's renewal due now (signerRefusedRevoked). */
  private renewNow(id: Identity): boolean {
    return this.state.getSetting(RENEW_NOW_SETTING) === id.serial;
  }

  /**
   * After an expiry a method that cannot re-attest may only join again with a *new* credential;
   * with the spent one there is no point asking the issuer (and no issuer may be reachable).
   */
  private checkCanRejoin(expired: Identity): void {
    if (this.singleUseCredential() === 'spent')
      throw new SigilError(
        'reattest_required',
        reattestHint(this.join.method.name, expired.bot, this.cfg.source, this.revoked(expired)),
      );
  }

  /**
   * The configured join credential of a method that cannot re-attest: `spent` by the last
   * successful join, or `fresh` (a person put a new one in); undefined for other methods.
   */
  private singleUseCredential(): 'spent' | 'fresh' | undefined {
    const cred = this.join.singleUseCredential;
    if (this.join.method.canReattest || cred === undefined) return undefined;
    return this.state.getSetting(USED_CREDENTIAL_SETTING) === cred ? 'spent' : 'fresh';
  }

  /**
   * `sigil agent run --once` (cron): {@link tick}, then the daemon's trust check when it is due
   * (the schedule is kept in the state, so a cron'd agent checks at most every
   * `trust_check_every`; ./trust-check.ts runOnePass) — unless the tick joined (the next pass) or
   * found the issuer unreachable. A risen trust sequence re-issues the ssh/jwt outputs in the same pass. Without
   * it a cron'd agent followed a key rotation only at its next renewal and never learned the root
   * CRL. Never throws.
   */
  async once(): Promise<TickOutcome & { credentials?: OutputOutcome[] }> {
    const outcome = await this.tick();
    // The same issuer over the same transports: the check would only wait out their timeouts again.
    if (outcome.action === 'failed' && outcome.error.code === 'issuer_unreachable') return outcome;
    // A join's answer carries the trust sequence; the check (and the root CRL) is the next pass's.
    if (outcome.action === 'joined') return outcome;
    const current = this.state.getIdentity();
    const wasRevoked = current !== undefined && this.revoked(current);
    const rose = (await (await this.trustCheck())?.runOnePass()) === true;
    // The check brought a root CRL that lists this identity's intermediate: it is over now — join
    // again (or say a new token is needed) in this pass, not at the next.
    if (current && !wasRevoked && this.revoked(current)) return this.tick();
    if (!rose) return outcome;
    // The sequence rose: the outputs it made due, in this pass (the others are as tick left them).
    const again = (await this.credentials?.refresh()) ?? [];
    const credentials = (outcome.credentials ?? again).map((c, i) =>
      again[i] && again[i].action !== 'none' ? again[i] : c,
    );
    return credentials.length > 0 ? { ...outcome, credentials } : outcome;
  }

  /**
   * One pass: resend a pending request if there is one; otherwise join (no identity, or it
   * expired) or renew (due, or `force`). Never throws: failures are recorded and returned.
   */
  async tick(opts: { force?: boolean } = {}): Promise<TickOutcome & { credentials?: OutputOutcome[] }> {
    await this.ready();
    const pendingAtStart = this.state.getOutbox().flatMap((e) => (e.pendingKeyRef ? [e.pendingKeyRef] : []));
    // A replaced key still on the token goes first: a renewal now would make 'previous' forget it.
    this.keys.retireReplaced(this.state);
    const outcome = await this.tickIdentity(opts);
    // Workload SVIDs are asked for with this identity: the Workload API's sync uses a new one at
    // once instead of waiting out the backoff of its attempts without it (issue #17).
    if (outcome.action === 'joined' || outcome.action === 'renewed')
      this.workloadApi?.agentIdentityChanged(outcome.action);
    // Only now, with the new identity committed (or the request settled), may old keys go.
    this.keys.retire(this.state, pendingAtStart);
    // Then every credential output that is due, with the identity just made current. Never throws.
    const credentials = await this.credentials?.refresh();
    return credentials && credentials.length > 0 ? { ...outcome, credentials } : outcome;
  }

  private async tickIdentity(opts: { force?: boolean }): Promise<TickOutcome> {
    const now = this.now();
    const current = this.state.getIdentity();
    try {
      let entry: OutboxEntry | undefined = this.state.getOutbox()[0];
      const expired = !current || current.notAfter <= now || this.revoked(current);
      const due =
        entry !== undefined || expired || now >= current.renewAfter || this.renewNow(current) || opts.force === true;
      if (!due) return { action: 'none', identity: current };
      this.attempted = true;
      if (!entry && current && expired) this.checkCanRejoin(current);
      const root = await this.link.root();
      this.state.pinIssuer(this.cfg.caPin, now);
      if (!this.state.getBundle()) this.state.saveBundle({ rootsPem: [root], updatedAt: now });
      if (entry?.op === 'renew' && expired) {
        const answered = await this.resendExpiredRenewal(entry, root, now);
        if (answered) return answered;
        entry = undefined;
        // Without its queued renewal, an agent that cannot re-attest needs a fresh credential.
        if (current) this.checkCanRejoin(current);
      }
      // The issuer asked for a new join (issue #16: the rule's PCR selection changed since ours).
      const rejoin = this.state.getSetting(REJOIN_SETTING) === '1';
      if (!entry && (expired || rejoin) && this.join.method.respond) {
        const joined = await this.joinWithChallenge(root);
        if (rejoin) this.state.setSetting(REJOIN_SETTING, '');
        return this.succeeded(joined.entry, joined.identity, joined.result, now);
      }
      if (!entry) {
        const built = await this.newRequest(current, now);
        crashPoint('before_persist');
        this.state.putOutbox(built.entry);
        crashPoint('after_persist');
        entry = built.entry;
      }
      const { identity, result } = await this.send(entry, root);
      return this.succeeded(entry, identity, result, now);
    } catch (err) {
      const newlyRevoked =
        current !== undefined && toSigilError(err).code === 'issuer_revoked' && !this.revoked(current);
      if (newlyRevoked) {
        this.state.setSetting(REVOKED_SERIAL_SETTING, current.serial);
        // A one-shot command says it in its one error line (failureLogLevel: debug there).
        this.log[this.failureLogLevel](
          { serial: current.serial },
          this.join.method.canReattest
            ? 'the issuer revoked the intermediate CA of this identity: it cannot renew; joining again'
            : 'the issuer revoked the intermediate CA of this identity: it cannot renew; a new join credential is needed',
        );
      }
      const e = this.recordFailure(err, current, now);
      // Only a new join learns the new selection; a method that can re-attest makes it next time.
      if (e.code === 'pcr_selection_changed' && this.join.method.canReattest)
        this.state.setSetting(REJOIN_SETTING, '1');
      // A method that re-attests joins again in this same pass (once: the flag is now set), not
      // at its next one — a cron'd agent would serve a certificate relying parties refuse until then.
      if (newlyRevoked && this.join.method.canReattest) return this.tickIdentity(opts);
      return { action: 'failed', error: e, identity: current };
    }
  }

  /**
   * A renewal queued before the expiry gets one resend: its answer may be waiting at the issuer
   * (a lost response), and the issuer replays it even now. Only over HTTPS: on MQTT an expired
   * identity has only the bootstrap login, which a broker ACL does not let publish renewals and
   * whose topic the issuer never answers a renewal on (transport/mqtt/responder.ts) — waiting
   * for that answer kept an MQTT agent stuck forever (issue #12). Whatever the outcome short of
   * an answer, the renewal is dropped: after the expiry nothing is lost by it (a join does not
   * check generations), and a method that can re-attest joins again in the same pass instead of
   * after a backoff (up to RETRY_CAP_MS later).
   */
  private async resendExpiredRenewal(entry: OutboxEntry, root: string, now: number): Promise<TickOutcome | undefined> {
    let why: string;
    if (this.link.has('https')) {
      try {
        const { identity, result } = await this.send(entry, root, 'https');
        return this.succeeded(entry, identity, result, now);
      } catch (err) {
        const e = toSigilError(err);
        if (e.code === 'answer_mismatch') throw e;
        this.state.appendHistory({
          at: now,
          op: 'renew',
          outcome: 'error',
          code: e.code,
          message: e.message.slice(0, 500),
        });
        why = e.retryable ? `could not be resent (${e.code})` : 'was refused';
        this.log.info({ code: e.code }, `the renewal queued before the expiry ${why}; dropping it`);
      }
    } else {
      why = 'cannot be resent after the expiry without an https transport';
      this.log.info({}, `the renewal queued before the expiry ${why}; dropping it`);
    }
    this.state.deleteOutbox(entry.requestId);
    return undefined;
  }

  private succeeded(entry: OutboxEntry, identity: Identity, result: IdentityResult, now: number): TickOutcome {
    this.state.setStatus({
      consecutiveFailures: 0,
      lastError: null,
      lastAttemptAt: now,
      nextAttemptAt: identity.renewAfter,
      transport: this.transportLabel(),
    });
    this.log.info(
      {
        op: entry.op,
        serial: identity.serial,
        spiffe_id: identity.spiffeId,
        not_after: isoTime(identity.notAfter),
        ttl_clamped: result.ttl_clamped,
        transport: this.transportLabel(),
      },
      entry.op === 'join' ? 'joined' : 'renewed',
    );
    this.warnMqttsMargin(identity);
    this.updateMetrics();
    return {
      action: entry.op === 'join' ? 'joined' : 'renewed',
      identity,
      ttlClamped: result.ttl_clamped,
      requestedTtlS: result.requested_ttl_s,
    };
  }

  /** Once per process: renewals of this lifetime over mqtts may fall on the bootstrap login (transport-cert.ts). */
  private warnMqttsMargin(id: Identity): void {
    if (this.mqttsMarginWarned || !this.cfg.transports.some((t) => t.type === 'mqtt' && t.url.startsWith('mqtts:')))
      return;
    const warning = mqttsRenewalMarginWarning(id.notAfter - id.issuedAt, this.cfg.renewFraction);
    if (!warning) return;
    this.mqttsMarginWarned = true;
    this.log.warn({ not_after: isoTime(id.notAfter) }, warning);
  }

  private transportLabel(): string | null {
    const t = this.link.lastUsed;
    return t ? `${t.kind} ${t.url}` : null;
  }

  private recordFailure(err: unknown, current: Identity | undefined, startedAt: number): SigilError {
    // Judged when the attempt ended, not when it began: an attempt that straddled the expiry
    // (a 15 s transport timeout, say) is an attempt made after it — for reattest_required, and
    // for nextWake, which would otherwise add an immediate second attempt at the expiry.
    const now = Math.max(startedAt, this.now());
    let e = toSigilError(err);
    if (e.code === 'internal') this.log.error({ err }, 'internal error in agent');
    const pending = this.state.getOutbox()[0];
    if (pending && !e.retryable) {
      // The issuer refused this exact request; resending it can only fail again. A new request
      // (new id, new timestamp) is built on the next attempt.
      this.state.deleteOutbox(pending.requestId);
    }
    const expired = !current || current.notAfter <= now || this.revoked(current);
    if (expired && current && !this.join.method.canReattest) {
      if (NEEDS_PERSON.has(e.code)) {
        e = new SigilError(
          'reattest_required',
          `${reattestHint(this.join.method.name, current.bot, this.cfg.source, this.revoked(current))} (issuer: ${e.code})`,
        );
      } else if (e.retryable && this.singleUseCredential() === 'spent') {
        // Say what a person must do now, not only that the issuer is away. A renewal sent before
        // the expiry stays queued and is still resent: its answer may be waiting at the issuer.
        e = new SigilError(
          'reattest_required',
          `${reattestHint(this.join.method.name, current.bot, this.cfg.source, this.revoked(current))} (meanwhile: ${e.code}: ${e.message})`,
        );
      }
    }
    const st = this.state.getStatus();
    const failures = st.consecutiveFailures + 1;
    // An issuer that says when to come back (429 Retry-After, rate_limited) is not asked sooner
    // — up to an hour: a wrong hint must not park a fleet for days.
    const next = now + Math.max(backoffDelay(failures - 1, this.rand), Math.min(e.retryAfterMs ?? 0, 3_600_000));
    this.state.setStatus({
      consecutiveFailures: failures,
      lastError: `${e.code}: ${e.message}`,
      lastAttemptAt: now,
      nextAttemptAt: next,
      transport: this.transportLabel() ?? st.transport,
    });
    this.state.appendHistory({
      at: now,
      op: pending?.op ?? (current && !expired ? 'renew' : 'join'),
      outcome: 'error',
      code: e.code,
      message: e.message.slice(0, 500),
    });
    this.log[this.failureLogLevel](
      { code: e.code, failures, retry_in_ms: next - now, transport: this.transportLabel() },
      `attempt failed: ${e.message}`,
    );
    this.updateMetrics();
    return e;
  }

  private updateMetrics(): void {
    if (this.cfg.metrics.textfile) {
      try {
        writeAgentMetrics(this.cfg.metrics.textfile, this.state, this.now(), this.link.stats);
      } catch (e) {
        this.log.warn({ err: e }, 'could not write the metrics textfile');
      }
    }
  }

  /** When the daemon should wake next: the identity's schedule or an output's, whichever is first. */
  nextWake(): number {
    const outputs = this.credentials?.nextWake();
    const identity = this.identityWake();
    return outputs === undefined ? identity : Math.min(identity, Math.max(this.now(), outputs));
  }

  private identityWake(): number {
    const now = this.now();
    const st = this.state.getStatus();
    const id = this.state.getIdentity();
    if (st.consecutiveFailures > 0 && st.nextAttemptAt) {
      // What reattest_required asks a person to do — a new token in agent.yaml, then a restart —
      // is answered: the first attempt of this process uses it at once, not at the backoff the
      // spent one reached (up to 5 min). Once: its failure backs off like any other.
      const answered = st.lastError?.startsWith('reattest_required') === true && this.singleUseCredential() === 'fresh';
      if (answered && !this.attempted && id !== undefined && (id.notAfter <= now || this.revoked(id))) return now;
      // Backing off, but an expiry changes what to do (re-join, or report reattest_required):
      // one attempt at the expiry itself — not only at the next backoff, which may be minutes
      // later — then the backoff again.
      const attemptedSinceExpiry = id !== undefined && st.lastAttemptAt !== null && st.lastAttemptAt >= id.notAfter;
      return id && !attemptedSinceExpiry ? Math.min(st.nextAttemptAt, id.notAfter) : st.nextAttemptAt;
    }
    if (this.state.getOutbox().length) return now;
    // Revoked (a renewal refused issuer_revoked: the re-join), or another request refused so (the
    // renewal): due now.
    if (id && (this.revoked(id) || this.renewNow(id))) return now;
    return id ? Math.max(now, id.renewAfter) : now;
  }

  /** The daemon: serve what we have (unless the caller already did), then renew until `signal` aborts. */
  async run(signal: AbortSignal, opts: { served?: boolean } = {}): Promise<void> {
    await this.ready();
    const cached = opts.served ? this.state.getIdentity() : this.serveCached();
    if (cached) {
      // An expired one is still written (a relying party decides), but that is worth a warning.
      const expired = cached.notAfter <= this.now();
      this.log[expired ? 'warn' : 'info'](
        { serial: cached.serial, not_after: isoTime(cached.notAfter), ...(expired ? { expired } : {}) },
        expired ? 'serving cached identity, expired' : 'serving cached identity',
      );
      this.warnMqttsMargin(cached);
    }
    this.updateMetrics();
    if (this.cfg.workloadApi) {
      // Before the first tick: workloads are served from the cache whether or not the issuer answers.
      const { startWorkloadApi } = await import('./workload/start.js');
      const early = this.earlyWorkloadApi;
      early?.log.setTarget(this.log);
      const deps = { cfg: this.cfg, state: this.state, link: this.link, log: this.log, now: this.now, tpm: this.tpm };
      this.workloadApi = await startWorkloadApi({ ...deps, early: early?.server });
    }
    // Boot state re-proven on its own interval (`attest_every`, issue #16), beside the renewals.
    const attestation =
      this.cfg.attestEveryS !== undefined ? await this.attestSchedule(this.cfg.attestEveryS) : undefined;
    // A key rotation at the issuer reaches the ssh/jwt outputs within minutes, not at the next renewal.
    const trust = await this.trustCheck();
    while (!signal.aborted) {
      if (this.now() >= this.nextWake()) await this.tick();
      await attestation?.runIfDue();
      const checkAt = trust?.nextAt();
      if (await trust?.runIfDue()) await this.credentials?.refresh();
      if (trust && trust.nextAt() !== checkAt) this.updateMetrics();
      const next = Math.min(this.nextWake(), attestation?.nextAt() ?? Infinity, trust?.nextAt() ?? Infinity);
      await sleep(Math.min(Math.max(250, next - this.now()), 60_000), signal);
    }
  }

  /**
   * The trust check between renewals (./trust-check.ts): the issuer's signed bundle answer, for its
   * key-rotation sequence (outputs that follow the issuer's signing keys, TRUST_FILE_OUTPUTS:
   * ssh_user, ssh_host, jwt) and the root CRL every agent keeps (./root-crl-state.ts).
   */
  async trustCheck(): Promise<TrustCheck | undefined> {
    await this.ready();
    const { TrustCheck, TRUST_CHECK_DEFAULT_S } = await import('./trust-check.js');
    return new TrustCheck({
      everyMs: trustCheckEveryOverrideMs() ?? (this.cfg.trustCheckEveryS ?? TRUST_CHECK_DEFAULT_S) * 1000,
      now: this.now,
      rand: this.rand,
      state: this.state,
      log: this.log,
      fetchSequence: async () => {
        const root = this.state.getBundle()?.rootsPem[0] ?? (await this.link.root());
        const { result: b, signerSerials } = await this.link.signedBundle(root, this.now);
        if (b.root_crl !== undefined) {
          try {
            if (await this.rootCrl.offer(b.root_crl, fromPem(root, 'CERTIFICATE'), signerSerials))
              this.log[this.failureLogLevel](
                { op: 'trust_check' },
                'the root CA revoked an intermediate: its CRL is kept, answers signed under it are refused',
              );
          } catch (e) {
            this.log.error(
              { op: 'trust_check', err: (e as Error).message },
              'the bundle carried a root CRL that cannot be kept; ignored',
            );
          }
        }
        return b.trust_sequence;
      },
    });
  }

  /** The interval attestation's schedule (./attest-schedule.ts), each attempt by ./attest-client.ts. */
  async attestSchedule(everyS: number): Promise<AttestSchedule> {
    await this.ready();
    const [{ AttestSchedule }, { attestOnce }] = await Promise.all([
      import('./attest-schedule.js'),
      import('./attest-client.js'),
    ]);
    const join = this.join;
    const fresh = join.freshEvidence ? (binding: Buffer) => join.freshEvidence!(binding, this.state) : undefined;
    return new AttestSchedule({
      everyMs: attestEveryOverrideMs() ?? everyS * 1000,
      now: this.now,
      rand: this.rand,
      state: this.state,
      log: this.log,
      attempt: async () => {
        const signerLeaf = this.state.getIdentity()?.chainPem[0];
        const outcome = await attestOnce({
          state: this.state,
          link: this.link,
          now: this.now,
          freshEvidence: fresh,
          accepted: join.onAttestationAccepted ? () => join.onAttestationAccepted!(this.state) : undefined,
          tpmTcti: this.cfg.tpmTcti,
          tpm: this.tpm,
        });
        if (outcome.kind === 'refused' && outcome.code === 'issuer_revoked' && signerLeaf !== undefined) {
          this.signerRefusedRevoked(fromPem(signerLeaf, 'CERTIFICATE'));
          await this.tick();
        }
        // The rule's PCR selection changed since our join (issue #16): only a new join learns it,
        // as after a renewal refused so — now, not at the next renewal, which may be hours away.
        if (outcome.kind === 'refused' && outcome.code === 'pcr_selection_changed' && join.method.canReattest) {
          this.state.setSetting(REJOIN_SETTING, '1');
          await this.tick({ force: true });
        }
        return outcome;
      },
    });
  }

  async close(): Promise<void> {
    await (this.workloadApi ?? this.earlyWorkloadApi?.server)?.close();
    this.credentials?.close();
    await this.link.close();
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
