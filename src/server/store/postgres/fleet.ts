/**
 * The fleet read model (../fleet-types.ts) on PostgreSQL: the statements of ../fleet-query.ts on
 * any pooled connection (reads outside a transaction, READ COMMITTED: committed data only),
 * prepared by the driver per connection. Every viewer value is a bound parameter; the statement
 * text comes only from ../fleet-query.ts's fixed pieces.
 */
import type { AuditRecord } from '../types.js';
import type { AuditQuery, FleetBucket, FleetPage, FleetQuery, FleetState, FleetStore } from '../fleet-types.js';
import {
  ageBuckets,
  ageStatement,
  checkAgeEdges,
  checkFleetQuery,
  fleetCountsStatement,
  fleetCountStatement,
  fleetPageStatement,
  numbered,
  POSTGRES_DIALECT,
  toFleetRow,
  type FleetDbRow,
  type Statement,
} from '../fleet-query.js';
import { activityBuckets, activityStatement, auditStatement, checkActivity } from '../fleet-audit-query.js';
import { checkTime } from '../fleet-checks.js';
import { toRecord, type AuditRow } from '../sqlite/audit.js';
import type { Db } from './db.js';

const AUDIT_COLS = 'seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details, prev_hash, hash';

/** Waits for the store to be ready and maps connection trouble (./stores.ts PostgresStores.enter). */
export type Enter = <T>(call: () => Promise<T>) => Promise<T>;

export class PgFleetStore implements FleetStore {
  constructor(
    private readonly db: Db,
    private readonly enter: Enter,
  ) {}

  async page(q: FleetQuery): Promise<FleetPage> {
    const c = checkFleetQuery(q);
    return this.enter(async () => {
      const rows = await this.all<FleetDbRow & { total: number }>(fleetPageStatement(POSTGRES_DIALECT, c));
      const total =
        rows.length > 0
          ? Number(rows[0]!.total)
          : Number((await this.all<{ total: number }>(fleetCountStatement(POSTGRES_DIALECT, c)))[0]!.total);
      return { rows: rows.map((r) => toFleetRow(r, c.now)), total };
    });
  }

  async counts(now: number): Promise<Record<FleetState, number> & { total: number }> {
    checkTime('now', now);
    return this.enter(async () => {
      const [r] = await this.all<Record<FleetState | 'total', number>>(fleetCountsStatement(POSTGRES_DIALECT, now));
      const out = {} as Record<FleetState | 'total', number>;
      for (const [k, v] of Object.entries(r!)) out[k as FleetState | 'total'] = Number(v);
      return out;
    });
  }

  async audit(q: AuditQuery): Promise<AuditRecord[]> {
    const s = auditStatement(q, AUDIT_COLS);
    return this.enter(async () => (await this.all<AuditRow>(s)).map(toRecord));
  }

  async activity(from: number, to: number, bucketMs: number): Promise<FleetBucket[]> {
    const n = checkActivity(from, to, bucketMs);
    return this.enter(async () =>
      activityBuckets(
        from,
        bucketMs,
        n,
        await this.all<{ b: number; renewals: number; refusals: number; attestation_failures: number }>(
          activityStatement(from, to, bucketMs),
        ),
      ),
    );
  }

  async certificateAges(now: number, edgesMs: readonly number[]): Promise<number[]> {
    checkTime('now', now);
    const edges = checkAgeEdges(edgesMs);
    return this.enter(async () =>
      ageBuckets(edges, await this.all<{ b: number; n: number }>(ageStatement(now, edges))),
    );
  }

  private async all<R>(s: Statement): Promise<R[]> {
    const rows = await this.db.sql.unsafe(numbered(s.text), s.params, { prepare: true });
    return rows as unknown as R[];
  }
}
