/**
 * The fleet read model's SQL (fleet-types.ts), written once for both backends: the checks on a
 * viewer's query, the state predicates, and the statements with their parameters. The backends
 * (sqlite/fleet.ts, postgres/fleet.ts) only run them and map rows.
 *
 * Everything a viewer sends reaches the database as a bound parameter, never as SQL text: the
 * search string (a LIKE pattern with the viewer's own `%`, `_` and `\` escaped), the filters, the
 * limit and offset. The sort key and order are looked up in a fixed table (an unknown one is
 * refused), so no part of the statement text comes from the request (docs/store-contract.md,
 * "Fleet read model: attacks").
 *
 * The state of an instance is decided from four columns of `instances`: `locked`,
 * `current_not_after`, `current_not_before` (the current certificate's notBefore, written by
 * `recordIssue`) and `attestation_ok` (facts.attestation.ok, written with the facts): no join and
 * no JSON parsing per row, so filters and counts are index or narrow scans (migration 7 on
 * SQLite, 2 on PostgreSQL).
 */
import { badQuery, checkInt, checkText, checkTime, describeValue } from './fleet-checks.js';
import type { FleetQuery, FleetRow, FleetSortKey, FleetState } from './fleet-types.js';
import { FLEET_STATES, ISSUE_BACKDATE_MS } from './fleet-types.js';

export const FLEET_DEFAULT_LIMIT = 50;
export const FLEET_MAX_LIMIT = 500;
/** Longest search string (characters). */
export const FLEET_MAX_SEARCH = 200;
/**
 * Deepest offset accepted. The database walks `offset` rows before the page: this caps what one
 * request can make it walk (far beyond a fleet of 100,000 at 500 rows a page).
 */
export const FLEET_MAX_OFFSET = 10_000_000;
/** Most edges of the certificate age histogram. */
export const MAX_AGE_EDGES = 100;

/** What differs between the two SQL dialects in these statements. */
export interface FleetDialect {
  /** Boolean columns: SQLite stores 0/1, PostgreSQL BOOLEAN. */
  readonly yes: string;
  readonly no: string;
  /** A text column compared and ordered byte-wise (PostgreSQL: COLLATE "C", as SQLite). */
  text(col: string): string;
  /** Case-insensitive LIKE with `\` as the escape character. */
  readonly like: string;
  /** ORDER BY suffix so NULL expiries sort as the smallest value on both backends. */
  nulls(dir: 'ASC' | 'DESC'): string;
  /**
   * A column as an ORDER BY key the planner cannot walk an index for (the same value and order).
   * For a search, which must look at every row anyway, both planners otherwise walk the sort
   * key's index and fetch every row on the way in index order (SQLite ~130 ms at 100,000, even for
   * a search matching one row) instead of scanning once and sorting the matches (~20 ms).
   */
  sortOnly(col: string, text: boolean): string;
}

export const SQLITE_DIALECT: FleetDialect = {
  yes: '1',
  no: '0',
  text: (col) => col,
  like: 'LIKE',
  // SQLite already orders NULL first ascending and last descending.
  nulls: () => '',
  // Unary + keeps the value (text too) and hides the column from the planner's index choice.
  sortOnly: (col) => `+${col}`,
};

export const POSTGRES_DIALECT: FleetDialect = {
  yes: 'true',
  no: 'false',
  text: (col) => `${col} COLLATE "C"`,
  like: 'ILIKE',
  nulls: (dir) => (dir === 'ASC' ? ' NULLS FIRST' : ' NULLS LAST'),
  sortOnly: (col, text) => (text ? `(${col} || '') COLLATE "C"` : `(${col} + 0)`),
};

/** A statement with `?` placeholders (PostgreSQL: see `numbered`) and its parameters, in order. */
export interface Statement {
  text: string;
  params: Array<string | number>;
}

/** `?` → `$1, $2, …` for PostgreSQL (the statements here contain no other `?`). */
export function numbered(text: string): string {
  let n = 0;
  return text.replace(/\?/g, () => `$${++n}`);
}

/** The instance columns of a fleet row (`facts`: attestation time, firmware profile, transport, agent version). */
export const FLEET_COLUMNS =
  'id, bot, join_method, spiffe_id, generation, key_storage, exportable, locked, lock_reason, current_serial, ' +
  'current_not_before, current_not_after, created_at, updated_at, last_seen_at, attestation_ok, facts';

