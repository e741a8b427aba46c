/**
 * Crash safety of a renewal (SIGKILL via the test-only SIGIL_TEST_CRASH_AT hook, agent/test-hooks.ts)
 * at every step — before the request is persisted, after, after sending, after the answer
 * arrived but before it is stored, in the middle of writing the outputs — many times over, over
 * HTTPS and over MQTT. After every kill: the last valid identity is still there, no output file
 * is torn, and the next normal run completes without ever tripping the generation lock.
 *
 * Also: an agent restarted while offline has its outputs back within 300 ms of process start.
 */
import { spawn } from 'node:child_process';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentStatusJson, createToken, SIGIL, sigil, sigilJson, writeAgentConfig } from '../helpers/cli.js';
import { issuerDb, writeTransportAgent } from '../helpers/mosquitto.js';
import { useMqttIssuerRig } from '../helpers/mqtt-rig.js';
import { useIssuer } from '../helpers/issuer-fixture.js';

type Point = 'before_persist' | 'after_persist' | 'after_send' | 'after_response' | 'during_output';
const POINTS: Point[] = ['before_persist', 'after_persist', 'after_send', 'after_response', 'during_output'];

/** Parse both files (throws on a torn one) and say whether the key belongs to the certificate. */
function outputs(outDir: string): { keyMatchesCert: boolean; serial: string } {
  const cert = new X509Certificate(readFileSync(join(outDir, 'svid.pem')));
  const key = createPublicKey(readFileSync(join(outDir, 'svid.key'), 'utf8'));
  new X509Certificate(readFileSync(join(outDir, 'bundle.pem')));
  const a = cert.publicKey.export({ type: 'spki', format: 'der' });
  const b = key.export({ type: 'spki', format: 'der' });
  return { keyMatchesCert: a.equals(b), serial: cert.serialNumber.toLowerCase() };
}

/**
 * One kill and recovery. `round` picks, for during_output, which rename of the file set
 * (bundle, key, certificate) the kill precedes: 0 and 1 leave the old pair, 2 a new key next
 * to the old certificate — the mix the next start must repair.
 */
async function crashCycle(
  config: string,
  outDir: string,
  point: Point,
  round: number,
  instanceId: string,
  issuerDataDir: string,
): Promise<void> {
  const before = await agentStatusJson(['--config', config]);
  const env = { SIGIL_TEST_CRASH_AT: point, SIGIL_TEST_CRASH_RENAME: String(round % 3) };
  const killed = await sigil(['agent', 'renew', '--config', config], { env });
  expect(killed.code, `${point}: the agent should have been killed (stderr: ${killed.stderr})`).toBe(-1);

  // Right after the kill: the last valid identity is intact…
  const st = await agentStatusJson(['--config', config]);
  expect(st.state).toMatch(/^(ok|renewal_overdue)$/);
  expect(Date.parse(st.not_after)).toBeGreaterThan(Date.now());
  expect(st.generation).toBeGreaterThanOrEqual(before.generation);
  // …and no output file is torn. Only a kill between the renames of the file set can leave a
  // new key next to the old certificate; the next start rewrites the set from the database.
  const o = outputs(outDir);
  if (point !== 'during_output')
    expect(o.keyMatchesCert, `${point}: key and certificate on disk must match`).toBe(true);
  else expect(o.keyMatchesCert, `during_output before rename ${round % 3}`).toBe(round % 3 !== 2);

  // The next normal run completes: it resends a pending request (same id) or has nothing to do.
  const next = await sigilJson(['agent', 'run', '--config', config, '--once']);
  expect(['renewed', 'none']).toContain(next.result);
  const after = outputs(outDir);
  expect(after.keyMatchesCert).toBe(true);
  expect(
    readdirSync(outDir).filter((n) => n.includes('.tmp-')),
    'temp files of the interrupted write are cleaned up',
  ).toEqual([]);
  const st2 = await agentStatusJson(['--config', config]);
  expect(st2.pending_request).toBeNull();
  expect(after.serial).toBe(st2.serial);
  const locked = await issuerDb(
    issuerDataDir,
    (db) => (db.prepare('SELECT locked FROM instances WHERE id = ?').get(instanceId) as { locked: number }).locked,
  );
  expect(locked, `${point}: the instance must never be locked`).toBe(0);
}

