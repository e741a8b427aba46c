/**
 * The agent's own metrics: the two signals behind the alerts operators ask for
 * (docs/alerts.yaml) — certificate age as a fraction of its lifetime (> 0.8 means renewal is
 * overdue) and consecutive renewal failures (> 2). Served on a local port and/or written to a
 * node_exporter textfile.
 */
import { writeFileAtomic } from '../util/atomic-file.js';
import type { AgentState } from './state/index.js';
import { TRUST_SEQUENCE_SETTING } from './credential-status.js';
import { readLastTrustCheck } from './trust-check.js';

/** Per-transport counters of this process (agent/transports.ts TransportStats). */
export interface TransportCounters {
  kind: string;
  url: string;
  failures: number;
  successes: number;
  unmatched?: number;
}

export function renderAgentMetrics(
  state: AgentState,
  now: number,
  transports: readonly TransportCounters[] = [],
): string {
  const id = state.getIdentity();
  const st = state.getStatus();
  const last = state.lastSuccess();
  const lines: string[] = [];
  const gauge = (name: string, help: string, value: number, labels = ''): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name}${labels} ${value}`);
  };
  if (id) {
    const life = Math.max(1, id.notAfter - id.notBefore);
    const lbl = `{spiffe_id="${id.spiffeId}",bot="${id.bot}"}`;
    gauge(
      'sigil_agent_certificate_age_ratio',
      'Age of the current certificate as a fraction of its lifetime',
      Number(Math.min(1.5, (now - id.notBefore) / life).toFixed(4)),
      lbl,
    );
    gauge(
      'sigil_agent_certificate_expiry_timestamp_seconds',
      'NotAfter of the current certificate',
      Math.floor(id.notAfter / 1000),
      lbl,
    );
    gauge('sigil_agent_certificate_generation', 'Generation of the current certificate', id.generation, lbl);
  }
  gauge('sigil_agent_identity_present', 'Whether the agent holds an identity', id ? 1 : 0);
  gauge('sigil_agent_renewal_consecutive_failures', 'Consecutive failed join/renew attempts', st.consecutiveFailures);
  if (last)
    gauge(
      'sigil_agent_last_success_timestamp_seconds',
      'Time of the last successful join or renewal',
      Math.floor(last.at / 1000),
    );
  // The trust check between renewals (./trust-check.ts): failing checks mean a key rotation at the
  // issuer may not reach this machine's ssh/jwt outputs until its next renewal.
  const trust = readLastTrustCheck(state);
  if (trust) {
    gauge(
      'sigil_agent_trust_check_consecutive_failures',
      "Consecutive failed checks of the issuer's key-rotation sequence (trust_check_every)",
      trust.error === null ? 0 : trust.failures,
    );
    if (trust.sequence !== null || state.getSetting(TRUST_SEQUENCE_SETTING) !== undefined)
      gauge(
        'sigil_agent_trust_sequence',
        "The issuer's key-rotation sequence the agent's ssh/jwt outputs follow (seconds; 0: never rotated)",
        Number(state.getSetting(TRUST_SEQUENCE_SETTING) ?? 0),
      );
  }
  if (st.transport)
    gauge(
      'sigil_agent_transport_last_used',
      'The transport of the last attempt (value 1)',
      1,
      `{transport="${st.transport.split(' ')[0]}",url="${st.transport.split(' ')[1] ?? ''}"}`,
    );
  if (transports.length > 0) {
    // Counters since this process started (failover: a failure on one transport may still end in success on the next).
    for (const [name, help, key] of [
      ['sigil_agent_transport_failures_total', 'Failed attempts per transport since the agent started', 'failures'],
      ['sigil_agent_transport_successes_total', 'Answered attempts per transport since the agent started', 'successes'],
    ] as const) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const t of transports) lines.push(`${name}{transport="${t.kind}",url="${t.url}"} ${t[key]}`);
    }
    const mqtt = transports.filter((t) => t.unmatched !== undefined);
    if (mqtt.length > 0) {
      const name = 'sigil_agent_mqtt_unmatched_answers_total';
      lines.push(
        `# HELP ${name} MQTT answers that matched no waiting request (late, duplicated, or not ours), ignored`,
        `# TYPE ${name} counter`,
      );
      for (const t of mqtt) lines.push(`${name}{url="${t.url}"} ${t.unmatched}`);
    }
  }
  return lines.join('\n') + '\n';
}

export function writeAgentMetrics(
  path: string,
  state: AgentState,
  now: number,
  transports: readonly TransportCounters[] = [],
): void {
  writeFileAtomic(path, renderAgentMetrics(state, now, transports), { mode: 0o644 });
}
