/**
 * The agent's credential outputs (SSH, database, Kubernetes, JWT), each on its own schedule:
 * requested with the CURRENT identity, renewed at ~1/2 of its own lifetime (±10% jitter),
 * retried with capped backoff, and followed by the output's reload hook.
 *
 * When an output is due (per output, in the agent's SQLite settings): never written, a file of
 * it missing, its configuration or the instance changed, past its renewal time, or expired.
 *
 * Safety rules, because a credential request is signed by the identity key:
 *  - nothing is requested without a valid identity, and nothing while an identity request
 *    (join/renew) is pending in the outbox: a renewal the issuer already committed whose answer
 *    was lost makes the local identity one generation old, and a request signed with it would
 *    lock the instance (generation_mismatch). The identity tick resends first.
 *  - a request is not persisted: after a crash a new one is made (new key, new request id). The
 *    issuer then records two credentials; neither changes any state the agent depends on.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { isErrorCode, SigilError, toSigilError } from '../errors.js';
import { loadSigner, parseKeyRef, TpmAccesses, withTcti } from '../keystore/index.js';
import type { Logger } from '../util/log.js';
import { LinkCredentialClient, type CredentialClient } from './credential-client.js';
import { buildCredentialRequest } from './credential-request.js';
import type { CredentialOutputConfig } from './outputs/config.js';
import type { CredentialDestination } from './outputs/credential-output.js';
import { databaseOutput } from './outputs/database.js';
import { jwtOutput } from './outputs/jwt.js';
import { kubernetesOutput } from './outputs/kubernetes.js';
import { runReload } from './outputs/reload.js';
import { sshHostOutput } from './outputs/ssh-host.js';
import { sshUserOutput } from './outputs/ssh-user.js';
import { backoffDelay, renewAt } from './schedule.js';
import type { AgentState } from './state/index.js';
import {
  OUTPUT_SETTING_PREFIX,
  TRUST_FILE_OUTPUTS,
  TRUST_SEQUENCE_SETTING,
  type OutputState,
} from './credential-status.js';
import type { IssuerLink } from './transports.js';
import { isoTime } from '../util/iso-time.js';

export function credentialDestination(cfg: CredentialOutputConfig, tpm?: TpmAccesses): CredentialDestination {
  switch (cfg.type) {
    case 'ssh_user':
      return sshUserOutput(cfg);
    case 'ssh_host':
      return sshHostOutput(cfg);
    case 'database':
      return databaseOutput(cfg, tpm);
    case 'kubernetes':
      return kubernetesOutput(cfg);
    case 'jwt':
      return jwtOutput(cfg);
  }
}

export type OutputOutcome =
  | {
      type: string;
      path: string;
      action: 'none' | 'skipped';
      reason?: string;
      /** `none` because the last attempt failed and its backoff has not run out: that failure. */
      failing?: { error: SigilError; failures: number; retryAt: number };
    }
  | {
      type: string;
      path: string;
      action: 'issued';
      serial: string;
      notAfter: number;
      ttlClamped: boolean;
      reloadError?: string;
    }
  | { type: string; path: string; action: 'failed'; error: SigilError };

export interface CredentialOutputsDeps {
  state: AgentState;
  log: Logger;
  client: CredentialClient;
  now: () => number;
  rand?: () => number;
  /** The configured TCTI of a TPM identity key (keystore withTcti). */
  tpmTcti?: string | undefined;
  /** The agent's TPMs, shared with its identity keys and join method (default: a set of its own). */
  tpm?: TpmAccesses;
  /**
   * The level of the "output credential failed" line: 'debug' for `run --once` and `renew`, whose
   * error line per failed output already says it (cli/agent.ts); default 'warn' (the daemon).
   */
  failureLogLevel?: 'warn' | 'debug';
}

const RENEW_FRACTION = 0.5;
/**
 * A lagging issuer's answer (`trust_lagging`) is not written while the credential on disk lives at
 * least this long: the backoff (≤ 5 min) reaches an issuer that read the rotation well before.
 */
