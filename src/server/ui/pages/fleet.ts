/**
 * The fleet page (issue #18): counts per state, activity charts, and one page of instances with
 * server-side filter, search, sort and pagination — all GET forms and links, so it works without
 * script and every view is a shareable URL. The store answers the filtering (FleetStore.page), so
 * the page costs the same at 100,000 instances as at ten.
 */
import { FLEET_STATES, type FleetBucket, type FleetRow, type FleetState } from '../../store/fleet-types.js';
import { EXPIRES_WITHIN, filterParams, PAGE_SIZES, type FleetFilter } from '../fleet-query.js';
import { keyStorageLabel, relative, utc } from '../format.js';
import { href, html, machineHref, type Html } from '../html.js';
import { barChart } from '../svg-chart.js';

export const STATE_LABELS: Readonly<Record<FleetState, string>> = {
  healthy: 'Healthy',
  renewal_overdue: 'Renewal overdue',
  attestation_failed: 'Attestation failed',
  expired: 'Expired',
  locked: 'Locked',
};

export interface FleetPageData {
  filter: FleetFilter;
  counts: Record<FleetState, number> & { total: number };
  rows: FleetRow[];
  total: number;
  bots: string[];
  methods: string[];
  activity: FleetBucket[];
  activityBucketMs: number;
  ages: { bins: Array<{ label: string; range: string }>; counts: number[] };
  /** When the charts were computed (they are kept 30 s: ../fleet-summary.ts). */
  chartsAt: number;
  now: number;
}

function countTiles(d: FleetPageData): Html {
  const tile = (state: FleetState | '', label: string, n: number): Html =>
    html`<a
      class="tile tile-${state || 'total'}${d.filter.state === state ? ' tile-current' : ''}"
      href="${href('/ui/', state ? { state } : {})}"
      ><span class="tile-n">${n.toLocaleString('en-US')}</span><span class="tile-label">${label}</span></a
    >`;
  return html`<section class="tiles" aria-label="Instances per state">
    ${tile('', 'Instances', d.counts.total)}${FLEET_STATES.map((s) => tile(s, STATE_LABELS[s], d.counts[s]))}
  </section>`;
}

function charts(d: FleetPageData): Html {
  const minute = (ms: number): string => new Date(ms).toISOString().slice(11, 16);
  const first = d.activity[0]?.start;
  const last = d.activity.at(-1)?.start;
  const ends: [string, string] | undefined =
    first !== undefined && last !== undefined ? [`${minute(first)}Z`, `${minute(last)}Z`] : undefined;
  const per =
    d.activityBucketMs >= 3600_000
      ? 'hour'
      : d.activityBucketMs > 60_000
        ? `${d.activityBucketMs / 60_000} min`
        : 'minute';
  const series = (name: string, tone: string, pick: (b: FleetBucket) => number, what: string): Html =>
    barChart({
      name: `${name} per ${per}`,
      tone,
      bars: d.activity.map((b) => ({ value: pick(b), title: `${minute(b.start)}Z: ${pick(b)} ${what}` })),
      ...(ends ? { ends } : {}),
      width: 300,
      height: 96,
    });
  return html`<section class="charts" aria-label="Activity">
    ${series('Renewals', 'chart-ok', (b) => b.renewals, 'renewals')}
    ${series('Refusals', 'chart-refused', (b) => b.refusals, 'refusals')}
    ${series('Attestation failures', 'chart-failed', (b) => b.attestationFailures, 'attestation failures')}
    ${barChart({
      name: 'Certificate age',
      tone: 'chart-age',
      bars: d.ages.counts.map((n, i) => ({
        value: n,
        label: d.ages.bins[i]?.label ?? '',
        title: `${d.ages.bins[i]?.range ?? ''}: ${n} certificates`,
      })),
      width: 300,
      height: 96,
    })}
    <p class="charts-at muted small">Charts as of ${utc(d.chartsAt)} (kept 30 s; the table is live)</p>
  </section>`;
}

function filterForm(d: FleetPageData): Html {
  const f = d.filter;
  const option = (value: string, label: string, current: string): Html =>
    html`<option value="${value}" ${value === current ? html` selected` : ''}>${label}</option>`;
  return html`<form class="filters" method="get" action="/ui/" role="search">
    <label
      >Search <input type="search" name="q" value="${f.q}" maxlength="200" placeholder="instance, SPIFFE ID or bot"
    /></label>
    <label
      >Bot
      <select name="bot">
        ${option('', 'any', f.bot)}${d.bots.map((b) => option(b, b, f.bot))}${
          f.bot && !d.bots.includes(f.bot) ? option(f.bot, f.bot, f.bot) : ''
        }
      </select></label
    >
    <label
      >Join method
      <select name="method">
        ${option('', 'any', f.method)}${d.methods.map((m) => option(m, m, f.method))}
      </select></label
    >
    <label
      >State
      <select name="state">
        ${option('', 'any', f.state)}${FLEET_STATES.map((s) => option(s, STATE_LABELS[s], f.state))}
      </select></label
    >
    <label
      >Expires within
      <select name="expires">
        ${option('', 'any time', f.expires)}${Object.keys(EXPIRES_WITHIN).map((e) => option(e, e, f.expires))}
      </select></label
    >
    <label
      >Rows
      <select name="per">
        ${PAGE_SIZES.map((n) => option(String(n), String(n), String(f.per)))}
      </select></label
    >
    <input type="hidden" name="sort" value="${f.sort}" /><input type="hidden" name="order" value="${f.order}" />
    <button type="submit">Filter</button> <a class="reset" href="/ui/">Reset</a>
  </form>`;
}

