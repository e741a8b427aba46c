/**
 * `sigil agent status`: everything an operator asks first, read from the agent's SQLite state
 * (so it works while the daemon runs, and while the issuer is down).
 */
import { formatPkcs11Uri, parseKeyRef } from '../keystore/index.js';
import { credentialOutputsStatus, type CredentialOutputStatus } from './credentials.js';
import type { AgentState, Identity } from './state/index.js';
import { mqttClientCert } from './transport-cert.js';

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
   * or a hardware key without a transport certificate).
   */
  mqtt_client_cert: 'svid' | 'transport' | 'bootstrap';
  pending_request: string | null;
  /** SSH, database, Kubernetes and JWT outputs: what was written last, when next, and failures. */
  credential_outputs: CredentialOutputStatus[];
}

const iso = (ms: number | null | undefined): string | null => (ms ? new Date(ms).toISOString() : null);

export function agentStatus(state: AgentState, now: number = Date.now(), configured: { tpmTcti?: string | undefined } = {}): AgentStatusReport {
  const id = state.getIdentity();
  const st = state.getStatus();
  const last = state.lastSuccess();
  const pending = state.getOutbox()[0];
  let s: AgentStatusReport['state'] = 'not_joined';
  if (id) s = id.notAfter <= now ? 'expired' : now > id.notBefore + (id.notAfter - id.notBefore) * 0.8 ? 'renewal_overdue' : 'ok';
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
    next_attempt: iso(st.nextAttemptAt),
    consecutive_failures: st.consecutiveFailures,
    last_error: st.lastError,
    transport: st.transport,
    mqtt_client_cert: (id && mqttClientCert(id, now)?.kind) ?? 'bootstrap',
    pending_request: pending ? `${pending.op} ${pending.requestId}` : null,
    credential_outputs: credentialOutputsStatus(state),
  };
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
