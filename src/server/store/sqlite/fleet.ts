/**
 * The fleet read model (../fleet-types.ts) on SQLite: the statements of ../fleet-query.ts on the
 * read connection (or, in memory, behind the write queue: `run` decides, ./async.ts). Statements
 * are prepared once per query shape and kept by this store (the shapes are a small fixed set:
 * which filters are present, the sort key and order; every value is a parameter).
 */
import type BetterSqlite3 from 'better-sqlite3';
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
  SQLITE_DIALECT,
  toFleetRow,
  type FleetDbRow,
  type Statement,
} from '../fleet-query.js';
import { activityBuckets, activityStatement, auditStatement, checkActivity } from '../fleet-audit-query.js';
import { checkTime } from '../fleet-checks.js';
import { toRecord, type AuditRow } from './audit.js';

const AUDIT_COLS = 'seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details, prev_hash, hash';

/** Runs a read on the right connection at the right time (./async.ts). */
export type ReadRunner = <T>(read: () => T) => Promise<T>;

export class SqliteFleetStore implements FleetStore {
  /** Prepared statements by SQL text (bounded: one per query shape). */
  private readonly prepared = new Map<string, BetterSqlite3.Statement>();

  constructor(
    private readonly db: BetterSqlite3.Database,
    private readonly run: ReadRunner,
  ) {}

  page(q: FleetQuery): Promise<FleetPage> {
    return this.checked(() => checkFleetQuery(q)).then((c) =>
      this.run(() => {
        const rows = this.all<FleetDbRow & { total: number }>(fleetPageStatement(SQLITE_DIALECT, c));
        const total =
          rows.length > 0
            ? rows[0]!.total
            : this.all<{ total: number }>(fleetCountStatement(SQLITE_DIALECT, c))[0]!.total;
        return { rows: rows.map((r) => toFleetRow(r, c.now)), total };
      }),
    );
  }

  counts(now: number): Promise<Record<FleetState, number> & { total: number }> {
    return this.checked(() => checkTime('now', now)).then(() =>
      this.run(() => {
        const [r] = this.all<Record<FleetState | 'total', number>>(fleetCountsStatement(SQLITE_DIALECT, now));
        return r!;
      }),
    );
  }

  audit(q: AuditQuery): Promise<AuditRecord[]> {
    return this.checked(() => auditStatement(q, AUDIT_COLS)).then((s) =>
      this.run(() => this.all<AuditRow>(s).map(toRecord)),
    );
  }

  activity(from: number, to: number, bucketMs: number): Promise<FleetBucket[]> {
    return this.checked(() => checkActivity(from, to, bucketMs)).then((n) =>
      this.run(() =>
        activityBuckets(
          from,
          bucketMs,
          n,
          this.all<{ b: number; renewals: number; refusals: number; attestation_failures: number }>(
            activityStatement(from, to, bucketMs),
          ),
        ),
      ),
    );
  }

  certificateAges(now: number, edgesMs: readonly number[]): Promise<number[]> {
    return this.checked(() => {
      checkTime('now', now);
      return checkAgeEdges(edgesMs);
    }).then((edges) => this.run(() => ageBuckets(edges, this.all<{ b: number; n: number }>(ageStatement(now, edges)))));
  }

  /** The checks throw synchronously; the contract's methods reject instead. */
  private checked<T>(check: () => T): Promise<T> {
    try {
      return Promise.resolve(check());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private all<R>(s: Statement): R[] {
    let stmt = this.prepared.get(s.text);
    if (!stmt) {
      stmt = this.db.prepare(s.text);
      this.prepared.set(s.text, stmt);
    }
    return stmt.all(...s.params) as R[];
  }
}