function sortHeader(d: FleetPageData, key: FleetFilter['sort'], label: string): Html {
  const f = d.filter;
  const current = f.sort === key;
  const order = current && f.order === 'asc' ? 'desc' : current ? 'asc' : key === 'last_seen' ? 'desc' : 'asc';
  const arrow = current ? (f.order === 'asc' ? ' ▲' : ' ▼') : '';
  return html`<th scope="col" ${current ? html` aria-sort="${f.order === 'asc' ? 'ascending' : 'descending'}"` : ''}>
    <a href="${href('/ui/', filterParams(f, { sort: key, order, page: 1 }))}">${label}${arrow}</a>
  </th>`;
}

function attestationCell(r: FleetRow, now: number): Html {
  if (r.attestationOk === null) return html`<span class="muted">—</span>`;
  const when = r.attestationAt !== null ? html` <span class="muted">${relative(r.attestationAt, now)}</span>` : '';
  return r.attestationOk
    ? html`<span class="badge badge-ok">ok</span>${when}`
    : html`<span class="badge badge-bad">failed</span>${when}`;
}

function row(r: FleetRow, now: number): Html {
  const key = keyStorageLabel(r.keyStorage, r.exportable);
  const overdue = r.states.includes('renewal_overdue');
  const expired = r.states.includes('expired');
  return html`<tr>
    <td class="mono clip" title="${r.id}"><a href="${machineHref(r.id)}">${r.id}</a></td>
    <td class="clip" title="${r.bot}">${r.bot}</td>
    <td>${r.joinMethod}</td>
    <td>
      ${key.proven ? html`<span class="badge badge-hw">${r.keyStorage}</span>` : html`<span class="muted">${key.text}</span>`}
    </td>
    <td class="mono small clip" title="${r.spiffeId}">${r.spiffeId}</td>
    <td class="mono small" title="${r.currentSerial ?? ''}">
      ${r.currentSerial ? r.currentSerial.slice(0, 12) : '—'}<span class="muted"> g${r.generation}</span>
    </td>
    <td${expired ? html` class="bad"` : overdue ? html` class="warn"` : ''} title="${utc(r.currentNotAfter)}">
      ${relative(r.currentNotAfter, now)}
    </td>
    <td title="${utc(r.currentNotBefore)}">${relative(r.currentNotBefore, now)}</td>
    <td title="${utc(r.lastSeenAt)}">${relative(r.lastSeenAt, now)}</td>
    <td>${attestationCell(r, now)}</td>
    <td>${r.locked ? html`<span class="badge badge-bad" title="${r.lockReason ?? ''}">locked</span>` : ''}</td>
    <td>${r.transport ?? html`<span class="muted">—</span>`}</td>
    <td class="mono small clip" title="${r.agentVersion ?? ''}">
      ${r.agentVersion ?? html`<span class="muted">—</span>`}
    </td>
  </tr>`;
}

function pager(d: FleetPageData): Html {
  const f = d.filter;
  const pages = Math.max(1, Math.ceil(d.total / f.per));
  const from = d.total === 0 ? 0 : (f.page - 1) * f.per + 1;
  const to = Math.min(d.total, f.page * f.per);
  const link = (page: number, label: string): Html =>
    page >= 1 && page <= pages && page !== f.page
      ? html`<a href="${href('/ui/', filterParams(f, { page }))}">${label}</a>`
      : html`<span class="muted">${label}</span>`;
  return html`<nav class="pager" aria-label="Pages">
    ${from.toLocaleString('en-US')}–${to.toLocaleString('en-US')} of ${d.total.toLocaleString('en-US')} ·
    ${link(1, '« first')} ${link(f.page - 1, '‹ previous')}
    <span>page ${f.page} of ${pages.toLocaleString('en-US')}</span> ${link(f.page + 1, 'next ›')}
    ${link(pages, 'last »')}
  </nav>`;
}

/** Transport and agent version come last: the state columns stay in view on a 1440 px screen, these two scroll. */
export function fleetPage(d: FleetPageData): Html {
  return html`<h1>Fleet</h1>
    ${countTiles(d)} ${charts(d)} ${filterForm(d)} ${pager(d)}
    <div class="table-wrap">
      <table class="fleet">
        <thead>
          <tr>
            ${sortHeader(d, 'id', 'Instance')}${sortHeader(d, 'bot', 'Bot')}${sortHeader(d, 'join_method', 'Join method')}
            <th scope="col" title="hardware-proven key storage is a badge; software keys are grey">Key</th>
            <th scope="col">SPIFFE ID</th>
            ${sortHeader(d, 'generation', 'Serial')}${sortHeader(d, 'expires', 'Expires')}
            <th scope="col" title="notBefore of the current certificate">Last renewal</th>
            ${sortHeader(d, 'last_seen', 'Last seen')}
            <th scope="col">Attestation</th>
            <th scope="col">Locked</th>
            <th scope="col" title="the carrier of its last join or renewal, as the issuer saw it">Transport</th>
            <th scope="col" title="what the agent says it runs: its claim, not verified">Agent version</th>
          </tr>
        </thead>
        <tbody>
          ${
            d.rows.length
              ? d.rows.map((r) => row(r, d.now))
              : html`<tr>
                  <td colspan="13" class="empty">No instance matches.</td>
                </tr>`
          }
        </tbody>
      </table>
    </div>
    ${pager(d)}`;
}
