/**
 * End to end with real processes: `sigil server init/start`, `ctl apply`, `token create`,
 * `agent run --once`, `agent renew`, verified by the real `openssl`.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { agentStatusJson, createToken, sigil, sigilJson, writeAgentConfig } from '../helpers/cli.js';
import { useIssuer } from '../helpers/issuer-fixture.js';

const openssl = (...args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8' });

describe('token join and HTTPS renewal, end to end', () => {
  const fx = useIssuer();
  const { tmp } = fx;

  it('joins with a one-time token and gets a valid X.509-SVID that openssl verifies', async () => {
    const token = await createToken(fx.issuer);
    const a = writeAgentConfig(tmp.path, 'a1', { url: fx.issuer.url, pin: fx.issuer.pin, token });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(joined.result).toBe('joined');
    expect(joined.spiffe_id).toMatch(/^spiffe:\/\/example\.org\/bot\/gw\/[0-9a-f-]{36}$/);
    expect(joined.generation).toBe(1);

    const svid = join(a.outDir, 'svid.pem');
    const bundle = join(a.outDir, 'bundle.pem');
    expect(openssl('verify', '-CAfile', bundle, '-untrusted', svid, svid)).toContain(': OK');
    const text = openssl('x509', '-in', svid, '-noout', '-text');
    expect(text).toContain(`URI:${joined.spiffe_id}`);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature/);
    expect(text).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    // NotBefore is back-dated by at most one minute.
    const notBefore = Date.parse(openssl('x509', '-in', svid, '-noout', '-startdate').split('=')[1]!);
    expect(Date.now() - notBefore).toBeLessThanOrEqual(65_000 + 5_000);
    expect(Date.now() - notBefore).toBeGreaterThanOrEqual(50_000);
    expect(statSync(join(a.outDir, 'svid.key')).mode & 0o777).toBe(0o600);

    const st = await agentStatusJson(['--config', a.config]);
    expect(st).toMatchObject({
      spiffe_id: joined.spiffe_id,
      serial: joined.serial,
      key_storage: 'software',
      exportable: true,
      generation: 1,
    });
    expect(Date.parse(st.not_after) - Date.now()).toBeGreaterThan(3500_000);

    // Renewal: new serial, new key, next generation; the old files are replaced atomically.
    const oldKey = readFileSync(join(a.outDir, 'svid.key'), 'utf8');
    const renewed = await sigilJson(['agent', 'renew', '--config', a.config]);
    expect(renewed.result).toBe('renewed');
    expect(renewed.serial).not.toBe(joined.serial);
    expect(renewed.generation).toBe(2);
    expect(readFileSync(join(a.outDir, 'svid.key'), 'utf8')).not.toBe(oldKey);
    expect(openssl('x509', '-in', svid, '-noout', '-serial').trim().toLowerCase()).toBe(`serial=${renewed.serial}`);
    expect(openssl('verify', '-CAfile', bundle, '-untrusted', svid, svid)).toContain(': OK');

    // The same token a second time is refused, with its code, and changes nothing.
    const b = writeAgentConfig(tmp.path, 'a1-again', { url: fx.issuer.url, pin: fx.issuer.pin, token });
    const again = await sigil(['agent', 'run', '--config', b.config, '--once']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error\[token_reused\]: /m);
    const instances = await sigilJson(['ctl', '--data-dir', fx.issuer.dataDir, 'instances', 'ls']);
    expect(instances.filter((i: { id: string }) => i.id === joined.spiffe_id.split('/').pop())).toHaveLength(1);
  });

  it('10 concurrent joins with one token: exactly one succeeds', async () => {
    const token = await createToken(fx.issuer);
    const runs = await Promise.all(
      Array.from({ length: 10 }, (_, i) => {
        const c = writeAgentConfig(tmp.path, `race${i}`, { url: fx.issuer.url, pin: fx.issuer.pin, token });
        return sigil(['agent', 'run', '--config', c.config, '--once', '--format', 'json'], { timeoutMs: 60_000 });
      }),
    );
    expect(runs.filter((r) => r.code === 0)).toHaveLength(1);
    const losers = runs.filter((r) => r.code !== 0);
    for (const r of losers) expect(JSON.parse(r.stderr).error.code).toBe('token_reused');
  });

  it('a TTL request of 48h is clamped to 24h and the answer says so', async () => {
    const a = writeAgentConfig(tmp.path, 'ttl48', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer),
      ttl: '48h',
    });
    const r = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(r.ttl_clamped).toBe(true);
    expect(r.requested_ttl).toBe('48h');
    expect(r.ttl).toBe('24h');
    const end = Date.parse(openssl('x509', '-in', join(a.outDir, 'svid.pem'), '-noout', '-enddate').split('=')[1]!);
    expect(Math.abs(end - (Date.now() + 24 * 3600_000))).toBeLessThan(60_000);
  });

  it('a stale generation locks the instance and is audited (cloned credential)', async () => {
    const a = writeAgentConfig(tmp.path, 'clone', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer),
    });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    // Copy the agent's state while it is at generation 1: the "stolen" credential.
    const stolen = writeAgentConfig(tmp.path, 'clone-copy', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: 'x'.repeat(43),
    });
    cpSync(a.dataDir, stolen.dataDir, { recursive: true });
    expect((await sigilJson(['agent', 'renew', '--config', a.config])).generation).toBe(2);

    const r = await sigil(['agent', 'renew', '--config', stolen.config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[generation_mismatch\]/);
    const id = joined.spiffe_id.split('/').pop();
    const inst = (await sigilJson(['ctl', '--data-dir', fx.issuer.dataDir, 'instances', 'ls'])).find(
      (i: { id: string }) => i.id === id,
    );
    expect(inst.locked).toBe(true);
    expect(inst.lock_reason).toMatch(/generation_mismatch/);
    const audit = await sigilJson(['ctl', '--data-dir', fx.issuer.dataDir, 'audit']);
    expect(
      audit.some(
        (e: { code: string; instance_id: string }) => e.code === 'generation_mismatch' && e.instance_id === id,
      ),
    ).toBe(true);
    // The legitimate agent is locked out too until an operator decides.
    const legit = await sigil(['agent', 'renew', '--config', a.config]);
    expect(legit.stderr).toMatch(/error\[instance_locked\]/);
    await sigilJson(['ctl', '--data-dir', fx.issuer.dataDir, 'unlock', id]);
    expect((await sigilJson(['agent', 'renew', '--config', a.config])).generation).toBe(3);
  });

  it('the audit chain verifies, and fails after a row is tampered with in SQLite', async () => {
    const ok = await sigil(['ctl', '--data-dir', fx.issuer.dataDir, 'audit', '--verify']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/audit chain ok \(\d+ rows\)/);
    // An attacker with write access to the database drops the append-only guard and edits a row.
    const db = new Database(join(fx.issuer.dataDir, 'issuer.db'));
    for (const t of db
      .prepare("SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_log'")
      .all() as Array<{ name: string }>) {
      db.exec(`DROP TRIGGER "${t.name}"`);
    }
    db.prepare('UPDATE audit_log SET details = \'{"tampered":true}\' WHERE seq = 3').run();
    db.close();
    const bad = await sigil(['ctl', '--data-dir', fx.issuer.dataDir, 'audit', '--verify', '--format', 'json']);
    expect(bad.code).not.toBe(0);
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, broken_at: 3 });
    expect(JSON.parse(bad.stderr).error.code).toBe('audit_chain_broken');
  });
});
