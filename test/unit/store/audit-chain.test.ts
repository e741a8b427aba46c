import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSyncSqliteStores } from '../../../src/server/store/sqlite/index.js';
import { auditRowHash } from '../../../src/server/store/sqlite/audit.js';
import type { SyncStores } from '../../../src/server/store/sqlite/index.js';
import { tempDir } from './helpers.js';

const T0 = 1_700_000_000_000;

describe('audit hash chain (sqlite)', () => {
  let t: ReturnType<typeof tempDir>;
  let s: SyncStores;
  beforeEach(() => {
    t = tempDir();
    s = openSyncSqliteStores(t.dbPath);
    for (let i = 1; i <= 100; i++) {
      s.audit.append(
        {
          action: i % 2 ? 'issue' : 'renew',
          outcome: 'ok',
          bot: 'edge',
          instanceId: `i${i % 7}`,
          details: { n: i, serial: i.toString(16) },
        },
        T0 + i,
      );
    }
  });
  afterEach(() => {
    s.close();
    t.remove();
  });

  /** Tamper like an attacker with file access: bypass the append-only triggers first. */
  function tamper(sql: string, ...params: unknown[]): void {
    const raw = new Database(t.dbPath);
    try {
      raw.exec('DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;');
      raw.prepare(sql).run(...params);
    } finally {
      raw.close();
    }
  }

  it('verifies after 100 appends', () => {
    expect(s.audit.verify()).toEqual({ ok: true, rows: 100 });
    expect(s.audit.list().map((r) => r.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it('finds a row whose details were edited', () => {
    tamper(`UPDATE audit_log SET details = '{"n":37,"serial":"ff"}' WHERE seq = 37`);
    expect(s.audit.verify()).toEqual({ ok: false, rows: 36, brokenAt: 37, reason: 'hash mismatch' });
  });

  it('finds an edited row whose hash was recomputed, at the next link', () => {
    const row = s.audit.list().find((r) => r.seq === 50)!;
    const forged = { ...row, outcome: 'refused' };
    tamper('UPDATE audit_log SET outcome = ?, hash = ? WHERE seq = 50', 'refused', auditRowHash(row.prevHash, forged));
    expect(s.audit.verify()).toEqual({ ok: false, rows: 50, brokenAt: 51, reason: 'broken link' });
  });

  it('finds a deleted middle row', () => {
    tamper('DELETE FROM audit_log WHERE seq = 60');
    expect(s.audit.verify()).toEqual({ ok: false, rows: 59, brokenAt: 61, reason: 'sequence gap' });
  });

  it('finds a deleted first row', () => {
    tamper('DELETE FROM audit_log WHERE seq = 1');
    expect(s.audit.verify()).toMatchObject({ ok: false, rows: 0, brokenAt: 2, reason: 'sequence gap' });
  });

  it('finds a row whose details no longer parse', () => {
    const raw = new Database(t.dbPath);
    try {
      raw.exec('DROP TRIGGER audit_log_no_update; PRAGMA ignore_check_constraints = ON;');
      raw.prepare(`UPDATE audit_log SET details = '{broken' WHERE seq = 5`).run();
    } finally {
      raw.close();
    }
    expect(s.audit.verify()).toEqual({ ok: false, rows: 4, brokenAt: 5, reason: 'hash mismatch' });
  });

  it('refuses a forked chain (two rows on one predecessor)', () => {
    const raw = new Database(t.dbPath);
    try {
      const last = raw.prepare('SELECT prev_hash FROM audit_log WHERE seq = 100').get() as { prev_hash: string };
      expect(() =>
        raw
          .prepare(
            `INSERT INTO audit_log (seq, at, action, outcome, actor, details, prev_hash, hash)
             VALUES (101, 0, 'x', 'ok', 'system', '{}', ?, ?)`,
          )
          .run(last.prev_hash, 'f'.repeat(64)),
      ).toThrow(/must extend the chain/);
    } finally {
      raw.close();
    }
  });

  it('refuses a row that does not carry its predecessor hash, or leaves a gap (trigger audit_log_linked)', () => {
    const raw = new Database(t.dbPath);
    try {
      const head = raw.prepare('SELECT hash FROM audit_log WHERE seq = 100').get() as { hash: string };
      const insert = raw.prepare(
        `INSERT INTO audit_log (seq, at, action, outcome, actor, details, prev_hash, hash)
         VALUES (?, 0, 'x', 'ok', 'system', '{}', ?, ?)`,
      );
      expect(() => insert.run(101, 'e'.repeat(64), 'f'.repeat(64))).toThrow(/must extend the chain/);
      expect(() => insert.run(102, head.hash, 'f'.repeat(64))).toThrow(/must extend the chain/);
      // The linked successor is the one row the trigger lets in.
      insert.run(101, head.hash, 'f'.repeat(64));
      expect(raw.prepare('SELECT count(*) AS n FROM audit_log').get()).toEqual({ n: 101 });
    } finally {
      raw.close();
    }
  });
});
