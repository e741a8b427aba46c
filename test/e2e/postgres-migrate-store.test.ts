/**
 * `sigil server migrate-store` end to end, real processes (issue #15): an issuer with joins,
 * renewals and an audit chain on SQLite is moved to PostgreSQL, started there, the agent renews,
 * `ctl audit --verify` passes on the moved chain. A copy of the data directory whose audit row
 * was edited in the SQLite file is refused — and leaves the target as empty as it found it, so
 * the honest move into the same database succeeds afterwards (all or nothing).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyResources,
  createToken,
  SIGIL,
  sigil,
  sigilJson,
  startIssuer,
  tempDir,
  writeAgentConfig,
  type RunningIssuer,
} from '../helpers/cli.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';

/** `sigil server start --store url` on a given port; resolves once it listens. */
function startOnPostgres(dataDir: string, listen: string, store: string): Promise<{ proc: ChildProcess }> {
  const proc = spawn(process.execPath, [SIGIL, 'server', 'start', '--data-dir', dataDir, '--listen', listen], {
    env: { ...process.env, SIGIL_LOG_FORMAT: 'json', SIGIL_STORE: store },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  proc.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`issuer did not start: ${logs.join('')}`)), 60_000);
    proc.stdout!.on('data', (d: Buffer) => {
      logs.push(d.toString());
      if (/listening on https:/.test(logs.join(''))) {
        clearTimeout(t);
        resolve({ proc });
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`issuer exited ${code}: ${logs.join('')}`));
    });
  });
}

const stopProc = async (p: ChildProcess): Promise<void> => {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await exited;
};

const meta = (dir: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(dir, 'issuer.json'), 'utf8')) as Record<string, unknown>;

