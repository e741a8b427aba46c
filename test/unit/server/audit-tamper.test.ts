/**
 * Issue #11 item 6: the audit log must show tampering by whoever can write issuer.db. Each test
 * plays the attacker with direct database access (the append-only triggers dropped first, as
 * anyone with write access can) and expects the verification to name what happened.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readAuditKey } from '../../../src/server/audit/audit-key.js';
import {
  CheckpointWriter,
  appendCheckpoint,
  readCheckpoints,
  signCheckpoint,
  signerId,
} from '../../../src/server/audit/checkpoints.js';
import { pruneAudit } from '../../../src/server/audit/prune.js';
import { loadCheckpointSigner, loadCheckpointVerifiers } from '../../../src/server/audit/signer.js';
import { verifyAuditLog } from '../../../src/server/audit/verify.js';
import { initDataDir, openIssuerStores, paths } from '../../../src/server/data-dir.js';
import { auditRowHash, openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import type { AuditRecord, Stores } from '../../../src/server/store/types.js';

const T0 = 1_700_000_000_000;

describe('audit tamper evidence (issue #11 item 6)', () => {
  let dir: string;
  let stores: Stores;
  let cpFile: string;
  let writer: CheckpointWriter;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-audit-tamper-'));
    initDataDir(dir, 'example.org');
    stores = openIssuerStores(dir);
    await stores.withWriteTx(async (tx) => {
      for (let i = 1; i <= 100; i++)
        await tx.audit.append(
          { action: 'renew', outcome: 'ok', bot: 'gw', instanceId: `i${i % 7}`, details: { n: i } },
          T0 + i,
        );
    });
    cpFile = paths(dir).auditCheckpoints;
    writer = new CheckpointWriter(cpFile, loadCheckpointSigner(dir));
  });
  afterEach(async () => {
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const verify = (file: string | null = cpFile) =>
    verifyAuditLog(stores.audit, {
      verifiers: loadCheckpointVerifiers(dir),
      ...(file !== null ? { checkpointFile: file } : {}),
    });

  /** Run SQL with the sqlite3 command-line tool, as an attacker with file access would. */
  function sqlite3(sql: string): void {
    execFileSync('sqlite3', [paths(dir).db], { input: sql });
  }
  const DROP = 'DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;\n';

  /** Rewrite row `seq` and re-chain every row after it, hashing with `key` (none: plain SHA-256). */
  async function rewriteAndRechain(seq: number, key?: { secret: Buffer; fromSeq: number }): Promise<void> {
    const rows = await stores.audit.list();
    let prev = rows.find((r) => r.seq === seq)!.prevHash;
    let sql = DROP;
    for (const r of rows.filter((x) => x.seq >= seq)) {
      const content: AuditRecord = r.seq === seq ? { ...r, outcome: 'refused', details: { n: 'forged' } } : r;
      const hash = auditRowHash(prev, content, key && r.seq >= key.fromSeq ? key.secret : undefined);
      sql += `UPDATE audit_log SET outcome='${content.outcome}', details='${JSON.stringify(content.details)}', prev_hash='${prev}', hash='${hash}' WHERE seq=${r.seq};\n`;
      prev = hash;
    }
    sqlite3(sql);
  }

  it('a row rewritten and re-chained without the audit key fails verification at that row', async () => {
    await rewriteAndRechain(50);
    // Before the keyed chain this verified: the attacker recomputed every SHA-256.
    expect(await stores.audit.verify()).toEqual({ ok: false, rows: 49, brokenAt: 50, reason: 'hash mismatch' });
    expect(await verify(null)).toMatchObject({ ok: false, brokenAt: 50 });
  });

  it('with the key (stolen too), a rewrite still contradicts a signed checkpoint', async () => {
    await writer.write(stores.audit, 'periodic', T0 + 1000);
    await rewriteAndRechain(30, readAuditKey(paths(dir).auditKey));
    expect((await stores.audit.verify()).ok).toBe(true);
    const r = await verify();
    expect(r.ok).toBe(false);
    expect(r.problems.join('\n')).toMatch(/rewritten: row 101 has another hash than checkpoint line 1/);
  });

  it('deleting the last 50 rows passes the chain check but not the checkpoint: truncation', async () => {
    await writer.write(stores.audit, 'periodic', T0 + 1000);
    sqlite3(DROP + 'DELETE FROM audit_log WHERE seq > 51;');
    expect(await stores.audit.verify()).toEqual({ ok: true, rows: 51 });
    const r = await verify();
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      expect.stringMatching(/^append-only triggers dropped/),
      'truncated: checkpoint line 1 covers seq 101 but the log ends at seq 51 (50 or more rows missing)',
    ]);
  });

  it('dropped append-only triggers are reported', async () => {
    expect((await verify(null)).ok).toBe(true);
    sqlite3('DROP TRIGGER audit_log_no_delete;');
    const r = await verify(null);
    expect(r).toMatchObject({ ok: false, triggers_missing: ['audit_log_no_delete'] });
    expect(r.reason).toMatch(/append-only triggers dropped: audit_log_no_delete/);
  });

  it('a checkpoint line not signed by the issuer is reported, not trusted', async () => {
    const cp = (await writer.write(stores.audit, 'periodic', T0 + 1000))!;
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    appendCheckpoint(
      cpFile,
      signCheckpoint({ ...cp, seq: 5000, signer: signerId(other) }, { key: other, id: signerId(other) }),
    );
    appendCheckpoint(cpFile, { ...cp, seq: 6000 }); // issuer's signer id, signature over other content
    const r = await verify();
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      "checkpoint line 2 (seq 5000): signature does not verify with the issuer's key",
      "checkpoint line 3 (seq 6000): signature does not verify with the issuer's key",
    ]);
    expect(r.checkpoints).toMatchObject({ lines: 3, verified: 1, latest_seq: 101 });
  });

  it('a replaced audit key is named by the checkpoints made with the old one', async () => {
    await writer.write(stores.audit, 'periodic', T0 + 1000);
    // The attacker writes a key of their own and re-chains everything with it.
    const secret = randomBytes(32);
    fs.writeFileSync(
      paths(dir).auditKey,
      JSON.stringify({
        v: 1,
        alg: 'HMAC-SHA256',
        key: secret.toString('base64'),
        from_seq: 1,
        created_at: new Date().toISOString(),
      }),
    );
    await stores.close();
    stores = openIssuerStores(dir);
    await rewriteAndRechain(1, { secret, fromSeq: 1 });
    expect((await stores.audit.verify()).ok).toBe(true);
    const r = await verify();
    expect(r.problems.join('\n')).toMatch(/audit.key was replaced/);
  });

  it('prune: signed checkpoint first, rows deleted, the chain verifies from the anchor and goes on', async () => {
    const r = await pruneAudit(stores.audit, writer, T0 + 60, T0 + 5000, { verifiers: loadCheckpointVerifiers(dir) });
    // Rows 2..60 (at T0+1..T0+59) are older than T0+60; the init row (seq 1, written at the real
    // time) goes with them: everything up to the newest older row is pruned.
    expect(r).toMatchObject({ through_seq: 60, removed: 60 });
    const lines = readCheckpoints(cpFile);
    expect(lines.map((l) => [l.cp!.kind, l.cp!.seq])).toEqual([['prune', 60]]);
    await stores.audit.append({ action: 'renew', outcome: 'ok', details: {} }, T0 + 6000);
    const v = await verify();
    expect(v).toMatchObject({
      ok: true,
      first_seq: 61,
      last_seq: 103,
      anchor: { seq: 60, pruned: 60, checkpoint_ok: true },
      problems: [],
    });
    // Rows after the anchor are still append-only.
    const raw = new Database(paths(dir).db);
    try {
      expect(() => raw.prepare('DELETE FROM audit_log WHERE seq = 70').run()).toThrow(/append-only/);
      expect(() => raw.prepare('DELETE FROM audit_anchor').run()).toThrow(/append-only/);
    } finally {
      raw.close();
    }
  });

  it('an anchor inserted by the attacker (no valid signed checkpoint) is reported', async () => {
    const row = (await stores.audit.list()).find((x) => x.seq === 40)!;
    sqlite3(
      `INSERT INTO audit_anchor (seq, hash, at, pruned, checkpoint) VALUES (40, '${row.hash}', ${T0}, 40, '{"v":1,"seq":40}'); DELETE FROM audit_log WHERE seq <= 40;`,
    );
    expect(await stores.audit.verify()).toEqual({ ok: true, rows: 61 });
    const r = await verify(null);
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/prune anchor at seq 40 is not backed by a valid signed checkpoint/);
  });

  it('an anchor whose checkpoint is not even an object is reported, not a crash', async () => {
    const row = (await stores.audit.list()).find((x) => x.seq === 40)!;
    sqlite3(
      `INSERT INTO audit_anchor (seq, hash, at, pruned, checkpoint) VALUES (40, '${row.hash}', ${T0}, 40, 'null');`,
    );
    expect((await verify(null)).reason).toMatch(/prune anchor at seq 40 is not backed/);
  });

  it('prune refuses a log that does not verify', async () => {
    await rewriteAndRechain(20);
    await expect(
      pruneAudit(stores.audit, writer, T0 + 60, T0 + 5000, { verifiers: loadCheckpointVerifiers(dir) }),
    ).rejects.toMatchObject({ code: 'audit_chain_broken' });
    expect(fs.existsSync(cpFile)).toBe(false);
    expect(await stores.audit.list()).toHaveLength(101);
  });

  it('verification yields to the event loop between chunks', async () => {
    await stores.withWriteTx(async (tx) => {
      for (let i = 0; i < 12_000; i++)
        await tx.audit.append({ action: 'renew', outcome: 'ok', details: { n: i } }, T0 + 200 + i);
    });
    let ticks = 0;
    let on = true;
    const tick = (): void => {
      ticks++;
      if (on) setImmediate(tick);
    };
    setImmediate(tick);
    const r = await verifyAuditLog(stores.audit, { chunkRows: 5000 });
    on = false;
    expect(r).toMatchObject({ ok: true, rows: 12_101 });
    expect(ticks).toBeGreaterThanOrEqual(2);
  }, 30_000);
});