export interface FleetDbRow {
  id: string;
  bot: string;
  join_method: string;
  spiffe_id: string;
  generation: number;
  key_storage: FleetRow['keyStorage'];
  exportable: boolean | 0 | 1;
  locked: boolean | 0 | 1;
  lock_reason: string | null;
  current_serial: string | null;
  current_not_before: number | null;
  current_not_after: number | null;
  created_at: number;
  updated_at: number;
  last_seen_at: number;
  attestation_ok: boolean | 0 | 1 | null;
  facts: string;
}

const SORT_COLUMNS: Readonly<Record<FleetSortKey, { col: string; text: boolean; nullable: boolean }>> = {
  id: { col: 'id', text: true, nullable: false },
  bot: { col: 'bot', text: true, nullable: false },
  join_method: { col: 'join_method', text: true, nullable: false },
  last_seen: { col: 'last_seen_at', text: false, nullable: false },
  expires: { col: 'current_not_after', text: false, nullable: true },
  created: { col: 'created_at', text: false, nullable: false },
  generation: { col: 'generation', text: false, nullable: false },
};

/** A query after its checks: every field present and in range. */
export interface CheckedFleetQuery {
  bot?: string;
  joinMethod?: string;
  state?: FleetState;
  search?: string;
  expiresWithinMs?: number;
  sort: FleetSortKey;
  order: 'asc' | 'desc';
  limit: number;
  offset: number;
  now: number;
}

/** Check a viewer's fleet query (SigilError bad_request naming the field) and fill in the defaults. */
export function checkFleetQuery(q: FleetQuery): CheckedFleetQuery {
  const sort = q.sort ?? 'id';
  if (!Object.hasOwn(SORT_COLUMNS, sort))
    throw badQuery('sort', `must be one of ${Object.keys(SORT_COLUMNS).join(', ')} (got ${describeValue(sort)})`);
  const order = q.order ?? 'asc';
  if (order !== 'asc' && order !== 'desc') throw badQuery('order', `must be asc or desc (got ${describeValue(order)})`);
  if (q.state !== undefined && !FLEET_STATES.includes(q.state))
    throw badQuery('state', `must be one of ${FLEET_STATES.join(', ')} (got ${describeValue(q.state)})`);
  const search = checkText('search', q.search, FLEET_MAX_SEARCH);
  const out: CheckedFleetQuery = {
    sort,
    order,
    limit: q.limit === undefined ? FLEET_DEFAULT_LIMIT : checkInt('limit', q.limit, 1, FLEET_MAX_LIMIT),
    offset: q.offset === undefined ? 0 : checkInt('offset', q.offset, 0, FLEET_MAX_OFFSET),
    now: checkTime('now', q.now),
  };
  const bot = checkText('bot', q.bot);
  const joinMethod = checkText('joinMethod', q.joinMethod);
  if (bot !== undefined) out.bot = bot;
  if (joinMethod !== undefined) out.joinMethod = joinMethod;
  if (q.state !== undefined) out.state = q.state;
  if (search !== undefined && search !== '') out.search = search;
  if (q.expiresWithinMs !== undefined)
    out.expiresWithinMs = checkInt('expiresWithinMs', q.expiresWithinMs, 0, Number.MAX_SAFE_INTEGER - out.now);
  return out;
}

