/** Policy documents (roles, bots, join rules) applied with `sigil ctl apply`. */
import type BetterSqlite3 from 'better-sqlite3';
import type { Resource, ResourceKind } from '../types.js';
import type { SyncResourceStore } from './sync-types.js';
import { canonicalJson } from './canonical-json.js';

interface ResourceRow {
  kind: ResourceKind;
  name: string;
  spec: string;
  created_at: number;
  updated_at: number;
}

type PutResult = 'created' | 'updated' | 'unchanged';

export class SqliteResourceStore implements SyncResourceStore {
  private readonly getStmt: BetterSqlite3.Statement<[ResourceKind, string], ResourceRow>;
  private readonly listStmt: BetterSqlite3.Statement<[ResourceKind], ResourceRow>;
  private readonly insertStmt: BetterSqlite3.Statement<[ResourceKind, string, string, number, number]>;
  private readonly updateStmt: BetterSqlite3.Statement<[string, number, ResourceKind, string]>;
  private readonly deleteStmt: BetterSqlite3.Statement<[ResourceKind, string]>;
  private readonly putTx: BetterSqlite3.Transaction<
    (kind: ResourceKind, name: string, spec: string, now: number) => PutResult
  >;

  constructor(db: BetterSqlite3.Database) {
    const cols = 'kind, name, spec, created_at, updated_at';
    this.getStmt = db.prepare(`SELECT ${cols} FROM resources WHERE kind = ? AND name = ?`);
    this.listStmt = db.prepare(`SELECT ${cols} FROM resources WHERE kind = ? ORDER BY name`);
    this.insertStmt = db.prepare(`INSERT INTO resources (${cols}) VALUES (?, ?, ?, ?, ?)`);
    this.updateStmt = db.prepare('UPDATE resources SET spec = ?, updated_at = ? WHERE kind = ? AND name = ?');
    this.deleteStmt = db.prepare('DELETE FROM resources WHERE kind = ? AND name = ?');
    this.putTx = db.transaction((kind: ResourceKind, name: string, spec: string, now: number): PutResult => {
      const existing = this.getStmt.get(kind, name);
      if (!existing) {
        this.insertStmt.run(kind, name, spec, now, now);
        return 'created';
      }
      // Stored specs are canonical, so string equality is deep equality.
      if (existing.spec === spec) return 'unchanged';
      this.updateStmt.run(spec, now, kind, name);
      return 'updated';
    });
  }

  put(kind: ResourceKind, name: string, spec: Record<string, unknown>, now: number): PutResult {
    return this.putTx.immediate(kind, name, canonicalJson(spec), now);
  }

  get(kind: ResourceKind, name: string): Resource | undefined {
    const row = this.getStmt.get(kind, name);
    return row && toResource(row);
  }

  list(kind: ResourceKind): Resource[] {
    return this.listStmt.all(kind).map(toResource);
  }

  delete(kind: ResourceKind, name: string): boolean {
    return this.deleteStmt.run(kind, name).changes > 0;
  }
}

function toResource(row: ResourceRow): Resource {
  return {
    kind: row.kind,
    name: row.name,
    spec: JSON.parse(row.spec) as Record<string, unknown>,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