describe('audit key of an existing data directory', () => {
  let dir: string;
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is created at the first serving start, from the next row, with the switch-over recorded', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-audit-key-'));
    initDataDir(dir, 'example.org');
    // A directory from before audit.key: unkeyed chain, no key file.
    fs.rmSync(paths(dir).auditKey);
    for (const f of fs.readdirSync(dir).filter((n) => n.startsWith('issuer.db'))) fs.rmSync(path.join(dir, f));
    const old = openSqliteStores(paths(dir).db);
    for (let i = 1; i <= 5; i++) await old.audit.append({ action: 'renew', outcome: 'ok', details: { n: i } }, T0 + i);
    await old.close();

    // `sigil ctl` (no createAuditKey) never makes one.
    await openIssuerStores(dir).close();
    expect(fs.existsSync(paths(dir).auditKey)).toBe(false);

    const s = openIssuerStores(dir, { createAuditKey: true });
    try {
      const key = readAuditKey(paths(dir).auditKey)!;
      expect(fs.statSync(paths(dir).auditKey).mode & 0o777).toBe(0o600);
      expect(key.fromSeq).toBe(6);
      const rows = await s.audit.list();
      expect(rows.at(-1)).toMatchObject({
        seq: 6,
        action: 'audit_key_enabled',
        details: { key_id: key.id, from_seq: 6 },
      });
      expect(await s.audit.verify()).toEqual({ ok: true, rows: 6 });
      // Row 6 is keyed: its hash is not the plain SHA-256 of its content.
      expect(rows[5]!.hash).not.toBe(auditRowHash(rows[5]!.prevHash, rows[5]!));
      expect(rows[4]!.hash).toBe(auditRowHash(rows[4]!.prevHash, rows[4]!));
    } finally {
      await s.close();
    }
    // A second start reuses it.
    const again = openIssuerStores(dir, { createAuditKey: true });
    expect(await again.audit.list()).toHaveLength(6);
    await again.close();
  });
});
