/**
 * The fleet page's query string, parsed into a FleetQuery (server/store/fleet-types.ts). Every
 * filter is a GET form field, so a filtered view is a link an operator can share. Anything out
 * of range is refused with the field's name (never silently widened: a typo must not show
 * "everything" as if it were the answer).
 */
import { SigilError } from '../../errors.js';
import { FLEET_STATES, type FleetQuery, type FleetSortKey, type FleetState } from '../store/fleet-types.js';

export const FLEET_SORT_KEYS: readonly FleetSortKey[] = [
  'id',
  'bot',
  'join_method',
  'last_seen',
  'expires',
  'created',
  'generation',
];

/** "expires within" choices (certificates live at most 24 h). */
export const EXPIRES_WITHIN: Readonly<Record<string, number>> = {
  '5m': 5 * 60_000,
  '15m': 15 * 60_000,
  '1h': 3600_000,
  '6h': 6 * 3600_000,
  '24h': 24 * 3600_000,
};

export const PAGE_SIZES = [25, 50, 100, 200] as const;
const MAX_PAGE = 100_000;

/** The form's values as given (to render the form back) and the store query they mean. */
export interface FleetFilter {
  bot: string;
  method: string;
  state: FleetState | '';
  q: string;
  expires: string;
  sort: FleetSortKey;
  order: 'asc' | 'desc';
  page: number;
  per: number;
}

function one(params: URLSearchParams, name: string, max: number): string {
  const all = params.getAll(name);
  if (all.length > 1) throw new SigilError('bad_request', `the filter "${name}" is given more than once`);
  const v = (all[0] ?? '').trim();
  if (v.length > max) throw new SigilError('bad_request', `the filter "${name}" is longer than ${max} characters`);
  return v;
}

export function parseFleetFilter(params: URLSearchParams): FleetFilter {
  const state = one(params, 'state', 32);
  if (state !== '' && !(FLEET_STATES as readonly string[]).includes(state))
    throw new SigilError('bad_request', `unknown state "${state}" (one of ${FLEET_STATES.join(', ')})`);
  const expires = one(params, 'expires', 8);
  if (expires !== '' && !(expires in EXPIRES_WITHIN))
    throw new SigilError('bad_request', `"expires within" must be one of ${Object.keys(EXPIRES_WITHIN).join(', ')}`);
  const sort = one(params, 'sort', 32) || 'last_seen';
  if (!(FLEET_SORT_KEYS as readonly string[]).includes(sort))
    throw new SigilError('bad_request', `unknown sort "${sort}" (one of ${FLEET_SORT_KEYS.join(', ')})`);
  const order = one(params, 'order', 4) || (sort === 'last_seen' || sort === 'created' ? 'desc' : 'asc');
  if (order !== 'asc' && order !== 'desc') throw new SigilError('bad_request', 'order must be asc or desc');
  const pageText = one(params, 'page', 6) || '1';
  const page = /^\d+$/.test(pageText) ? Number(pageText) : NaN;
  if (!(page >= 1 && page <= MAX_PAGE)) throw new SigilError('bad_request', `page must be 1..${MAX_PAGE}`);
  const perText = one(params, 'per', 3) || '50';
  const per = Number(perText);
  if (!(PAGE_SIZES as readonly number[]).includes(per))
    throw new SigilError('bad_request', `per (rows per page) must be one of ${PAGE_SIZES.join(', ')}`);
  return {
    bot: one(params, 'bot', 128),
    method: one(params, 'method', 64),
    state: state as FleetState | '',
    q: one(params, 'q', 200),
    expires,
    sort: sort as FleetSortKey,
    order,
    page,
    per,
  };
}

export function toFleetQuery(f: FleetFilter, now: number): FleetQuery {
  return {
    ...(f.bot ? { bot: f.bot } : {}),
    ...(f.method ? { joinMethod: f.method } : {}),
    ...(f.state ? { state: f.state } : {}),
    ...(f.q ? { search: f.q } : {}),
    ...(f.expires ? { expiresWithinMs: EXPIRES_WITHIN[f.expires]! } : {}),
    sort: f.sort,
    order: f.order,
    limit: f.per,
    offset: (f.page - 1) * f.per,
    now,
  };
}

/** The filter as query parameters (defaults left out), for links that change one field. */
export function filterParams(f: FleetFilter, change: Partial<FleetFilter> = {}): Record<string, string | number> {
  const g = { ...f, ...change };
  const out: Record<string, string | number> = {};
  if (g.bot) out['bot'] = g.bot;
  if (g.method) out['method'] = g.method;
  if (g.state) out['state'] = g.state;
  if (g.q) out['q'] = g.q;
  if (g.expires) out['expires'] = g.expires;
  if (g.sort !== 'last_seen') out['sort'] = g.sort;
  out['order'] = g.order;
  if (g.page !== 1) out['page'] = g.page;
  if (g.per !== 50) out['per'] = g.per;
  return out;
}
