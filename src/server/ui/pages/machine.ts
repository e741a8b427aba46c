/**
 * One machine (issue #18): its identity and facts, the certificates issued to it (serials,
 * generations), its last attestation with the PCR diff against its firmware profile (expected vs
 * got, and the check that failed), the attestation history and the credentials issued (from the
 * audit log), its audit events, and — for an administrator — lock and unlock with a reason.
 */
import type { AuditRecord, CertificateRecord, InstanceRecord } from '../../store/types.js';
import { attestationOfAuditDetails, readAttestation, type AttestationView } from '../../attestation-record.js';
import { CSRF_FIELD } from '../csrf.js';
import { keyStorageLabel, relative, utc } from '../format.js';
import { html, machineHref, type Html } from '../html.js';
import type { UiSession } from '../session.js';
import { auditTable } from './audit-table.js';

export interface MachinePageData {
  inst: InstanceRecord;
  certificates: CertificateRecord[];
  attestationRows: AuditRecord[];
  credentialRows: AuditRecord[];
  events: AuditRecord[];
  session: UiSession;
  now: number;
  /** After a lock/unlock: what was done. */
  notice?: string;
}

/**
 * Facts shown in the identity list; `attestation` and `pcrs` have sections of their own,
 * `transport` and `agent_version` named rows (server/ops/agent-facts.ts).
 */
const OWN_SECTION = new Set(['attestation', 'pcrs', 'transport', 'agent_version']);
const MAX_FACT_CHARS = 300;

function factValue(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s === undefined ? String(v) : s.length > MAX_FACT_CHARS ? `${s.slice(0, MAX_FACT_CHARS)}…` : s;
}

/** A string fact, or '—' (a database writer could store any JSON there). */
function stringFact(facts: Record<string, unknown>, key: string): string {
  const v = facts[key];
  return typeof v === 'string' ? factValue(v) : '—';
}

function identity(d: MachinePageData): Html {
  const i = d.inst;
  const key = keyStorageLabel(i.keyStorage, i.exportable);
  const facts = Object.entries(i.facts).filter(([k]) => !OWN_SECTION.has(k));
  // When the current certificate was issued (the instance's updatedAt also moves on a lock or a facts update).
  const issued = d.certificates.find((c) => c.serial === i.currentSerial)?.issuedAt ?? null;
  return html`<section>
    <h2>Identity</h2>
    <dl class="facts">
      <dt>SPIFFE ID</dt>
      <dd class="mono">${i.spiffeId}</dd>
      <dt>Bot</dt>
      <dd><a href="/ui/?bot=${encodeURIComponent(i.bot)}">${i.bot}</a></dd>
      <dt>Join method</dt>
      <dd>${i.joinMethod}</dd>
      <dt>Key storage</dt>
      <dd>${key.text}</dd>
      <dt>Generation</dt>
      <dd>${i.generation}</dd>
      <dt>Current serial</dt>
      <dd class="mono">${i.currentSerial ?? '—'}</dd>
      <dt>Expires</dt>
      <dd>${utc(i.currentNotAfter)} <span class="muted">(${relative(i.currentNotAfter, d.now)})</span></dd>
      <dt>Joined</dt>
      <dd>${utc(i.createdAt)}</dd>
      <dt>Last renewal</dt>
      <dd>${utc(issued)} <span class="muted">(${relative(issued, d.now)})</span></dd>
      <dt>Last seen</dt>
      <dd>${utc(i.lastSeenAt)} <span class="muted">(${relative(i.lastSeenAt, d.now)})</span></dd>
      <dt>Locked</dt>
      <dd>${i.locked ? html`<span class="badge badge-bad">locked</span> ${i.lockReason ?? ''}` : 'no'}</dd>
      <dt>Transport</dt>
      <dd title="the carrier of its last join or renewal, as the issuer saw it">${stringFact(i.facts, 'transport')}</dd>
      <dt>Agent version</dt>
      <dd class="mono" title="what the agent says it runs: its claim, not verified">
        ${stringFact(i.facts, 'agent_version')} <span class="muted">(claimed)</span>
      </dd>
      ${facts.map(
        ([k, v]) =>
          html`<dt>${k}</dt>
            <dd class="mono small">${factValue(v)}</dd>`,
      )}
    </dl>
  </section>`;
}

