/**
 * `sigil agent status`: everything an operator asks first, read from the agent's SQLite state
 * (so it works while the daemon runs, and while the issuer is down).
 */
import { parseKeyRef } from '../keystore/key-ref.js';
import { formatPkcs11Uri } from '../keystore/pkcs11/uri.js';
import {
  credentialOutputsStatus,
  REVOKED_SERIAL_SETTING,
  TRUST_SEQUENCE_SETTING,
  type CredentialOutputStatus,
} from './credential-status.js';
import type { AgentConfig } from './config.js';
import type { AgentState, AgentStatus, Identity } from './state/index.js';
import { mqttClientCert } from './transport-cert.js';
import { readLastAttest } from './attest-schedule.js';
import { readLastTrustCheck } from './trust-check.js';
import { RootCrlState } from './root-crl-state.js';

export interface AgentStatusReport {
  state: 'ok' | 'renewal_overdue' | 'expired' | 'not_joined';
  spiffe_id: string | null;
  instance_id: string | null;
  bot: string | null;
  serial: string | null;
  not_before: string | null;
  not_after: string | null;
  time_left_s: number | null;
  /** Where the identity key lives and whether it can be read out, as the agent knows it. */
  key_storage: string | null;
  exportable: boolean | null;
  /** What the issuer recorded: only what it verified (a TPM key by TPM2_Certify); else software, exportable. */
  issuer_key_storage: string | null;
  issuer_exportable: boolean | null;
  /** PKCS#11 keys: the RFC 7512 URI of the current key on the token, for workloads; else null. */
  key_uri: string | null;
  /** TPM keys: the TCTI the agent reaches the TPM through (the configured one when known). */
  tpm_tcti: string | null;
  generation: number | null;
  join_method: string | null;
  last_renewal: string | null;
  next_renewal: string | null;
  next_attempt: string | null;
  consecutive_failures: number;
  last_error: string | null;
  transport: string | null;
  /**
   * The TLS client certificate an mqtts:// transport presents now: the SVID (software key), the
   * MQTT transport certificate (TPM/PKCS#11 key), or the bootstrap identity (not joined, expired,
   * or a hardware key without a transport certificate). Null when the config has no mqtt
   * transport; absent when the config is unknown (`--data-dir` only).
   */
  mqtt_client_cert?: 'svid' | 'transport' | 'bootstrap' | null;
  pending_request: string | null;
  /**
   * Interval attestation (`attest_every`, ./attest-schedule.ts): when the last attestation was
   * sent and what came of it — `ok`, `refused` (the issuer judged the boot state and refused:
   * last_attestation_check names the failed check, e.g. pcr_mismatch) or `failed` (not
   * delivered: issuer unreachable, …) — and when the next is due. All null when it never ran.
   */
  last_attestation: string | null;
  last_attestation_result: 'ok' | 'refused' | 'failed' | null;
  last_attestation_check: string | null;
  last_attestation_error: string | null;
  /** The firmware profile the last accepted attestation matched. */
  last_attestation_profile: string | null;
  next_attestation: string | null;
  /**
   * The issuer's key-rotation sequence the agent last saw (null: the issuer never rotated a key)
   * and the daemon's check of it between renewals (`trust_check_every`, ./trust-check.ts; only
   * with ssh or jwt outputs): when it last asked, why that failed, when it asks next.
   */
  trust_sequence: number | null;
  last_trust_check: string | null;
  last_trust_check_error: string | null;
  next_trust_check: string | null;
  /**
   * The issuer refused this identity's renewal `issuer_revoked`: the intermediate CA that issued it
   * was revoked. It cannot renew; the agent joins again (token agents: with a new token).
   */
  issuer_revoked: boolean;
  /** SSH, database, Kubernetes and JWT outputs: what was written last, when next, and failures. */
  credential_outputs: CredentialOutputStatus[];
}

/** The status fields of the interval attestation, from the agent state. */
export function attestationStatus(
  state: Pick<AgentState, 'getSetting'> | undefined,
): Pick<
  AgentStatusReport,
  | 'last_attestation'
  | 'last_attestation_result'
  | 'last_attestation_check'
  | 'last_attestation_error'
  | 'last_attestation_profile'
  | 'next_attestation'
> {
  const last = state ? readLastAttest(state) : undefined;
  const o = last?.outcome;
  const sent = o && o.kind !== 'skipped' ? o : undefined;
  return {
    last_attestation: iso(sent?.at),
    last_attestation_result: sent?.kind ?? null,
    last_attestation_check: sent?.kind === 'refused' ? sent.code : null,
    last_attestation_error: sent && sent.kind !== 'ok' ? `${sent.code}: ${sent.message.split('\n')[0]}` : null,
    last_attestation_profile: sent?.kind === 'ok' ? sent.profile : null,
    next_attestation: iso(last?.next_at),
  };
}

const iso = (ms: number | null | undefined): string | null => (ms ? new Date(ms).toISOString() : null);

