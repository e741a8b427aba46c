/**
 * What `sigil agent status` shows of the credential outputs, read from the agent's settings
 * alone. Apart from agent/credentials.ts so that status (and every agent without credential
 * outputs) does not load the outputs themselves — jose, SSH, Kubernetes (issue #19).
 */
import type { AgentState } from './state/index.js';

/** Settings key prefix of each credential output's state (agent/credentials.ts writes them). */
export const OUTPUT_SETTING_PREFIX = 'output.';
/**
 * The serial of an identity whose renewal the issuer refused `issuer_revoked`: the intermediate CA
 * that issued it was revoked (`sigil server rotate-intermediate --revoke-old`, `retire-issuer
 * --revoke`). Such an identity is as good as expired — it can never renew, and relying parties
 * with the root CRL refuse it — so the agent joins again at once (a method that re-attests), or
 * says a new credential is needed (token), instead of waiting for the expiry.
 */
export const REVOKED_SERIAL_SETTING = 'identity.revoked_serial';

/**
 * The serial of an identity whose credential, workload or attest request was refused
 * `issuer_revoked`: its renewal is due now, and only the renewal's own refusal ends it
 * (REVOKED_SERIAL_SETTING). Over HTTPS a refusal is vouched for by TLS alone; the renewal asks
 * the issuer about this identity directly, so these requests add no way to end one (review).
 */
export const RENEW_NOW_SETTING = 'identity.renew_now';

/** The issuer's last trust_sequence (protocol/messages.ts IdentityResult), kept by the agent. */
export const TRUST_SEQUENCE_SETTING = 'trust_sequence';
/**
 * Outputs re-issued when the trust sequence moves (a `sigil server rotate-key` step): the SSH
 * outputs list the issuer's SSH CAs in their trust files, and a JWT-SVID on disk may be signed by
 * a key a compromise rotation just withdrew (verifiers refuse it once they refetch the JWKS). A
 * rotation is rare; one more credential request per output then costs nothing that matters.
 */
export const TRUST_FILE_OUTPUTS: ReadonlySet<string> = new Set(['ssh_user', 'ssh_host', 'jwt']);

/** What the agent remembers per output (settings key `output.<hash>`). */
export interface OutputState {
  /** Which output (for `sigil agent status`; absent in state written before it was kept). */
  type?: string;
  path?: string;
  fp: string;
  serial: string | null;
  not_after: number | null;
  renew_after: number | null;
  failures: number;
  retry_at: number | null;
  last_error: string | null;
  /** ssh kinds: the issuer's trust_sequence its trust files were written under (absent: none yet). */
  trust_seq?: string | null;
}

/** One credential output as `sigil agent status` shows it. */
export interface CredentialOutputStatus {
  type: string | null;
  path: string | null;
  serial: string | null;
  not_after: string | null;
  next_renewal: string | null;
  consecutive_failures: number;
  next_attempt: string | null;
  last_error: string | null;
}

/** The state of every credential output the agent has written or tried, from its settings. */
export function credentialOutputsStatus(state: AgentState): CredentialOutputStatus[] {
  const iso = (ms: number | null | undefined): string | null => (ms ? new Date(ms).toISOString() : null);
  return state.listSettings(OUTPUT_SETTING_PREFIX).flatMap(({ value }) => {
    let st: OutputState;
    try {
      st = JSON.parse(value) as OutputState;
    } catch {
      return [];
    }
    return [
      {
        type: st.type ?? null,
        path: st.path ?? null,
        serial: st.serial,
        not_after: iso(st.not_after),
        next_renewal: iso(st.renew_after),
        consecutive_failures: st.failures,
        next_attempt: iso(st.retry_at),
        last_error: st.last_error,
      },
    ];
  });
}