const LAGGING_KEEP_MS = 10 * 60_000;

export class CredentialOutputs {
  readonly destinations: CredentialDestination[];
  readonly #deps: CredentialOutputsDeps;
  readonly #rand: () => number;
  readonly #tpm: TpmAccesses;

  constructor(configs: readonly CredentialOutputConfig[], deps: CredentialOutputsDeps) {
    this.#tpm = deps.tpm ?? new TpmAccesses();
    this.destinations = configs.map((c) => credentialDestination(c, this.#tpm));
    this.#deps = deps;
    this.#rand = deps.rand ?? Math.random;
  }

  #key(d: CredentialDestination): string {
    return (
      OUTPUT_SETTING_PREFIX +
      createHash('sha256').update(`${d.config.type}\0${d.config.path}`).digest('hex').slice(0, 40)
    );
  }

  #read(d: CredentialDestination): OutputState | undefined {
    const raw = this.#deps.state.getSetting(this.#key(d));
    if (!raw) return undefined;
    try {
      return JSON.parse(raw) as OutputState;
    } catch {
      return undefined;
    }
  }

  #save(d: CredentialDestination, st: OutputState): void {
    this.#deps.state.setSetting(
      this.#key(d),
      JSON.stringify({
        ...st,
        type: d.config.type,
        path: d.config.path,
        last_error: st.last_error?.slice(0, 1000) ?? null,
      }),
    );
  }

  /** Changes to anything but the reload hook call for a new credential. */
  #fingerprint(d: CredentialDestination, instanceId: string): string {
    const { reload: _reload, ...rest } = d.config;
    return createHash('sha256').update(JSON.stringify({ rest, instanceId })).digest('hex').slice(0, 32);
  }

  #due(d: CredentialDestination, st: OutputState | undefined, fp: string, now: number, trust: string | null): boolean {
    if (!st || st.fp !== fp || st.not_after === null || st.renew_after === null) return true;
    if (now >= st.renew_after || st.not_after <= now) return true;
    // The issuer rotated an SSH CA (or one dropped out): this output's trust file lists the old set.
    if (TRUST_FILE_OUTPUTS.has(d.config.type) && (st.trust_seq ?? null) !== trust) return true;
    return d.files.some((f) => !existsSync(path.join(d.config.path, f)));
  }

  /** Request and write every output that is due (all of them with `force`). Never throws. */
  async refresh(opts: { force?: boolean } = {}): Promise<OutputOutcome[]> {
    const { state, log, now } = this.#deps;
    const t = now();
    const id = state.getIdentity();
    const skip = (reason: string): OutputOutcome[] =>
      this.destinations.map((d) => ({ type: d.config.type, path: d.config.path, action: 'skipped', reason }));
    if (this.destinations.length === 0) return [];
    if (!id || id.notAfter <= t) return skip('no valid identity');
    if (state.getOutbox().length > 0) return skip('an identity request is pending');
    const outcomes: OutputOutcome[] = [];
    let signer: ReturnType<typeof loadSigner> | undefined;
    const trust = state.getSetting(TRUST_SEQUENCE_SETTING) ?? null;
    try {
      for (const d of this.destinations) {
        const base = { type: d.config.type, path: d.config.path };
        const st = this.#read(d);
        const fp = this.#fingerprint(d, id.instanceId);
        const due = opts.force === true || this.#due(d, st, fp, t, trust);
        const backingOff = st?.retry_at != null && t < st.retry_at && st.fp === fp && opts.force !== true;
        if (!due || backingOff) {
          outcomes.push(
            backingOff && due && st.last_error
              ? {
                  ...base,
                  action: 'none',
                  failing: { error: storedError(st.last_error), failures: st.failures, retryAt: st.retry_at! },
                }
              : { ...base, action: 'none' },
          );
          continue;
        }
        try {
          signer ??= loadSigner(withTcti(parseKeyRef(id.keyRef), this.#deps.tpmTcti), { tpm: this.#tpm });
          const prepared = await d.prepare();
          const built = await buildCredentialRequest({
            current: signer,
            chainPem: id.chainPem,
            now: now(),
            fields: prepared.fields,
          });
          const result = await this.#deps.client.request(built, now);
          if (result.kind !== d.config.type)
            throw new SigilError('response_invalid', `asked for a ${d.config.type} credential, got ${result.kind}`);
          // Issued to us: a credential naming another SPIFFE ID is someone else's answer (issue #11).
          if (result.spiffe_id !== id.spiffeId)
            throw new SigilError(
              'answer_mismatch',
              `the ${result.kind} credential was issued to ${result.spiffe_id}, not to this agent (${id.spiffeId}); ignoring it`,
            );
          // An issuer behind a key rotation this agent already knows of (a peer that has not read
          // it yet, a stored answer replayed from before it) would write the withdrawn CA back
          // into the trust file, or a token of a withdrawn key: while the credential on disk is
          // good, keep it and ask again (backoff); with none, write this one and ask again.
          const answered = result.trust_sequence ?? 0;
          const lagging = TRUST_FILE_OUTPUTS.has(d.config.type) && trust !== null && answered < Number(trust);
          const lag = (): SigilError =>
            new SigilError(
              'trust_lagging',
              `the issuer that answered had not read the key rotation yet (trust sequence ${answered}, this agent knows ${trust}); asking again`,
            );
          // "The credential on disk" only while its files are there (a tmpfs output after a reboot).
          const onDisk = d.files.every((f) => existsSync(path.join(d.config.path, f)));
          if (lagging && onDisk && st?.fp === fp && st.not_after !== null && st.not_after > now() + LAGGING_KEEP_MS)
            throw lag();
          d.write(result, prepared, { bundlePem: (state.getBundle()?.rootsPem ?? []).join('') });
          const issuedAt = now();
          if (lagging) {
            const failures = (st?.fp === fp ? st.failures : 0) + 1;
            this.#save(d, {
              fp,
              serial: result.serial,
              not_after: result.not_after,
              renew_after: renewAt(issuedAt, result.not_after, RENEW_FRACTION, this.#rand),
              failures,
              retry_at: issuedAt + backoffDelay(failures - 1, this.#rand),
              last_error: `trust_lagging: ${lag().message}`,
              trust_seq: String(answered),
            });
          } else
            this.#save(d, {
              fp,
              serial: result.serial,
              not_after: result.not_after,
              renew_after: renewAt(issuedAt, result.not_after, RENEW_FRACTION, this.#rand),
              failures: 0,
              retry_at: null,
              last_error: null,
              ...(TRUST_FILE_OUTPUTS.has(d.config.type) ? { trust_seq: trust } : {}),
            });
          log.info(
            {
              output: d.config.type,
              path: d.config.path,
              serial: result.serial,
              role: result.role,
              not_after: isoTime(result.not_after),
              ttl_clamped: result.ttl_clamped,
            },
            'output credential issued',
          );
          const reloadError = d.config.reload
            ? await runReload(d.config.reload, { SIGIL_OUTPUT_PATH: d.config.path, SIGIL_OUTPUT_TYPE: d.config.type })
            : undefined;
          if (reloadError) log.warn({ output: d.config.type, path: d.config.path }, `reload hook: ${reloadError}`);
          outcomes.push({
            ...base,
            action: 'issued',
            serial: result.serial,
            notAfter: result.not_after,
            ttlClamped: result.ttl_clamped,
            ...(reloadError ? { reloadError } : {}),
          });
        } catch (err) {
          const e = toSigilError(err);
          if (e.code === 'internal')
            log.error({ err, output: d.config.type, path: d.config.path }, 'internal error writing an output');
          // A failure under a changed configuration forgets the old credential's schedule.
          const prev = st?.fp === fp ? st : undefined;
          const failures = (prev?.failures ?? 0) + 1;
          const retryAt = now() + backoffDelay(failures - 1, this.#rand);
          this.#save(d, {
            fp,
            serial: prev?.serial ?? null,
            not_after: prev?.not_after ?? null,
            renew_after: prev?.renew_after ?? null,
            failures,
            retry_at: retryAt,
            last_error: `${e.code}: ${e.message}`,
          });
          log[this.#deps.failureLogLevel ?? 'warn'](
            { output: d.config.type, path: d.config.path, code: e.code, failures, retry_in_ms: retryAt - now() },
            `output credential failed: ${e.message}`,
          );
          outcomes.push({ ...base, action: 'failed', error: e });
        }
      }
    } finally {
      signer?.close?.();
    }
    return outcomes;
  }

  /**
   * When the next output falls due (a retry or a renewal); undefined without outputs, and while
   * nothing can be requested (no valid identity, an identity request pending): then the
   * identity's own schedule decides when to look again, and nothing spins.
   */
  nextWake(): number | undefined {
    const id = this.#deps.state.getIdentity();
    if (!id || id.notAfter <= this.#deps.now() || this.#deps.state.getOutbox().length > 0) return undefined;
    let next: number | undefined;
    for (const d of this.destinations) {
      const st = this.#read(d);
      const at = !st ? this.#deps.now() : (st.retry_at ?? st.renew_after ?? this.#deps.now());
      next = next === undefined ? at : Math.min(next, at);
    }
    return next;
  }

  /** Per-output status for `sigil agent status`. */
  status(): Array<{
    type: string;
    path: string;
    serial: string | null;
    not_after: string | null;
    failures: number;
    last_error: string | null;
  }> {
    return this.destinations.map((d) => {
      const st = this.#read(d);
      return {
        type: d.config.type,
        path: d.config.path,
        serial: st?.serial ?? null,
        not_after: st?.not_after ? isoTime(st.not_after) : null,
        failures: st?.failures ?? 0,
        last_error: st?.last_error ?? null,
      };
    });
  }

  close(): void {
    this.#deps.client.close();
  }
}

