/**
 * The audit page (issue #18): the audit log filtered by time, actor, action and outcome (the
 * store filters: FleetStore.audit), newest first, paged by sequence number; and the chain's
 * verification status (../audit-chain.ts) with a button that walks on.
 */
import { SigilError } from '../../../errors.js';
import type { AuditQuery } from '../../store/fleet-types.js';
import type { AuditRecord } from '../../store/types.js';
import type { ChainStatus } from '../audit-chain.js';
import { CSRF_FIELD } from '../csrf.js';
import { relative } from '../format.js';
import { href, html, type Html } from '../html.js';
import type { UiSession } from '../session.js';
import { auditTable } from './audit-table.js';

export const AUDIT_PAGE_ROWS = 100;

export interface AuditFilter {
  from: string;
  to: string;
  actor: string;
  action: string;
  outcome: string;
  instance: string;
  before: string;
}

/** `2026-12-05T04:27` or `2026-12-05 04:27:13`, read as UTC (what the page shows). */
function utcInput(v: string, name: string): number | undefined {
  if (!v) return undefined;
  const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)Z?$/.exec(v);
  const t = m ? Date.parse(`${m[1]}T${m[2]}Z`) : NaN;
  if (Number.isNaN(t)) throw new SigilError('bad_request', `"${name}" must be a UTC time like 2026-12-05 04:27`);
  return t;
}

export function parseAuditFilter(params: URLSearchParams): { filter: AuditFilter; query: AuditQuery } {
  const get = (k: string, max: number): string => {
    const v = (params.get(k) ?? '').trim();
    if (v.length > max) throw new SigilError('bad_request', `the filter "${k}" is longer than ${max} characters`);
    return v;
  };
  const filter: AuditFilter = {
    from: get('from', 25),
    to: get('to', 25),
    actor: get('actor', 200),
    action: get('action', 64),
    outcome: get('outcome', 16),
    instance: get('instance', 128),
    before: get('before', 16),
  };
  if (filter.before && !/^\d{1,15}$/.test(filter.before))
    throw new SigilError('bad_request', '"before" must be an audit sequence number');
  const from = utcInput(filter.from, 'from');
  const to = utcInput(filter.to, 'to');
  const query: AuditQuery = {
    ...(from !== undefined ? { from } : {}),
    ...(to !== undefined ? { to } : {}),
    ...(filter.actor ? { actor: filter.actor } : {}),
    ...(filter.action ? { action: filter.action } : {}),
    ...(filter.outcome ? { outcome: filter.outcome } : {}),
    ...(filter.instance ? { instanceId: filter.instance } : {}),
    ...(filter.before ? { beforeSeq: Number(filter.before) } : {}),
    limit: AUDIT_PAGE_ROWS,
  };
  return { filter, query };
}

export interface AuditPageData {
  filter: AuditFilter;
  rows: AuditRecord[];
  head: { seq: number; hash: string } | undefined;
  chain: ChainStatus | undefined;
  session: UiSession;
  now: number;
}

function chainStatus(d: AuditPageData): Html {
  const c = d.chain;
  const status = !c
    ? html`<span class="badge">not verified yet</span>`
    : c.brokenAt !== undefined
      ? html`<span class="badge badge-bad">broken at seq ${c.brokenAt}</span> <span>${c.reason ?? ''}</span>`
      : c.complete
        ? html`<span class="badge badge-ok">verified</span> ${c.rows.toLocaleString('en-US')} rows through seq
            ${c.throughSeq}`
        : html`<span class="badge">partly verified</span> ${c.rows.toLocaleString('en-US')} rows through seq
            ${c.throughSeq} of ${c.headSeq ?? '?'} (press again to go on)`;
  return html`<section class="chain">
    <h2>Chain</h2>
    <p>
      Head: seq <strong>${d.head?.seq ?? '—'}</strong>
      <span class="mono small">${d.head?.hash.slice(0, 16) ?? ''}</span>
    </p>
    <p>${status}${c ? html` <span class="muted">(${relative(c.at, d.now)}, ${c.tookMs} ms)</span>` : ''}</p>
    <form method="post" action="/ui/audit/verify" class="inline">
      <input type="hidden" name="${CSRF_FIELD}" value="${d.session.csrf}" />
      <button type="submit" name="from" value="last">Verify${c && c.brokenAt === undefined ? ' new rows' : ''}</button>
      <button type="submit" name="from" value="start">Verify from the start</button>
    </form>
    <p class="muted small">
      Checks links and hashes in steps of at most 2 s; signed checkpoints: <code>sigil ctl audit --verify</code>.
    </p>
  </section>`;
}

export function auditPage(d: AuditPageData): Html {
  const f = d.filter;
  const oldest = d.rows.at(-1)?.seq;
  const { before: _before, ...kept } = f;
  return html`<h1>Audit log</h1>
    ${chainStatus(d)}
    <form class="filters" method="get" action="/ui/audit" role="search">
      <label
        >From (UTC) <input type="text" name="from" value="${f.from}" placeholder="2026-12-05 04:00" maxlength="25"
      /></label>
      <label
        >To (UTC) <input type="text" name="to" value="${f.to}" placeholder="2026-12-05 05:00" maxlength="25"
      /></label>
      <label
        >Actor <input type="text" name="actor" value="${f.actor}" placeholder="agent, admin, ui:admin" maxlength="200"
      /></label>
      <label
        >Action <input type="text" name="action" value="${f.action}" placeholder="renew, lock, attest" maxlength="64"
      /></label>
      <label
        >Outcome
        <select name="outcome">
          ${['', 'ok', 'refused', 'error'].map(
            (o) => html`<option value="${o}" ${o === f.outcome ? html` selected` : ''}>${o || 'any'}</option>`,
          )}
        </select></label
      >
      <label>Instance <input type="text" name="instance" value="${f.instance}" maxlength="128" /></label>
      <button type="submit">Filter</button> <a class="reset" href="/ui/audit">Reset</a>
    </form>
    ${auditTable(d.rows, { showInstance: true })}
    <nav class="pager">
      ${
        f.before ? html`<a href="${href('/ui/audit', kept)}">« newest</a> ` : ''
      }${d.rows.length === AUDIT_PAGE_ROWS && oldest !== undefined ? html`<a href="${href('/ui/audit', { ...kept, before: oldest })}">older ›</a>` : ''}
    </nav>`;
}
