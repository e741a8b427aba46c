/** Every certificate the issuer signed: the record behind audit, metrics and revocation. */
import type BetterSqlite3 from 'better-sqlite3';
import type { KeyStorage } from '../../../keystore/signer.js';
import type { CertificateRecord } from '../types.js';
import type { SyncCertificateStore } from './sync-types.js';

interface CertificateRow {
  serial: string;
  instance_id: string;
  bot: string;
  generation: number;
  not_before: number;
  not_after: number;
  kind: string;
  key_storage: KeyStorage;
  exportable: 0 | 1;
  spki_hash: string;
  request_id: string;
  issued_at: number;
}

const COLS =
  'serial, instance_id, bot, generation, not_before, not_after, kind, key_storage, exportable, ' +
  'spki_hash, request_id, issued_at';

export class SqliteCertificateStore implements SyncCertificateStore {
  private readonly insertStmt: BetterSqlite3.Statement<[CertificateRow]>;
  private readonly getStmt: BetterSqlite3.Statement<[string], CertificateRow>;
  private readonly listByInstanceStmt: BetterSqlite3.Statement<[string], CertificateRow>;
  private readonly expiringStmt: BetterSqlite3.Statement<[number, number], { bot: string; count: number }>;

  constructor(db: BetterSqlite3.Database) {
    this.insertStmt = db.prepare(
      `INSERT INTO certificates (${COLS}) VALUES (
         @serial, @instance_id, @bot, @generation, @not_before, @not_after, @kind, @key_storage,
         @exportable, @spki_hash, @request_id, @issued_at)`,
    );
    this.getStmt = db.prepare(`SELECT ${COLS} FROM certificates WHERE serial = ?`);
    this.listByInstanceStmt = db.prepare(
      `SELECT ${COLS} FROM certificates WHERE instance_id = ? ORDER BY generation, issued_at, serial`,
    );
    // Only each instance's current certificate counts: a renewed-away older one expiring soon
    // is expected, not a warning sign.
    this.expiringStmt = db.prepare(
      `SELECT c.bot AS bot, count(*) AS count
         FROM instances i JOIN certificates c ON c.serial = i.current_serial
        WHERE c.not_after > ? AND c.not_after < ?
        GROUP BY c.bot
        ORDER BY c.bot`,
    );
  }

  insert(rec: CertificateRecord): void {
    this.insertStmt.run({
      serial: rec.serial,
      instance_id: rec.instanceId,
      bot: rec.bot,
      generation: rec.generation,
      not_before: rec.notBefore,
      not_after: rec.notAfter,
      kind: rec.kind,
      key_storage: rec.keyStorage,
      exportable: rec.exportable ? 1 : 0,
      spki_hash: rec.spkiHash,
      request_id: rec.requestId,
      issued_at: rec.issuedAt,
    });
  }

  get(serial: string): CertificateRecord | undefined {
    const row = this.getStmt.get(serial);
    return row && toRecord(row);
  }

  /** Oldest generation first. */
  listByInstance(instanceId: string): CertificateRecord[] {
    return this.listByInstanceStmt.all(instanceId).map(toRecord);
  }

  /** Current certificates with now < notAfter < before, counted per bot (bots with none omitted). */
  expiringBefore(before: number, now: number): Array<{ bot: string; count: number }> {
    return this.expiringStmt.all(now, before).map((r) => ({ bot: r.bot, count: r.count }));
  }
}

function toRecord(row: CertificateRow): CertificateRecord {
  return {
    serial: row.serial,
    instanceId: row.instance_id,
    bot: row.bot,
    generation: row.generation,
    notBefore: row.not_before,
    notAfter: row.not_after,
    kind: row.kind,
    keyStorage: row.key_storage,
    exportable: row.exportable === 1,
    spkiHash: row.spki_hash,
    requestId: row.request_id,
    issuedAt: row.issued_at,
  };
}
