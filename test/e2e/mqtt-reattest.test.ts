/**
 * The issuer is down for longer than the certificate lifetime while the broker stays up, for
 * the join methods that can re-attest (x509, tpm): the agent keeps serving its identity until
 * expiry, retrying with backoff (no busy loop); after the expiry it keeps trying to join again
 * (never reattest_required: no person is needed), and once the issuer is back it re-joins by
 * itself over MQTT as the same instance, with a new certificate: the renewal queued before the
 * expiry is dropped (MQTT cannot carry it after the expiry: the bootstrap login may not publish
 * renewals, and the issuer answers renewals only on the instance's own topic), and the re-join
 * follows in the same pass. The token-join version of this outage is mqtt-issuer-down.test.ts.
 *
 * Real processes throughout: mosquitto, `sigil server start --mqtt-url`, `sigil agent run`,
 * and swtpm for the tpm join. The two methods run concurrently, each with its own broker and
 * issuer, so the file takes about one certificate lifetime plus the re-join.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import {
  agentStatusJson,
  applyResources,
  RESOURCES,
  SIGIL,
  sigil,
  sigilJson,
  tempDir,
  type RunningIssuer,
} from '../helpers/cli.js';
import { prepareMqttIssuer, spawnIssuer, waitFor, type Broker, type IssuerProcess } from '../helpers/mosquitto.js';
import { OpensslPki } from '../helpers/openssl-pki.js';
import { createLocalCa, simulateBoot, startSwtpm, type SharedLocalCa, type SwtpmInstance } from '../helpers/swtpm.js';

/** The shortest lifetime the issuer grants (util/duration.ts MIN_TTL_S); longer on a loaded machine (lifetimeForLatency). */
const TTL_S = 30;

/**
 * How long this machine takes, right now, to run the CLI on `config` (an `agent status` before the
 * join: process start, module load, config and state): the slower of two runs.
 */
async function cliLatencyMs(config: string): Promise<number> {
  let worst = 0;
  for (let i = 0; i < 2; i++) {
    const t0 = performance.now();
    await sigil(['agent', 'status', '--config', config, '--format', 'json']);
    worst = Math.max(worst, performance.now() - t0);
  }
  return worst;
}

/**
 * The certificate lifetime for a machine that runs the CLI in `cliMs`: the issuer's shortest
 * when idle; otherwise long enough that the 40 % of it after the renewal point (renew_fraction
 * 0.6) holds ten CLI runs (the daemon's start, its attempt, this test's status reads).
 */
function lifetimeForLatency(cliMs: number): number {
  return Math.max(TTL_S, Math.ceil((25 * cliMs) / 1000));
}

interface LogLine {
  time: number;
  msg: string;
  [k: string]: unknown;
}

/** One method's world: its own broker, issuer data dir and issuer process. */
interface Rig {
  dir: string;
  broker: Broker;
  dataDir: string;
  pin: string;
  issuer: IssuerProcess | undefined;
}