describe('sigil server migrate-store: SQLite → PostgreSQL', () => {
  const tmp = tempDir('sigil-pg-move-');
  let pg: Postgres;
  let url: string;
  let issuer: RunningIssuer;
  let onPg: ChildProcess | undefined;

  beforeAll(async () => {
    pg = await startPostgres({ auth: 'password' });
    url = pg.url(pg.createDatabase('sigil'));
    issuer = await startIssuer(tmp.path);
    await applyResources(issuer, tmp.path);
  }, 120_000);

  afterAll(async () => {
    if (onPg) await stopProc(onPg);
    await issuer?.stop();
    await pg?.stop();
    tmp.cleanup();
  }, 60_000);

  const count = (table: string): number => Number(pg.admin(`SELECT count(*) FROM ${table}`, 'sigil').trim());

  it('moves joins, renewals and the audit chain; the issuer serves from PostgreSQL; a tampered copy is refused', async () => {
    // History on SQLite: two agents joined, one renewed twice.
    const a = writeAgentConfig(tmp.path, 'a', { url: issuer.url, pin: issuer.pin, token: await createToken(issuer) });
    const b = writeAgentConfig(tmp.path, 'b', { url: issuer.url, pin: issuer.pin, token: await createToken(issuer) });
    expect((await sigilJson(['agent', 'run', '--config', a.config, '--once'])).result).toBe('joined');
    expect((await sigilJson(['agent', 'run', '--config', b.config, '--once'])).result).toBe('joined');
    expect((await sigilJson(['agent', 'renew', '--config', a.config])).generation).toBe(2);
    expect((await sigilJson(['agent', 'renew', '--config', a.config])).generation).toBe(3);
    await issuer.stop();
    const sqliteAudit = new Database(join(issuer.dataDir, 'issuer.db'), { readonly: true });
    const auditRows = sqliteAudit.prepare('SELECT count(*) FROM audit_log').pluck().get() as number;
    const certRows = sqliteAudit.prepare('SELECT count(*) FROM certificates').pluck().get() as number;
    sqliteAudit.close();
    expect(certRows).toBe(4);

    // A copy of the directory with one audit row edited (the append-only trigger dropped first,
    // as someone with write access to the file could): the move must refuse it.
    const tampered = join(tmp.path, 'tampered');
    cpSync(issuer.dataDir, tampered, { recursive: true });
    chmodSync(tampered, 0o700);
    const t = new Database(join(tampered, 'issuer.db'));
    t.exec('DROP TRIGGER audit_log_no_update');
    t.prepare("UPDATE audit_log SET actor = 'nobody' WHERE seq = (SELECT max(seq) - 1 FROM audit_log)").run();
    t.close();
    const refused = await sigil(['server', 'migrate-store', '--from', tampered, '--to', url]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/audit_chain_broken/);
    expect(refused.stderr).toMatch(/hash mismatch/);
    expect(refused.stderr).not.toContain(pg.password!);
    // Nothing half-written: every table is still empty, and the copy still says SQLite.
    for (const table of ['audit_log', 'instances', 'certificates', 'settings', 'resources', 'join_tokens'])
      expect(count(table), table).toBe(0);
    expect(meta(tampered).store).toBeUndefined();

    // The honest move into the same database.
    const moved = await sigil(['server', 'migrate-store', '--from', issuer.dataDir, '--to', url, '--format', 'json']);
    expect(moved.code, moved.stderr).toBe(0);
    const report = JSON.parse(moved.stdout) as { rows: Record<string, number>; audit_rows_verified: number };
    expect(report.rows).toMatchObject({ instances: 2, certificates: 4, join_tokens: 2, audit_log: auditRows });
    expect(report.audit_rows_verified).toBe(auditRows);
    expect(meta(issuer.dataDir).store).toBe('postgres');
    expect(count('audit_log')).toBe(auditRows);

    // The database now holds an issuer: moving the (untampered) copy taken before is refused.
    const again = await sigil(['server', 'migrate-store', '--from', tampered, '--to', url]);
    expect(again.stderr).toMatch(/already_initialized|not empty/);
    expect(count('audit_log')).toBe(auditRows);

    // Started on PostgreSQL (same port as before: the agents' configuration is unchanged), the agent renews.
    onPg = (await startOnPostgres(issuer.dataDir, `127.0.0.1:${new URL(issuer.url).port}`, url)).proc;
    const renewed = await sigilJson(['agent', 'renew', '--config', a.config]);
    expect(renewed.result).toBe('renewed');
    expect(renewed.generation).toBe(4);
    expect((await sigilJson(['agent', 'renew', '--config', b.config])).generation).toBe(2);
    expect(count('certificates')).toBe(6);

    // The chain copied from SQLite and extended in PostgreSQL verifies end to end (rows, key, triggers, checkpoints).
    const verify = await sigil(['ctl', '--data-dir', issuer.dataDir, 'audit', '--verify', '--format', 'json'], {
      env: { SIGIL_STORE: url },
    });
    expect(verify.code, verify.stderr + verify.stdout).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });
    expect(count('audit_log')).toBeGreaterThan(auditRows);

    // sigil doctor checks the PostgreSQL store of a moved directory (not the issuer.db left behind).
    const store = async (env: NodeJS.ProcessEnv) => {
      const r = await sigil(['doctor', '--data-dir', issuer.dataDir, '--format', 'json'], { env });
      const checks = (JSON.parse(r.stdout) as { checks: Array<{ name: string; status: string; detail: string }> })
        .checks;
      return checks.find((c) => c.name === 'store')!;
    };
    const good = await store({ SIGIL_STORE: url });
    expect(good).toMatchObject({ status: 'ok' });
    expect(good.detail).toMatch(/PostgreSQL, schema version \d+ \(current\)/);
    expect(good.detail).not.toContain(pg.password!);
    const unset = await store({ SIGIL_STORE: '' });
    expect(unset).toMatchObject({ status: 'fail' });
    expect(unset.detail).toContain('SIGIL_STORE');
    const other = await store({ SIGIL_STORE: pg.url(pg.createDatabase('empty')) });
    expect(other).toMatchObject({ status: 'fail' });
    expect(other.detail).toMatch(/holds no issuer/);

    // Its audit check walks the chain in PostgreSQL, every row of it, not the issuer.db backup
    // frozen at the move (walk8: that file against the checkpoints the PostgreSQL issuer signs
    // since reads as "truncated", a false tampering alarm).
    const audit = await sigil(['doctor', '--data-dir', issuer.dataDir, '--format', 'json'], {
      env: { SIGIL_STORE: url },
    });
    const auditCheck = (
      JSON.parse(audit.stdout) as { checks: Array<{ name: string; status: string; detail: string }> }
    ).checks.find((c) => c.name === 'audit')!;
    expect(auditCheck, auditCheck.detail).toMatchObject({ status: 'ok' });
    expect(Number(/PostgreSQL: the whole chain verifies, (\d+) rows/.exec(auditCheck.detail)?.[1])).toBe(
      count('audit_log'),
    );
  }, 180_000);
});