/** `s` as a LIKE pattern matching it literally anywhere: the viewer's `\`, `%`, `_` escaped (ESCAPE '\'). */
export function containsPattern(s: string): string {
  return `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * The state predicates at `now` (the header of fleet-types.ts), each with its own parameters.
 * NULL-safe: an instance without a certificate is neither expired nor overdue, one that never
 * attested has not failed attestation.
 */
export function statePredicate(d: FleetDialect, state: FleetState, now: number): Statement {
  switch (state) {
    case 'locked':
      return { text: `locked = ${d.yes}`, params: [] };
    case 'expired':
      return { text: 'current_not_after <= ?', params: [now] };
    case 'renewal_overdue':
      // Past 2/3 of the lifetime from the issue (i = notBefore + backdate, fleet-types.ts):
      // i + 2/3 (notAfter - i) <= now  <=>  2 notAfter + notBefore + backdate <= 3 now.
      return {
        text: `locked = ${d.no} AND current_not_after > ? AND 2 * current_not_after + current_not_before <= ?`,
        params: [now, 3 * now - ISSUE_BACKDATE_MS],
      };
    case 'attestation_failed':
      return { text: `attestation_ok = ${d.no}`, params: [] };
    case 'healthy':
      return {
        text:
          `locked = ${d.no} AND (attestation_ok IS NULL OR attestation_ok = ${d.yes}) AND (current_not_after IS NULL ` +
          'OR (current_not_after > ? AND (current_not_before IS NULL OR 2 * current_not_after + current_not_before > ?)))',
        params: [now, 3 * now - ISSUE_BACKDATE_MS],
      };
  }
}

/** The WHERE clause of a checked query ('' when it matches every instance). */
export function fleetWhere(d: FleetDialect, q: CheckedFleetQuery): Statement {
  const parts: string[] = [];
  const params: Array<string | number> = [];
  if (q.bot !== undefined) {
    parts.push(`${d.text('bot')} = ?`);
    params.push(q.bot);
  }
  if (q.joinMethod !== undefined) {
    parts.push(`${d.text('join_method')} = ?`);
    params.push(q.joinMethod);
  }
  if (q.state !== undefined) {
    const p = statePredicate(d, q.state, q.now);
    parts.push(`(${p.text})`);
    params.push(...p.params);
  }
  if (q.expiresWithinMs !== undefined) {
    parts.push('current_not_after > ? AND current_not_after <= ?');
    params.push(q.now, q.now + q.expiresWithinMs);
  }
  if (q.search !== undefined) {
    const pattern = containsPattern(q.search);
    parts.push(`(id ${d.like} ? ESCAPE '\\' OR spiffe_id ${d.like} ? ESCAPE '\\' OR bot ${d.like} ? ESCAPE '\\')`);
    params.push(pattern, pattern, pattern);
  }
  return { text: parts.length === 0 ? '' : `WHERE ${parts.join(' AND ')}`, params };
}

/**
 * The page and the total in one statement. Without a search the total is an uncorrelated
 * subquery (computed once, from an index where there is one) and the page walks the sort key's
 * index. With a search every row must be looked at anyway: one scan counts the matches
 * (`count(*) OVER ()`, before LIMIT) and sorts them. (Tried for PostgreSQL's unindexed expiry
 * filters too: no better, sorting every match's wide row costs what the second scan saved.) When the page is empty (offset past the end)
 * the total comes from `fleetCountStatement`.
 */
export function fleetPageStatement(d: FleetDialect, q: CheckedFleetQuery): Statement {
  const where = fleetWhere(d, q);
  const key = SORT_COLUMNS[q.sort];
  const dir = q.order === 'asc' ? 'ASC' : 'DESC';
  const scan = q.search !== undefined;
  const term = (col: string, text: boolean) => (scan ? d.sortOnly(col, text) : text ? d.text(col) : col);
  const id = `${term('id', true)} ${dir}`;
  const order = q.sort === 'id' ? id : `${term(key.col, key.text)} ${dir}${key.nullable ? d.nulls(dir) : ''}, ${id}`;
  if (scan)
    return {
      text:
        `SELECT ${FLEET_COLUMNS}, count(*) OVER () AS total ` +
        `FROM instances ${where.text} ORDER BY ${order} LIMIT ? OFFSET ?`,
      params: [...where.params, q.limit, q.offset],
    };
  return {
    text:
      `SELECT ${FLEET_COLUMNS}, (SELECT count(*) FROM instances ${where.text}) AS total ` +
      `FROM instances ${where.text} ORDER BY ${order} LIMIT ? OFFSET ?`,
    params: [...where.params, ...where.params, q.limit, q.offset],
  };
}

export function fleetCountStatement(d: FleetDialect, q: CheckedFleetQuery): Statement {
  const where = fleetWhere(d, q);
  return { text: `SELECT count(*) AS total FROM instances ${where.text}`, params: where.params };
}

/** Instances per state and in all, one pass over the state columns. */
export function fleetCountsStatement(d: FleetDialect, now: number): Statement {
  const cols: string[] = ['count(*) AS total'];
  const params: Array<string | number> = [];
  for (const s of FLEET_STATES) {
    const p = statePredicate(d, s, now);
    cols.push(`coalesce(sum(CASE WHEN ${p.text} THEN 1 ELSE 0 END), 0) AS ${s}`);
    params.push(...p.params);
  }
  return { text: `SELECT ${cols.join(', ')} FROM instances`, params };
}

/** Check the histogram edges: integers, ascending, at most MAX_AGE_EDGES. */
export function checkAgeEdges(edgesMs: readonly number[]): readonly number[] {
  if (!Array.isArray(edgesMs) || edgesMs.length > MAX_AGE_EDGES)
    throw badQuery('edgesMs', `must be an array of at most ${MAX_AGE_EDGES} edges`);
  edgesMs.forEach((e, i) => {
    checkInt(`edgesMs[${i}]`, e, 0, Number.MAX_SAFE_INTEGER);
    if (i > 0 && e <= edgesMs[i - 1]!) throw badQuery('edgesMs', 'must be strictly ascending');
  });
  return edgesMs;
}

/**
 * Certificate ages (now - notBefore) bucketed in SQL. With edges e0 < … < e(k-1) there are k+1
 * buckets: bucket 0 holds ages < e0, bucket i ages in [e(i-1), e(i)), bucket k ages >= e(k-1).
 * Only unexpired instances with a current certificate count.
 */
export function ageStatement(now: number, edgesMs: readonly number[]): Statement {
  const params: Array<string | number> = [];
  const whens = edgesMs.map((e, i) => {
    params.push(now - e);
    // age < e  <=>  notBefore > now - e
    return `WHEN current_not_before > ? THEN ${i}`;
  });
  const bucket = edgesMs.length === 0 ? '0' : `CASE ${whens.join(' ')} ELSE ${edgesMs.length} END`;
  return {
    text:
      `SELECT ${bucket} AS b, count(*) AS n FROM instances ` +
      'WHERE current_not_after > ? AND current_not_before IS NOT NULL GROUP BY 1',
    params: [...params, now],
  };
}

/** The histogram (edges.length + 1 buckets) from the counted rows. */
export function ageBuckets(edgesMs: readonly number[], rows: Array<{ b: number; n: number }>): number[] {
  const out = new Array<number>(edgesMs.length + 1).fill(0);
  for (const r of rows) out[Number(r.b)] = Number(r.n);
  return out;
}

const truthy = (v: boolean | 0 | 1 | null): boolean | null => (v === null ? null : v === true || v === 1);

/** The states of one row at `now`, the same rules as `statePredicate` (the conformance suite checks both agree). */
export function statesOf(r: FleetDbRow, now: number): FleetState[] {
  const out: FleetState[] = [];
  const locked = truthy(r.locked) === true;
  const na = r.current_not_after;
  const nb = r.current_not_before;
  const expired = na !== null && na <= now;
  if (locked) out.push('locked');
  if (expired) out.push('expired');
  if (!locked && na !== null && !expired && nb !== null && 2 * na + nb <= 3 * now - ISSUE_BACKDATE_MS)
    out.push('renewal_overdue');
  if (truthy(r.attestation_ok) === false) out.push('attestation_failed');
  if (out.length === 0) out.push('healthy');
  return out;
}

/** One database row as the contract's FleetRow. */
export function toFleetRow(r: FleetDbRow, now: number): FleetRow {
  const facts = JSON.parse(r.facts) as Record<string, unknown>;
  const att = facts['attestation'];
  const at = att !== null && typeof att === 'object' ? (att as Record<string, unknown>)['at'] : undefined;
  const profile = facts['firmware_profile'];
  const transport = facts['transport'];
  const agentVersion = facts['agent_version'];
  return {
    id: r.id,
    bot: r.bot,
    joinMethod: r.join_method,
    spiffeId: r.spiffe_id,
    generation: Number(r.generation),
    keyStorage: r.key_storage,
    exportable: truthy(r.exportable) === true,
    locked: truthy(r.locked) === true,
    lockReason: r.lock_reason,
    currentSerial: r.current_serial,
    currentNotBefore: r.current_not_before === null ? null : Number(r.current_not_before),
    currentNotAfter: r.current_not_after === null ? null : Number(r.current_not_after),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    lastSeenAt: Number(r.last_seen_at),
    attestationOk: truthy(r.attestation_ok),
    attestationAt: typeof at === 'number' ? at : null,
    firmwareProfile: typeof profile === 'string' ? profile : null,
    // Written by the join and renew handlers (server/ops/agent-facts.ts); a database writer could
    // put anything there: strings only, escaped by the page like every value.
    transport: typeof transport === 'string' ? transport : null,
    agentVersion: typeof agentVersion === 'string' ? agentVersion : null,
    states: statesOf(r, now),
  };
}

/** facts.attestation.ok as the `attestation_ok` column: true/false when it is a boolean, else null. */
export function attestationOkOf(facts: Record<string, unknown>): boolean | null {
  const att = facts['attestation'];
  if (att === null || typeof att !== 'object') return null;
  const ok = (att as Record<string, unknown>)['ok'];
  return typeof ok === 'boolean' ? ok : null;
}
