/** Policy documents (roles, bots, join rules) on PostgreSQL (types.ts ResourceStore). */
import type { PutResult, Resource, ResourceKind, ResourceStore } from '../types.js';
import { canonicalJson } from '../sqlite/canonical-json.js';
import { CHANGE_CHANNEL } from './change-feed.js';
import type { Db } from './db.js';

interface ResourceRow {
  kind: ResourceKind;
  name: string;
  spec: string;
  created_at: number;
  updated_at: number;
}

export class PgResourceStore implements ResourceStore {
  constructor(private readonly db: Db) {}

  /**
   * One statement decides created / updated / unchanged, so two issuers applying the same
   * document at once cannot both insert: the upsert updates only when the canonical text differs
   * (stored specs are canonical, so text equality is deep equality) and `xmax = 0` tells an
   * inserted row from an updated one; no row back means unchanged. A change notifies the other
   * issuers in the same statement (./change-feed.ts; delivered at COMMIT), an unchanged put does not.
   */
  async put(kind: ResourceKind, name: string, spec: Record<string, unknown>, now: number): Promise<PutResult> {
    const rows = await this.db.sql<{ created: boolean }[]>`
      WITH w AS (
        INSERT INTO resources (kind, name, spec, created_at, updated_at) VALUES (${kind}, ${name}, ${canonicalJson(spec)}, ${now}, ${now})
        ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at
          WHERE resources.spec IS DISTINCT FROM excluded.spec
        RETURNING (xmax = 0) AS created)
      SELECT created, pg_notify(${CHANGE_CHANNEL}, 'resources')::text AS notified FROM w`;
    if (rows.length === 0) return 'unchanged';
    this.db.wrote('resources');
    return rows[0]!.created ? 'created' : 'updated';
  }

  /** Through the issuer's policy cache (./policy-cache.ts); the row is parsed again for each caller (no shared objects). */
  async get(kind: ResourceKind, name: string): Promise<Resource | undefined> {
    const row = await this.db.cached('resources', `${kind}\0${name}`, async () => {
      const [r] = await this.db.sql<ResourceRow[]>`
        SELECT kind, name, spec, created_at, updated_at FROM resources WHERE kind = ${kind} AND name = ${name}`;
      return r;
    });
    return row && toResource(row);
  }

  async list(kind: ResourceKind): Promise<Resource[]> {
    const rows = await this.db.cached(
      'resources',
      `${kind}\0*list`,
      () => this.db.sql<ResourceRow[]>`
        SELECT kind, name, spec, created_at, updated_at FROM resources WHERE kind = ${kind} ORDER BY name COLLATE "C"`,
    );
    return rows.map(toResource);
  }

  async delete(kind: ResourceKind, name: string): Promise<boolean> {
    const rows = await this.db.sql`
      WITH d AS (DELETE FROM resources WHERE kind = ${kind} AND name = ${name} RETURNING 1)
      SELECT pg_notify(${CHANGE_CHANNEL}, 'resources')::text AS notified FROM d`;
    if (rows.length === 0) return false;
    this.db.wrote('resources');
    return true;
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