/** The status fields of the trust sequence and its check, from the agent state. */
export function trustCheckStatus(
  state: Pick<AgentState, 'getSetting'> | undefined,
): Pick<AgentStatusReport, 'trust_sequence' | 'last_trust_check' | 'last_trust_check_error' | 'next_trust_check'> {
  const kept = state?.getSetting(TRUST_SEQUENCE_SETTING);
  const last = state ? readLastTrustCheck(state) : undefined;
  return {
    trust_sequence: kept ? Number(kept) : null,
    last_trust_check: iso(last?.at),
    last_trust_check_error: last?.error ?? null,
    next_trust_check: iso(last?.next_at),
  };
}

/** What the status knows of the config; without a config (`--data-dir`) less is shown. */
export interface StatusConfigFacts {
  /** The configured TCTI of a TPM key. */
  tpmTcti?: string | undefined;
  /** Whether the config has an mqtt transport (undefined: no config at hand). */
  mqtt?: boolean | undefined;
}

/** `state` undefined: there is no agent database yet (status creates none), so not joined. */
export function agentStatus(
  state: AgentState | undefined,
  now: number = Date.now(),
  configured: StatusConfigFacts = {},
): AgentStatusReport {
  const id = state?.getIdentity();
  const st = state?.getStatus() ?? {
    consecutiveFailures: 0,
    lastError: null,
    lastAttemptAt: null,
    nextAttemptAt: null,
    transport: null,
  };
  const last = state?.lastSuccess();
  const pending = state?.getOutbox()[0];
  let s: AgentStatusReport['state'] = 'not_joined';
  if (id)
    s =
      id.notAfter <= now
        ? 'expired'
        : now > id.notBefore + (id.notAfter - id.notBefore) * 0.8
          ? 'renewal_overdue'
          : 'ok';
  return {
    state: s,
    spiffe_id: id?.spiffeId ?? null,
    instance_id: id?.instanceId ?? null,
    bot: id?.bot ?? null,
    serial: id?.serial ?? null,
    not_before: iso(id?.notBefore),
    not_after: iso(id?.notAfter),
    time_left_s: id ? Math.round((id.notAfter - now) / 1000) : null,
    key_storage: id?.keyStorage ?? null,
    exportable: id?.exportable ?? null,
    issuer_key_storage: id?.issuerKeyStorage ?? null,
    issuer_exportable: id?.issuerExportable ?? null,
    key_uri: id ? keyUri(id) : null,
    tpm_tcti: id ? tpmTcti(id, configured.tpmTcti) : null,
    generation: id?.generation ?? null,
    join_method: id?.joinMethod ?? null,
    last_renewal: iso(last?.at),
    next_renewal: iso(id?.renewAfter),
    next_attempt: iso(nextAttemptAt(st, id, pending !== undefined, now)),
    consecutive_failures: st.consecutiveFailures,
    last_error: st.lastError,
    transport: st.transport,
    ...(configured.mqtt === undefined
      ? {}
      : { mqtt_client_cert: configured.mqtt ? ((id && mqttClientCert(id, now)?.kind) ?? 'bootstrap') : null }),
    pending_request: pending ? `${pending.op} ${pending.requestId}` : null,
    ...attestationStatus(state),
    ...trustCheckStatus(state),
    issuer_revoked:
      id !== undefined &&
      (state?.getSetting(REVOKED_SERIAL_SETTING) === id.serial ||
        (state !== undefined && new RootCrlState(state).listsIssuerOf(id))),
    credential_outputs: state ? credentialOutputsStatus(state) : [],
  };
}

/**
 * When the running agent will next send a join or renewal (unix ms, never before `now`), or
 * null when nothing is scheduled (not joined, nothing tried). Not the stored `nextAttemptAt`
 * alone: the loop (Agent.identityWake) wakes at the backoff time — or at the expiry, once —
 * but a pass sends only when something is due (a pending request, the expiry, the renewal
 * time). A failed manual `agent renew` left a backoff time in the past that the daemon, with
 * nothing due, never acted on; status showed that (issue #12 item 6).
 */
export function nextAttemptAt(st: AgentStatus, id: Identity | undefined, pending: boolean, now: number): number | null {
  const backoff = st.consecutiveFailures > 0 && st.nextAttemptAt !== null ? st.nextAttemptAt : undefined;
  if (!id) return pending || backoff !== undefined ? Math.max(now, backoff ?? now) : null;
  const attemptedSinceExpiry = st.lastAttemptAt !== null && st.lastAttemptAt >= id.notAfter;
  const wake = backoff === undefined ? now : attemptedSinceExpiry ? backoff : Math.min(backoff, id.notAfter);
  const dueFrom = pending ? now : Math.min(id.renewAfter, id.notAfter);
  return Math.max(now, wake, dueFrom);
}

function keyUri(id: Identity): string | null {
  try {
    const ref = parseKeyRef(id.keyRef);
    return ref.storage === 'pkcs11' ? formatPkcs11Uri(ref) : null;
  } catch {
    return null;
  }
}

function tpmTcti(id: Identity, configured: string | undefined): string | null {
  try {
    const ref = parseKeyRef(id.keyRef);
    return ref.storage === 'tpm' ? (configured ?? ref.tcti) : null;
  } catch {
    return null;
  }
}