async function noDuplicatesNoLocks(issuerDataDir: string, instanceId: string): Promise<void> {
  const dup = await issuerDb(issuerDataDir, (db) =>
    db
      .prepare('SELECT request_id, count(*) n FROM certificates WHERE instance_id = ? GROUP BY request_id HAVING n > 1')
      .all(instanceId),
  );
  expect(dup).toEqual([]);
  const gens = await issuerDb(issuerDataDir, (db) =>
    (
      db
        .prepare('SELECT generation FROM certificates WHERE instance_id = ? ORDER BY generation')
        .all(instanceId) as Array<{ generation: number }>
    ).map((r) => r.generation),
  );
  expect(gens).toEqual(gens.map((_, i) => i + 1));
  const mismatches = await issuerDb(
    issuerDataDir,
    (db) => db.prepare("SELECT count(*) n FROM audit_log WHERE code = 'generation_mismatch'").get() as { n: number },
  );
  expect(mismatches.n).toBe(0);
}

describe('crash safety over HTTPS: SIGKILL at every point of a renewal, 5 times each', () => {
  const fx = useIssuer('sigil-crash-');
  const { tmp } = fx;

  it('never loses the identity, never tears an output, never locks the instance', async () => {
    const a = writeAgentConfig(tmp.path, 'crashy', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer),
    });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    const instanceId = joined.spiffe_id.split('/').pop();
    for (let round = 0; round < 5; round++) {
      for (const point of POINTS) await crashCycle(a.config, a.outDir, point, round, instanceId, fx.issuer.dataDir);
    }
    await noDuplicatesNoLocks(fx.issuer.dataDir, instanceId);
    const instances = await sigilJson(['ctl', '--data-dir', fx.issuer.dataDir, 'instances', 'ls']);
    expect(instances.find((i: { id: string }) => i.id === instanceId)).toMatchObject({ locked: false });
  }, 300_000);

  it('a restarted agent writes its cached outputs within 300 ms of process start (issuer down)', async () => {
    const a = writeAgentConfig(tmp.path, 'fast', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer),
    });
    await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    await fx.issuer.stop();
    const svid = join(a.outDir, 'svid.pem');
    const times: number[] = [];
    const bare: number[] = [];
    try {
      for (let i = 0; i < 7; i++) {
        rmSync(a.outDir, { recursive: true, force: true });
        const t0 = performance.now();
        const p = spawn(process.execPath, [SIGIL, 'agent', 'run', '--config', a.config], {
          stdio: 'ignore',
          env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
        });
        while (!existsSync(svid) || statSync(svid).size === 0) {
          if (performance.now() - t0 > 10_000) throw new Error('no outputs within 10 s');
          await new Promise((r) => setTimeout(r, 2));
        }
        times.push(performance.now() - t0);
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGTERM');
        await exited;
        // Calibration, interleaved: a bare `node` that does nothing, spawn to exit.
        const b0 = performance.now();
        await new Promise((r) => spawn(process.execPath, ['-e', ''], { stdio: 'ignore' }).once('exit', r));
        bare.push(performance.now() - b0);
      }
    } finally {
      await fx.issuer.restart();
    }
    const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    console.log(
      `restart → outputs on disk (ms): ${times.map((t) => t.toFixed(0)).join(', ')}; median ${median(times).toFixed(0)} (bare node start+exit: median ${median(bare).toFixed(0)})`,
    );
    // The median, so that one scheduling hiccup does not decide. ~130 ms on an idle machine of
    // this kind. When the machine is so loaded that node's own start-up is slow, what Sigil owns
    // is the multiple of it: the agent serves after about 3 bare node start-ups.
    expect(
      median(times) < 300 || median(times) < 4 * median(bare),
      `median ${median(times).toFixed(0)} ms, bare node ${median(bare).toFixed(0)} ms`,
    ).toBe(true);
    expect(outputs(a.outDir).keyMatchesCert).toBe(true);
  }, 120_000);
});

describe('crash safety over MQTT: the answer waits in the broker session', () => {
  const rig = useMqttIssuerRig('sigil-crash-mqtt-');
  const { tmp, dataDir, admin } = rig;

  it('after_send, after_response and during_output, 3 times each', async () => {
    const a = writeTransportAgent(tmp.path, 'crashy-mqtt', {
      pin: rig.pin,
      token: await createToken(admin),
      transports: [`{ type: mqtt, url: "${rig.broker.url}", timeout: 5s }`],
    });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    const instanceId = joined.spiffe_id.split('/').pop();
    for (let round = 0; round < 3; round++) {
      for (const point of ['after_send', 'after_response', 'during_output'] as Point[])
        await crashCycle(a.config, a.outDir, point, round, instanceId, dataDir);
    }
    await noDuplicatesNoLocks(dataDir, instanceId);
  }, 240_000);
});
