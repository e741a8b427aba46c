/** Every certificate the issuers signed, on PostgreSQL (types.ts CertificateStore). */
import type { KeyStorage } from '../../../keystore/signer.js';
import type { CertificateRecord, CertificateStore } from '../types.js';
import { TxDb, type Db } from './db.js';

interface CertificateRow {
  serial: string;
  instance_id: string;
  bot: string;
  generation: number;
  not_before: number;
  not_after: number;
  kind: string;
  key_storage: KeyStorage;
  exportable: boolean;
  spki_hash: string;
  request_id: string;
  issued_at: number;
}

export class PgCertificateStore implements CertificateStore {
  constructor(private readonly db: Db) {}

  /**
   * Inside withWriteTx the row is sent without waiting for its round trip (./db.ts
   * TxDb.sendWithoutWaiting): a duplicate serial or an unknown instance then fails the whole
   * transaction, with this statement's error. Outside, it is its own statement and rejects itself.
   */
  async insert(rec: CertificateRecord): Promise<void> {
    const insert = this.db.sql`
      INSERT INTO certificates (serial, instance_id, bot, generation, not_before, not_after, kind, key_storage,
                                exportable, spki_hash, request_id, issued_at)
      VALUES (${rec.serial}, ${rec.instanceId}, ${rec.bot}, ${rec.generation}, ${rec.notBefore}, ${rec.notAfter},
              ${rec.kind}, ${rec.keyStorage}, ${rec.exportable}, ${rec.spkiHash}, ${rec.requestId}, ${rec.issuedAt})`;
    if (this.db instanceof TxDb) this.db.sendWithoutWaiting(insert);
    else await insert;
  }

  async get(serial: string): Promise<CertificateRecord | undefined> {
    const [row] = await this.db.sql<CertificateRow[]>`
      SELECT serial, instance_id, bot, generation, not_before, not_after, kind, key_storage, exportable, spki_hash,
             request_id, issued_at
        FROM certificates WHERE serial = ${serial}`;
    return row && toRecord(row);
  }

  /** Oldest generation first. */
  async listByInstance(instanceId: string): Promise<CertificateRecord[]> {
    const rows = await this.db.sql<CertificateRow[]>`
      SELECT serial, instance_id, bot, generation, not_before, not_after, kind, key_storage, exportable, spki_hash,
             request_id, issued_at
        FROM certificates WHERE instance_id = ${instanceId} ORDER BY generation, issued_at, serial COLLATE "C"`;
    return rows.map(toRecord);
  }

  /** Current certificates with now < notAfter < before, counted per bot (only each instance's current one). */
  async expiringBefore(before: number, now: number): Promise<Array<{ bot: string; count: number }>> {
    const rows = await this.db.sql<{ bot: string; count: number }[]>`
      SELECT c.bot AS bot, count(*) AS count
        FROM instances i JOIN certificates c ON c.serial = i.current_serial
       WHERE c.not_after > ${now} AND c.not_after < ${before}
       GROUP BY c.bot
       ORDER BY c.bot COLLATE "C"`;
    return rows.map((r) => ({ bot: r.bot, count: r.count }));
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
    exportable: row.exportable,
    spkiHash: row.spki_hash,
    requestId: row.request_id,
    issuedAt: row.issued_at,
  };
}