function lockControls(d: MachinePageData): Html {
  const { inst, session } = d;
  if (session.role !== 'admin')
    return html`<p class="muted">Signed in as a viewer: locking needs an administrator.</p>`;
  const action = inst.locked ? 'unlock' : 'lock';
  return html`<form class="lock" method="post" action="${machineHref(inst.id)}/${action}">
    <input type="hidden" name="${CSRF_FIELD}" value="${session.csrf}" />
    <label
      >Reason <input type="text" name="reason" maxlength="500" required placeholder="why (recorded in the audit log)"
    /></label>
    <button type="submit" class="${inst.locked ? '' : 'danger'}">
      ${inst.locked ? 'Unlock' : 'Lock'} this instance
    </button>
  </form>`;
}

function diffTable(a: AttestationView): Html | '' {
  if (a.diff.length === 0) return '';
  return html`<table class="diff">
    <caption>
      PCRs that differ from the firmware profile
    </caption>
    <thead>
      <tr>
        <th scope="col">Bank</th>
        <th scope="col">PCR</th>
        <th scope="col">Expected (any of)</th>
        <th scope="col">Got</th>
      </tr>
    </thead>
    <tbody>
      ${a.diff.map(
        (r) =>
          html`<tr>
            <td>${r.bank}</td>
            <td>${r.pcr}</td>
            <td class="mono small">${r.expected.map((e) => html`<div>${e}</div>`)}</td>
            <td class="mono small bad">${r.got}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

function lastAttestation(d: MachinePageData): Html {
  const a = readAttestation(d.inst.facts['attestation']);
  const profile = typeof d.inst.facts['firmware_profile'] === 'string' ? d.inst.facts['firmware_profile'] : null;
  if (!a)
    return html`<section>
      <h2>Attestation</h2>
      <p class="muted">No attestation recorded${profile ? html` (firmware profile ${profile})` : ''}.</p>
    </section>`;
  return html`<section>
    <h2>Attestation</h2>
    <p class="attest-status">
      ${a.ok ? html`<span class="badge badge-ok">passed</span>` : html`<span class="badge badge-bad">failed</span>`}
      ${utc(a.at)} <span class="muted">(${relative(a.at, d.now)}, via ${a.via ?? '?'})</span> against firmware profile
      <strong>${a.profile ?? profile ?? 'none'}</strong>
    </p>
    ${a.ok ? '' : html`<p class="failed-check">Failed check: <code>${a.check ?? 'unknown'}</code>${a.message ? html` — ${a.message}` : ''}</p>`}
    ${diffTable(a)}
    ${
      a.resetCount !== null || a.restartCount !== null
        ? html`<p class="muted small">
            TPM reset count ${a.resetCount ?? '?'}, restart count
            ${a.restartCount ?? '?'}${a.rebooted ? ' (rebooted since the previous quote)' : ''}
          </p>`
        : ''
    }
    ${pcrValues(d.inst.facts['pcrs'])}
  </section>`;
}

/** The recorded PCR values, folded (they are long and rarely read). */
function pcrValues(pcrs: unknown): Html | '' {
  if (typeof pcrs !== 'object' || pcrs === null) return '';
  const entries = Object.entries(pcrs as Record<string, unknown>).slice(0, 64);
  return html`<details>
    <summary>Recorded PCR values</summary>
    <dl class="facts">
      ${entries.map(
        ([k, v]) =>
          html`<dt>${k}</dt>
            <dd class="mono small">${factValue(v)}</dd>`,
      )}
    </dl>
  </details>`;
}

function attestationHistory(d: MachinePageData): Html {
  const rows = d.attestationRows
    .map((r) => ({ r, a: attestationOfAuditDetails(r.details) }))
    .filter((x): x is { r: AuditRecord; a: AttestationView } => x.a !== undefined);
  return html`<section class="attest-history">
    <h2>Attestation history</h2>
    ${
      rows.length
        ? html`<table>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Via</th>
                <th scope="col">Result</th>
                <th scope="col">Check</th>
                <th scope="col">PCRs differing</th>
                <th scope="col">Audit seq</th>
              </tr>
            </thead>
            <tbody>
              ${rows.map(
                ({ r, a }) =>
                  html`<tr>
                    <td class="nowrap">${utc(r.at)}</td>
                    <td>${a.via ?? r.action}</td>
                    <td>
                      ${a.ok ? html`<span class="badge badge-ok">ok</span>` : html`<span class="badge badge-bad">failed</span>`}
                    </td>
                    <td><code>${a.check ?? ''}</code></td>
                    <td>${a.diff.map((x) => `${x.bank}:${x.pcr}`).join(', ')}</td>
                    <td class="mono">${r.seq}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
        : html`<p class="muted">No attestation rows in the audit log.</p>`
    }
  </section>`;
}

function certificates(d: MachinePageData): Html {
  const certs = [...d.certificates].reverse();
  return html`<section>
    <h2>Certificates</h2>
    <table>
      <thead>
        <tr>
          <th scope="col">Serial</th>
          <th scope="col">Kind</th>
          <th scope="col">Gen</th>
          <th scope="col">Not before</th>
          <th scope="col">Not after</th>
          <th scope="col">Key</th>
        </tr>
      </thead>
      <tbody>
        ${certs.map(
          (c) =>
            html`<tr${c.serial === d.inst.currentSerial ? html` class="current"` : ''}><td class="mono small">${c.serial}</td><td>${c.kind}</td><td>${c.generation}</td><td>${utc(c.notBefore)}</td><td>${utc(c.notAfter)}</td><td>${keyStorageLabel(c.keyStorage, c.exportable).text}</td></tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}

function credentials(d: MachinePageData): Html {
  const detail = (r: AuditRecord, k: string): string => {
    const v = r.details[k];
    return typeof v === 'string' || typeof v === 'number' ? String(v) : '';
  };
  return html`<section>
    <h2>Credentials issued</h2>
    ${
      d.credentialRows.length
        ? html`<table>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Outcome</th>
                <th scope="col">Kind</th>
                <th scope="col">Role</th>
                <th scope="col">Serial</th>
                <th scope="col">TTL</th>
              </tr>
            </thead>
            <tbody>
              ${d.credentialRows.map(
                (r) =>
                  html`<tr>
                    <td class="nowrap">${utc(r.at)}</td>
                    <td>${r.outcome}${r.code ? html` <code>${r.code}</code>` : ''}</td>
                    <td>${detail(r, 'kind')}</td>
                    <td>${detail(r, 'role')}</td>
                    <td class="mono small">${detail(r, 'serial')}</td>
                    <td>${detail(r, 'ttl_s') ? `${detail(r, 'ttl_s')}s` : ''}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
        : html`<p class="muted">None.</p>`
    }
  </section>`;
}

export function machinePage(d: MachinePageData): Html {
  return html`<p class="crumbs"><a href="/ui/">Fleet</a> › instance</p>
    <h1 class="mono">${d.inst.id}</h1>
    ${d.notice ? html`<p class="notice" role="status">${d.notice}</p>` : ''} ${lockControls(d)}
    <div class="columns">${identity(d)} ${lastAttestation(d)}</div>
    ${attestationHistory(d)} ${certificates(d)} ${credentials(d)}
    <section>
      <h2>Audit events</h2>
      ${auditTable(d.events, { showInstance: false })}
    </section>`;
}
