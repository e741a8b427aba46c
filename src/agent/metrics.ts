/**
 * The agent's own metrics: the two signals behind the alerts operators ask for
 * (docs/alerts.yaml) — certificate age as a fraction of its lifetime (> 0.8 means renewal is
 * overdue) and consecutive renewal failures (> 2). Served on a local port and/or written to a
 * node_exporter textfile.
 */
import { writeFileAtomic } from '../util/atomic-file.js';
import type { AgentState } from './state/index.js';

export function renderAgentMetrics(state: AgentState, now: number): string {
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
    gauge('sigil_agent_certificate_age_ratio', 'Age of the current certificate as a fraction of its lifetime', Number(Math.min(1.5, (now - id.notBefore) / life).toFixed(4)), lbl);
    gauge('sigil_agent_certificate_expiry_timestamp_seconds', 'NotAfter of the current certificate', Math.floor(id.notAfter / 1000), lbl);
    gauge('sigil_agent_certificate_generation', 'Generation of the current certificate', id.generation, lbl);
  }
  gauge('sigil_agent_identity_present', 'Whether the agent holds an identity', id ? 1 : 0);
  gauge('sigil_agent_renewal_consecutive_failures', 'Consecutive failed join/renew attempts', st.consecutiveFailures);
  if (last) gauge('sigil_agent_last_success_timestamp_seconds', 'Time of the last successful join or renewal', Math.floor(last.at / 1000));
  return lines.join('\n') + '\n';
}

export function writeAgentMetrics(path: string, state: AgentState, now: number): void {
  writeFileAtomic(path, renderAgentMetrics(state, now), { mode: 0o644 });
}
