/** Devices pre-registered from factory manifests, on PostgreSQL (types.ts DeviceStore). */
import type { DeviceRecord, DeviceStore, PutResult } from '../types.js';
import { canonicalJson } from '../sqlite/canonical-json.js';
import type { Db } from './db.js';

interface DeviceRow {
  id: number;
  rule: string | null;
  serial: string;
  ek_public_hash: string | null;
  idevid_fingerprint: string;
  manifest: string;
  imported_at: number;
}

export class PgDeviceStore implements DeviceStore {
  constructor(private readonly db: Db) {}

  async getByFingerprint(fingerprint: string): Promise<DeviceRecord | undefined> {
    const [row] = await this.db.sql<DeviceRow[]>`
      SELECT id, rule, serial, ek_public_hash, idevid_fingerprint, manifest, imported_at
        FROM devices WHERE idevid_fingerprint = ${fingerprint}`;
    return row && toRecord(row);
  }

  /** One upsert decides, as `PgResourceStore.put`: updated only when a field other than the import time differs. */
  async put(rec: Omit<DeviceRecord, 'id'>): Promise<PutResult> {
    const rows = await this.db.sql<{ created: boolean }[]>`
      INSERT INTO devices (rule, serial, ek_public_hash, idevid_fingerprint, manifest, imported_at)
      VALUES (${rec.rule}, ${rec.serial}, ${rec.ekPublicHash}, ${rec.idevidFingerprint}, ${canonicalJson(rec.manifest)}, ${rec.importedAt})
      ON CONFLICT (idevid_fingerprint) DO UPDATE
        SET rule = excluded.rule, serial = excluded.serial, ek_public_hash = excluded.ek_public_hash,
            manifest = excluded.manifest, imported_at = excluded.imported_at
        WHERE (devices.rule, devices.serial, devices.ek_public_hash, devices.manifest)
              IS DISTINCT FROM (excluded.rule, excluded.serial, excluded.ek_public_hash, excluded.manifest)
      RETURNING (xmax = 0) AS created`;
    if (rows.length === 0) return 'unchanged';
    return rows[0]!.created ? 'created' : 'updated';
  }

  async list(filter?: { rule?: string }): Promise<DeviceRecord[]> {
    const sql = this.db.sql;
    const rows =
      filter?.rule !== undefined
        ? await sql<DeviceRow[]>`
            SELECT id, rule, serial, ek_public_hash, idevid_fingerprint, manifest, imported_at
              FROM devices WHERE rule = ${filter.rule} ORDER BY serial COLLATE "C", id`
        : await sql<DeviceRow[]>`
            SELECT id, rule, serial, ek_public_hash, idevid_fingerprint, manifest, imported_at
              FROM devices ORDER BY serial COLLATE "C", id`;
    return rows.map(toRecord);
  }
}

function toRecord(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    rule: row.rule,
    serial: row.serial,
    ekPublicHash: row.ek_public_hash,
    idevidFingerprint: row.idevid_fingerprint,
    manifest: JSON.parse(row.manifest) as Record<string, unknown>,
    importedAt: row.imported_at,
  };
}