/**
 * For an identity that cannot be used (`expired`, `not_joined`): the one line `agent status`
 * adds on stderr with the next step — a new token for a token join, which cannot re-attest
 * (unless the config already holds one the agent has not used); nothing but a running agent (or
 * one `--once`) for the methods that re-attest by themselves.
 */
export async function nextStepHint(
  s: AgentStatusReport,
  configPath: string | undefined,
  known: { cfg?: AgentConfig | undefined; state?: AgentState | undefined } = {},
): Promise<string | undefined> {
  const cfgPath = configPath ?? '<agent.yaml>';
  const runOnce = `sigil agent run --once --config ${cfgPath}`;
  const lastError = s.last_error ? ` (last attempt: ${s.last_error.split('\n')[0]})` : '';
  if (s.state === 'not_joined') return `not joined yet${lastError}; run: ${runOnce}`;
  if (s.state !== 'expired') return refusedHint(s);
  const when = s.next_attempt ? `at ${s.next_attempt}` : 'at its next attempt';
  if (s.join_method === 'token') {
    // Loaded only here: join-method.ts brings the registry and the configured method's code along.
    const { buildJoinMethod, reattestHint, USED_CREDENTIAL_SETTING } = await import('./join-method.js');
    if (
      known.cfg &&
      known.state &&
      (await freshCredential(
        async () => (await buildJoinMethod(known.cfg!)).singleUseCredential,
        known.state.getSetting(USED_CREDENTIAL_SETTING),
      ))
    ) {
      // A running daemon read its config at start: it does not know this token until restarted,
      // and then joins with it at once (Agent.identityWake), whatever its backoff.
      return `the identity expired; the config holds a join token not used yet: restart the agent daemon (it joins with the token at once), or with no daemon running, run now: ${runOnce}`;
    }
    return reattestHint('token', s.bot ?? '<bot>', cfgPath);
  }
  return `the identity expired; the ${s.join_method ?? 'configured'} join re-attests by itself: a running agent joins again ${when}${lastError}, or run now: ${runOnce}`;
}

/** Codes with which the issuer refuses every renewal of a locked instance (server/ops/authenticate.ts). */
const LOCKED = /^(instance_locked|bot_locked|generation_mismatch):/;

type RefusalFacts = Pick<AgentStatusReport, 'consecutive_failures' | 'last_error' | 'last_attestation_result'> &
  Partial<Pick<AgentStatusReport, 'issuer_revoked'>>;

/**
 * Why the issuer refuses this agent's renewals while its certificate is still valid — `locked`
 * (instance or bot) or `attestation` (boot state) — or undefined. Only while the refusals go on:
 * a success since (failures back to 0) answered them. `agent status` exits 1 then, with a hint.
 */
export function renewalsRefused(s: RefusalFacts): 'locked' | 'attestation' | 'revoked' | undefined {
  if (s.consecutive_failures === 0) return undefined;
  if (s.last_error && LOCKED.test(s.last_error)) return 'locked';
  if (s.issuer_revoked === true) return 'revoked';
  return s.last_attestation_result === 'refused' ? 'attestation' : undefined;
}

/**
 * A certificate still valid whose renewals the issuer refuses: `state` says ok until the expiry,
 * so say here what will happen and who can change it (a person, at the issuer).
 */
function refusedHint(s: AgentStatusReport): string | undefined {
  const refused = renewalsRefused(s);
  if (!refused) return undefined;
  const who = s.instance_id ?? '<instance>';
  const until = s.not_after ? ` until ${s.not_after}` : '';
  if (refused === 'revoked')
    return `the issuer revoked the intermediate CA that issued this identity (a compromise: sigil server rotate-intermediate --revoke-old): it cannot renew and relying parties with the root CRL refuse it; ${
      s.join_method === 'token'
        ? 'a new join token is needed (last error: ' + (s.last_error ?? '').split('\n')[0] + ')'
        : 'the agent joins again at its next attempt'
    }`;
  if (refused === 'locked') {
    const err = s.last_error ?? '';
    const bot = err.startsWith('bot_locked');
    return `the issuer has locked this ${bot ? 'bot' : 'instance'} (${err.split('\n')[0]}): renewals are refused and the certificate is used${until}; at the issuer, find why with: sigil ctl --data-dir <issuer-data-dir> instances show ${who}, then: sigil ctl --data-dir <issuer-data-dir> unlock ${bot ? (s.bot ?? '<bot>') : who}`;
  }
  return `the issuer refused the last attestation (${s.last_attestation_check ?? 'a check'} failed): renewals are refused until the boot state matches the join rule's firmware profiles again; see: sigil ctl --data-dir <issuer-data-dir> instances show ${who}`;
}

/** The configured single-use credential is set and is not the one the last join spent (a malformed token is not fresh). */
async function freshCredential(
  configured: () => Promise<string | undefined>,
  used: string | undefined,
): Promise<boolean> {
  try {
    const c = await configured();
    return c !== undefined && c !== used;
  } catch {
    return false;
  }
}
