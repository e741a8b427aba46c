/**
 * Which SPIFFE ID each workload SVID of an instance was issued for, for `sigil ctl instances show`
 * (issue #17). The certificates table records a workload SVID's serial, kind and lifetime but not
 * its SPIFFE ID (an entry's ID can change; the table keeps what every certificate has); the
 * issuance's audit row has it (server/ops/workload.ts: action `workload`, details `spiffe_id`,
 * `entry`, `serial`). So the view reads this instance's successful workload rows, newest first,
 * until every serial asked for is found or the rows run out.
 *
 * Display only: nothing is decided on it. A row the retention pruned shows no ID (null); a row a
 * database writer edited is shown as edited, and `sigil ctl audit verify` names it (hash chain).
 */
import type { Stores } from '../store/types.js';
import { FLEET_MAX_LIMIT } from '../store/fleet-query.js';

export interface WorkloadSvidId {
  spiffe_id: string;
  entry: string;
}

/** At most this many audit pages are read for one instance (each FLEET_MAX_LIMIT rows, newest first). */
const MAX_PAGES = 20;

export async function workloadSvidIds(
  stores: Stores,
  instanceId: string,
  serials: ReadonlySet<string>,
): Promise<Map<string, WorkloadSvidId>> {
  const found = new Map<string, WorkloadSvidId>();
  let beforeSeq: number | undefined;
  for (let page = 0; page < MAX_PAGES && found.size < serials.size; page++) {
    const rows = await stores.fleet.audit({
      instanceId,
      action: 'workload',
      outcome: 'ok',
      limit: FLEET_MAX_LIMIT,
      ...(beforeSeq === undefined ? {} : { beforeSeq }),
    });
    for (const r of rows) {
      const { serial, spiffe_id: id, entry } = r.details;
      if (typeof serial === 'string' && serials.has(serial) && !found.has(serial) && typeof id === 'string')
        found.set(serial, { spiffe_id: id, entry: typeof entry === 'string' ? entry : '' });
    }
    if (rows.length < FLEET_MAX_LIMIT) break;
    beforeSeq = rows[rows.length - 1]!.seq;
  }
  return found;
}