/** A failure as the output's state keeps it (`CODE: message`), back as an error. */
function storedError(text: string): SigilError {
  const m = /^([a-z0-9_]+): ([\s\S]*)$/.exec(text);
  const code = m?.[1];
  return code && isErrorCode(code) ? new SigilError(code, m![2]!) : new SigilError('internal', text);
}

/**
 * The agent's credential outputs from its configuration, sent over the agent's issuer link
 * (every configured transport, in order, HTTPS or MQTT) and verified against the root pinned in
 * the agent state. Undefined without outputs.
 */
export function createCredentialOutputs(
  cfg: { credentialOutputs: readonly CredentialOutputConfig[]; tpmTcti?: string | undefined },
  state: AgentState,
  log: Logger,
  now: () => number,
  link: IssuerLink,
  tpm?: TpmAccesses,
  failureLogLevel?: 'warn' | 'debug',
): CredentialOutputs | undefined {
  if (cfg.credentialOutputs.length === 0) return undefined;
  const client = new LinkCredentialClient(link, () => state.getBundle()?.rootsPem[0]);
  // `key: tpm` without its own tcti uses the agent's TPM (the one its identity key lives in).
  const tcti = cfg.tpmTcti;
  const outputs = cfg.credentialOutputs.map((o) =>
    o.type === 'database' && o.key === 'tpm' && !o.tcti && tcti ? { ...o, tcti } : o,
  );
  return new CredentialOutputs(outputs, {
    state,
    log,
    client,
    now,
    tpmTcti: tcti,
    ...(tpm ? { tpm } : {}),
    ...(failureLogLevel ? { failureLogLevel } : {}),
  });
}

/** `sigil agent status` reads these without loading the outputs (credential-status.ts). */
export { credentialOutputsStatus, type CredentialOutputStatus } from './credential-status.js';
