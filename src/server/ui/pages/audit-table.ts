/** Audit rows as a table (the audit page and a machine's events). Details are agent- or admin-written JSON: shown as text, capped. */
import type { AuditRecord } from '../../store/types.js';
import { utc } from '../format.js';
import { html, machineHref, type Html } from '../html.js';

const MAX_DETAILS_CHARS = 400;

function details(d: Record<string, unknown>): string {
  const s = JSON.stringify(d) ?? '';
  return s === '{}' ? '' : s.length > MAX_DETAILS_CHARS ? `${s.slice(0, MAX_DETAILS_CHARS)}…` : s;
}

export function auditTable(rows: readonly AuditRecord[], o: { showInstance: boolean }): Html {
  if (rows.length === 0) return html`<p class="muted">No audit rows match.</p>`;
  return html`<div class="table-wrap">
    <table class="audit">
      <thead>
        <tr>
          <th scope="col">Seq</th>
          <th scope="col">When</th>
          <th scope="col">Action</th>
          <th scope="col">Outcome</th>
          <th scope="col">Actor</th>
          <th scope="col">From</th>
          ${o.showInstance ? html`<th scope="col">Bot / instance</th>` : ''}
          <th scope="col">Details</th>
        </tr>
      </thead>
      <tbody>
        ${rows.map(
          (r) =>
            html`<tr class="outcome-${r.outcome === 'ok' ? 'ok' : r.outcome === 'refused' ? 'refused' : 'error'}">
              <td class="mono">${r.seq}</td>
              <td class="nowrap">${utc(r.at)}</td>
              <td>${r.action}</td>
              <td>${r.outcome}${r.code ? html` <code>${r.code}</code>` : ''}</td>
              <td>${r.actor}</td>
              <td class="mono small">${r.remote ?? ''}</td>
              ${
                o.showInstance
                  ? html`<td>
                      ${r.bot ?? ''}${r.instanceId ? html` <a class="mono small" href="${machineHref(r.instanceId)}">${r.instanceId}</a>` : ''}
                    </td>`
                  : ''
              }
              <td class="mono small details">${details(r.details)}</td>
            </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}
