/**
 * The broker restarts in the middle of a renewal (persistence on): the renewal completes after
 * the agent reconnects, and the issuer signs exactly one certificate for that request id.
 *
 *  1. The agent is killed right after the broker acknowledged its renew request; the issuer's
 *     answer is queued in the agent's persistent session; the broker restarts; the agent starts
 *     again, resumes its session and resends the same request.
 *  2. A daemon's renewal is in flight while the issuer is frozen (SIGSTOP) and the broker
 *     restarts underneath both; the issuer thaws; the agent's resend lands and completes.
 */
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { agentStatusJson, createToken, SIGIL, sigil, sigilJson } from '../helpers/cli.js';
import { issuerDb, waitFor, writeTransportAgent } from '../helpers/mosquitto.js';
import { useMqttIssuerRig } from '../helpers/mqtt-rig.js';

interface CertRow {
  request_id: string;
  generation: number;
  serial: string;
}

describe('broker restart in the middle of a renewal', () => {
  const rig = useMqttIssuerRig('sigil-mqtt-restart-');
  const { tmp, dataDir, admin } = rig;
  afterAll(() => {
    if (rig.issuer?.proc.pid) process.kill(rig.issuer!.proc.pid, 'SIGCONT');
  });

  const certs = (instanceId: string): Promise<CertRow[]> =>
    issuerDb(
      dataDir,
      (db) =>
        db
          .prepare('SELECT request_id, generation, serial FROM certificates WHERE instance_id = ? ORDER BY generation')
          .all(instanceId) as CertRow[],
    );
  const locked = (instanceId: string): Promise<boolean> =>
    issuerDb(
      dataDir,
      (db) =>
        (db.prepare('SELECT locked FROM instances WHERE id = ?').get(instanceId) as { locked: number }).locked === 1,
    );

  it('agent killed after sending, answer queued, broker restarted: the rerun completes with one certificate', async () => {
    const a = writeTransportAgent(tmp.path, 'blink', {
      pin: rig.pin,
      token: await createToken(admin),
      transports: [`{ type: mqtt, url: "${rig.broker.url}", timeout: 5s }`],
    });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    const instanceId = joined.spiffe_id.split('/').pop();

    const killed = await sigil(['agent', 'renew', '--config', a.config], {
      env: { SIGIL_TEST_CRASH_AT: 'after_send' },
    });
    expect(killed.code).not.toBe(0);
    const pending = (await agentStatusJson(['--config', a.config])).pending_request as string;
    expect(pending).toMatch(/^renew /);
    const requestId = pending.split(' ')[1];
    // The issuer answered into the agent's (offline) session.
    await waitFor(
      'the issuer to sign generation 2',
      async () => (await certs(instanceId)).some((c) => c.generation === 2) || undefined,
      10_000,
    );

    await rig.broker.stop();
    await rig.broker.start();
    const subscribed = (): number => rig.issuer!.log().split('mqtt responder subscribed').length - 1;
    const before = subscribed();

    const done = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(done).toMatchObject({ result: 'renewed', generation: 2 });
    const rows = await certs(instanceId);
    expect(rows.filter((c) => c.request_id === requestId)).toHaveLength(1);
    expect(rows.map((c) => c.generation)).toEqual([1, 2]);
    expect(rows[1]!.serial).toBe(done.serial);
    expect(await locked(instanceId)).toBe(false);
    // (The issuer resubscribes by itself; the next test needs it back.)
    await waitFor('the issuer to resubscribe', () => subscribed() > before || subscribed() >= 2 || undefined, 15_000);
  });

  it('issuer frozen while the broker restarts under an in-flight renewal: completes after reconnect, one certificate', async () => {
    // 30 s certificates renewed at 20% of their life: the daemon renews ~6 s after joining
    // (the certificate is back-dated 60 s, so its first renewal is due at once).
    const a = writeTransportAgent(tmp.path, 'daemon', {
      pin: rig.pin,
      token: await createToken(admin),
      transports: [`{ type: mqtt, url: "${rig.broker.url}", timeout: 4s }`],
      extra: 'ttl: 30s\nrenew_fraction: 0.2\n',
    });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    const instanceId = joined.spiffe_id.split('/').pop();
    process.kill(rig.issuer!.proc.pid!, 'SIGSTOP');
    const daemon = spawn(process.execPath, [SIGIL, 'agent', 'run', '--config', a.config], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
    });
    let log = '';
    daemon.stderr.on('data', (d: Buffer) => (log += d.toString()));
    try {
      const pending = await waitFor(
        'a renewal in flight',
        async () => ((await agentStatusJson(['--config', a.config])).pending_request as string | null) ?? undefined,
        20_000,
        200,
      );
      await new Promise((r) => setTimeout(r, 500));
      await rig.broker.stop();
      await new Promise((r) => setTimeout(r, 500));
      await rig.broker.start();
      process.kill(rig.issuer!.proc.pid!, 'SIGCONT');
      const st = await waitFor(
        'the renewal to complete',
        async () => {
          const s = await agentStatusJson(['--config', a.config]);
          return s.generation >= 2 ? s : undefined;
        },
        45_000,
        250,
      );
      const requestId = pending.split(' ')[1];
      const rows = await certs(instanceId);
      expect(rows.filter((c) => c.request_id === requestId)).toHaveLength(1);
      expect(rows.find((c) => c.request_id === requestId)!.serial).toBe(st.serial);
      expect(await locked(instanceId)).toBe(false);
    } finally {
      process.kill(rig.issuer!.proc.pid!, 'SIGCONT');
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
    expect(log).not.toMatch(/generation_mismatch|"level":50/);
  }, 90_000);
});