describe.concurrent('issuer down longer than the certificate lifetime, broker up: tpm/x509 re-attest', () => {
  const tmp = tempDir('sigil-mqtt-reattest-');
  const stops: Array<() => Promise<void> | void> = [];
  let pki: OpensslPki;
  let deviceRoot: string;
  let ca: SharedLocalCa;
  let tpm: SwtpmInstance;
  let eventLog: string;

  beforeAll(async () => {
    pki = new OpensslPki(join(tmp.path, 'pki'));
    const root = pki.root('enterprise-root', '/O=Acme/CN=Acme Root', 'ec');
    const inter = pki.intermediate('device-ca', root, '/O=Acme/CN=Acme Device CA', 'ec');
    pki.leaf('gw-0001', inter, '/O=Acme/CN=gw-0001', { kind: 'ec' });
    deviceRoot = join(tmp.path, 'pki', 'ca-bundle.pem');
    writeFileSync(deviceRoot, root.pem);

    ca = await createLocalCa();
    stops.push(() => ca.destroy());
    tpm = await startSwtpm({ localCa: ca });
    stops.push(() => tpm.destroy());
    eventLog = join(tmp.path, 'boot.log');
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
  }, 120_000);

  afterAll(async () => {
    // Agents first (they talk to the rest), then issuers, brokers, the TPM; then the files.
    const errors: unknown[] = [];
    for (const stop of stops.reverse())
      await Promise.resolve()
        .then(stop)
        .catch((e: unknown) => errors.push(e));
    tmp.cleanup();
    if (errors.length) throw errors[0];
  });

  async function startRig(name: string, joinRule: string): Promise<Rig> {
    const dir = join(tmp.path, name);
    const dataDir = join(dir, 'issuer');
    const { broker, pin } = await prepareMqttIssuer(dir, dataDir);
    await applyResources({ dataDir } as RunningIssuer, dir, `${RESOURCES}---\n${joinRule}`);
    const rig: Rig = { dir, broker, dataDir, pin, issuer: await spawnIssuer(dataDir, ['--mqtt-url', broker.url]) };
    // Registered in start order; afterAll stops them in reverse (issuer before broker).
    stops.push(() => broker.stop());
    stops.push(() => rig.issuer?.stop());
    return rig;
  }

  /**
   * The shortest lifetime, renewed at ~60 % of it: fewer failed attempts before the expiry keep
   * the backoff short when the issuer returns (up to 2^failures s; there is no backoff setting).
   */
  function writeAgent(rig: Rig, joinYaml: string): { config: string; outDir: string } {
    const dir = join(rig.dir, 'agent');
    mkdirSync(dir, { recursive: true });
    const config = join(dir, 'agent.yaml');
    const outDir = join(dir, 'identity');
    writeFileSync(
      config,
      `ca_pin: ${rig.pin}\ndata_dir: ${join(dir, 'data')}\nttl: ${TTL_S}s\nrenew_fraction: 0.6\n${joinYaml}` +
        `transports:\n  - { type: mqtt, url: "${rig.broker.url}", timeout: 2s }\noutputs:\n  - { type: identity, path: ${outDir} }\n`,
    );
    return { config, outDir };
  }

  /** `sigil agent run` as a daemon, its JSON log parsed line by line. */
  function startDaemon(config: string): { lines: LogLine[]; stop(): Promise<void> } {
    const proc = spawn(process.execPath, [SIGIL, 'agent', 'run', '--config', config], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
    });
    const lines: LogLine[] = [];
    let rest = '';
    proc.stderr.on('data', (d: Buffer) => {
      const parts = (rest + d.toString()).split('\n');
      rest = parts.pop()!;
      for (const p of parts) {
        try {
          lines.push(JSON.parse(p) as LogLine);
        } catch {
          lines.push({ time: Date.now(), msg: p });
        }
      }
    });
    const stop = async (): Promise<void> => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    };
    stops.push(stop);
    return { lines, stop };
  }

  /**
   * The outage, for one agent: join over MQTT, kill the issuer, let the certificate expire
   * under the daemon, bring the issuer back on the same data dir, and watch the agent re-join.
   */
  async function outlastIssuerOutage(
    expect: ExpectStatic,
    rig: Rig,
    a: { config: string; outDir: string },
    method: string,
  ): Promise<void> {
    const transport = `mqtt ${rig.broker.url}`;
    // The lifetime and the waits scale with how fast this machine runs the CLI right now (both
    // methods run at once, with swtpm): "before the expiry" must leave room for an attempt.
    const cliMs = await cliLatencyMs(a.config);
    const ttlS = lifetimeForLatency(cliMs);
    console.log(`mqtt-reattest ${method}: the CLI took ${cliMs.toFixed(0)} ms here: certificate lifetime ${ttlS} s`);
    writeFileSync(a.config, readFileSync(a.config, 'utf8').replace(`ttl: ${TTL_S}s`, `ttl: ${ttlS}s`));
    const graceMs = Math.max(20_000, 10 * cliMs);
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(joined).toMatchObject({ result: 'joined', generation: 1 });
    const notAfter = Date.parse(joined.not_after);
    const first = await agentStatusJson(['--config', a.config]);
    expect(first).toMatchObject({ state: 'ok', join_method: method, transport });
    const instanceId: string = first.instance_id;
    const svid = join(a.outDir, 'svid.pem');
    const servedPem = readFileSync(svid, 'utf8');
    await rig.issuer!.kill();
    rig.issuer = undefined;

    const daemon = startDaemon(a.config);
    const failures = (): LogLine[] => daemon.lines.filter((l) => l.msg.startsWith('attempt failed'));
    try {
      // Before expiry: renewals fail and back off, the same certificate is served meanwhile.
      await waitFor('a failed renewal', () => failures().length >= 1, notAfter - Date.now() + graceMs, 200);
      const during = await agentStatusJson(['--config', a.config]);
      // The agent's own time of its first failed attempt, not when this test looked: the renewal
      // was attempted, and failed, while the certificate was still valid.
      expect(failures()[0]!.time).toBeLessThan(notAfter);
      expect(during).toMatchObject({ serial: joined.serial, instance_id: instanceId, transport });
      expect(during.consecutive_failures).toBeGreaterThanOrEqual(1);
      expect(during.last_error).toMatch(/^issuer_unreachable: /);
      expect(readFileSync(svid, 'utf8')).toBe(servedPem);

      // After expiry: it keeps trying (to join again, with fresh evidence), and never asks for a person.
      await waitFor(
        'a failed attempt after the expiry',
        () => failures().some((l) => l.time > notAfter),
        Math.max(5_000, notAfter - Date.now() + graceMs),
        200,
      );
      const expired = await agentStatusJson(['--config', a.config]);
      expect(expired).toMatchObject({ state: 'expired', serial: joined.serial, instance_id: instanceId });
      expect(expired.last_error).toMatch(/^issuer_unreachable: /);
      expect(daemon.lines.some((l) => /reattest_required/.test(JSON.stringify(l)))).toBe(false);
      // The last certificate stays on disk (workloads decide what an expired one means to them).
      expect(readFileSync(svid, 'utf8')).toBe(servedPem);

      // The issuer is back on the same data dir: the daemon re-joins by itself, over MQTT.
      const back = Date.now();
      rig.issuer = await spawnIssuer(rig.dataDir, ['--mqtt-url', rig.broker.url]);
      // The daemon is backing off: it comes back at its next attempt (status next_attempt), which
      // after several failures can be a minute away — capped exponential backoff, by design.
      const nextAttempt = Date.parse((await agentStatusJson(['--config', a.config])).next_attempt ?? '') || Date.now();
      const rejoin = await waitFor(
        'the re-join',
        () => daemon.lines.find((l) => l.msg === 'joined' && l.time >= back),
        Math.max(45_000, nextAttempt - Date.now() + graceMs),
        200,
      ).catch((e: Error) => {
        throw new Error(
          `${e.message} (back at ${back})\nagent:\n${daemon.lines.map((l) => JSON.stringify(l)).join('\n')}\nissuer:\n${rig.issuer?.log()}`,
        );
      });
      expect(rejoin.transport).toBe(transport);
      // The renewal queued before the expiry was dropped once, at the first attempt that began
      // after the expiry (which may come after the issuer is back, when an attempt straddled the
      // expiry), without waiting for an answer MQTT cannot bring; then the agent joined.
      const dropped = daemon.lines.filter((l) =>
        l.msg.startsWith('the renewal queued before the expiry cannot be resent'),
      );
      expect(dropped).toHaveLength(1);
      expect(dropped[0]!.time).toBeGreaterThanOrEqual(notAfter);
      expect(dropped[0]!.time).toBeLessThanOrEqual(rejoin.time);

      // Backoff, not a busy loop: a handful of attempts over the ~35 s the issuer was away.
      const attempts = failures().length;
      expect(attempts).toBeGreaterThanOrEqual(3);
      expect(attempts).toBeLessThan(20);

      const healthy = await agentStatusJson(['--config', a.config]);
      expect(healthy).toMatchObject({
        state: 'ok',
        instance_id: instanceId,
        spiffe_id: first.spiffe_id,
        join_method: method,
        generation: 2,
        consecutive_failures: 0,
        last_error: null,
        transport,
        pending_request: null,
      });
      expect(healthy.serial).not.toBe(joined.serial);
      expect(Date.parse(healthy.not_after)).toBeGreaterThan(notAfter);
      const newPem = readFileSync(svid, 'utf8');
      expect(newPem).toContain('BEGIN CERTIFICATE');
      expect(newPem).not.toBe(servedPem);

      // The issuer's audit log has the re-join of the same instance (its history kept).
      const audit = (await sigilJson<Array<Record<string, any>>>(['ctl', '--data-dir', rig.dataDir, 'audit'])).filter(
        (r) => r.action === 'join' && r.outcome === 'ok',
      );
      expect(audit.map((r) => [r.instance_id, r.method, r.details?.generation, r.details?.rejoin])).toEqual([
        [instanceId, method, 1, false],
        [instanceId, method, 2, true],
      ]);
    } finally {
      await daemon.stop();
    }
  }

  it('x509: serves until expiry, then re-joins by itself when the issuer returns', async ({ expect }) => {
    const rig = await startRig(
      'x509',
      `kind: join_rule\nname: factory\nspec:\n  method: x509\n  bot: gw\n  x509:\n    ca_files: [${deviceRoot}]\n    allow: [ { subject_cn: "gw-*" } ]\n`,
    );
    const a = writeAgent(
      rig,
      `join:\n  method: x509\n  x509: { cert: ${pki.path('gw-0001.pem')}, chain: ${pki.path('device-ca.pem')}, key: ${pki.path('gw-0001.key')} }\n`,
    );
    await outlastIssuerOutage(expect, rig, a, 'x509');
  }, 400_000);

  it('tpm (swtpm, key_storage: tpm): serves until expiry, then re-joins by itself when the issuer returns', async ({
    expect,
  }) => {
    const rig = await startRig(
      'tpm',
      `kind: join_rule\nname: racks\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles[0]}, ${ca.caFiles[1]}]\n    firmware_profiles: [lab-gateway-v1]\n`,
    );
    const a = writeAgent(
      rig,
      `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: ${eventLog} } }\nkey_storage: tpm\n`,
    );
    await outlastIssuerOutage(expect, rig, a, 'tpm');
  }, 400_000);
});
