/** Devices pre-registered from factory manifests; looked up by IDevID certificate fingerprint. */
import type BetterSqlite3 from 'better-sqlite3';
import type { DeviceRecord } from '../types.js';
import type { SyncDeviceStore } from './sync-types.js';
import { canonicalJson } from './canonical-json.js';

interface DeviceRow {
  id: number;
  rule: string | null;
  serial: string;
  ek_public_hash: string | null;
  idevid_fingerprint: string;
  manifest: string;
  imported_at: number;
}

const COLS = 'id, rule, serial, ek_public_hash, idevid_fingerprint, manifest, imported_at';

export class SqliteDeviceStore implements SyncDeviceStore {
  private readonly getStmt: BetterSqlite3.Statement<[string], DeviceRow>;
  private readonly insertStmt: BetterSqlite3.Statement<[string | null, string, string | null, string, string, number]>;
  private readonly updateStmt: BetterSqlite3.Statement<[string | null, string, string | null, string, number, string]>;
  private readonly listStmt: BetterSqlite3.Statement<[], DeviceRow>;
  private readonly listRuleStmt: BetterSqlite3.Statement<[string], DeviceRow>;

  constructor(db: BetterSqlite3.Database) {
    this.getStmt = db.prepare(`SELECT ${COLS} FROM devices WHERE idevid_fingerprint = ?`);
    this.insertStmt = db.prepare(
      'INSERT INTO devices (rule, serial, ek_public_hash, idevid_fingerprint, manifest, imported_at) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.updateStmt = db.prepare(
      'UPDATE devices SET rule = ?, serial = ?, ek_public_hash = ?, manifest = ?, imported_at = ? WHERE idevid_fingerprint = ?',
    );
    this.listStmt = db.prepare(`SELECT ${COLS} FROM devices ORDER BY serial, id`);
    this.listRuleStmt = db.prepare(`SELECT ${COLS} FROM devices WHERE rule = ? ORDER BY serial, id`);
  }

  getByFingerprint(fingerprint: string): DeviceRecord | undefined {
    const row = this.getStmt.get(fingerprint);
    return row && toRecord(row);
  }

  put(rec: Omit<DeviceRecord, 'id'>): 'created' | 'updated' | 'unchanged' {
    const manifest = canonicalJson(rec.manifest);
    const existing = this.getStmt.get(rec.idevidFingerprint);
    if (!existing) {
      this.insertStmt.run(rec.rule, rec.serial, rec.ekPublicHash, rec.idevidFingerprint, manifest, rec.importedAt);
      return 'created';
    }
    if (
      existing.rule === rec.rule &&
      existing.serial === rec.serial &&
      existing.ek_public_hash === rec.ekPublicHash &&
      existing.manifest === manifest
    )
      return 'unchanged';
    this.updateStmt.run(rec.rule, rec.serial, rec.ekPublicHash, manifest, rec.importedAt, rec.idevidFingerprint);
    return 'updated';
  }

  list(filter?: { rule?: string }): DeviceRecord[] {
    return (filter?.rule !== undefined ? this.listRuleStmt.all(filter.rule) : this.listStmt.all()).map(toRecord);
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
