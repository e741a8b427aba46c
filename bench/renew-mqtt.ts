/**
 * Renewal over MQTT, next to HTTPS and to the in-process issuance rate, all in one run, against
 * one issuer process (`sigil server start --mqtt-url`) and a real mosquitto:
 *
 *  1. steady state: N agents renew in a closed loop through mosquitto for S seconds (each agent
 *     its own MqttIssuerClient: own connection, persistent session, response topic), then the
 *     same agents over HTTPS for S seconds — renewals/s and p50/p99 of the round trip;
 *     The issuer's CPU per renewal (/proc/<pid>/stat) is printed for each carrier and their
 *     ratio; the phases alternate (--steady-rounds) so that machine drift hits both;
 *  2. a reconnect storm after a broker restart, --storm-runs times: M agents, connected with
 *     persistent sessions, lose the broker together (SIGTERM, persistence on); when it is back
 *     every one of them has a renewal due at once. Each agent paces itself exactly as a real
 *     agent does — the same MqttIssuerClient, its spread for a fleet of M
 *     (transport/mqtt/pacing.ts spreadForFleet, as `reconnect: { fleet_size: M }` in agent.yaml),
 *     its connect timeout and bounded retries. Reported: time from the broker's return until all
 *     are renewed, resends (a published request sent again after its timeout), connect retries,
 *     republishes after PUBACK 0x10, the kernel's listen-queue overflows (/proc/net/netstat),
 *     the issuer's peak RSS, and CPU per renewal of issuer, mosquitto and load generator;
 *  3. the issuer stopped, CertificateIssuer.issueSvid in this process: the issuance limit.
 *
 *   npm run bench -- renew-mqtt [--agents 50] [--seconds 10] [--steady-rounds 2]
 *                               [--storm 5000] [--storm-runs 3] [--reconnect-rate 500] [--profile]
 *
 * Requests are built before their timed phase where that is possible (the storm's 5,000 CSRs
 * and signatures) so that the load generator's key generation does not pace the issuer. One
 * process plays all M devices: its CPU share says when it, not the issuer, is the limit.
 * --profile runs the issuer under `node --cpu-prof` (the .cpuprofile path is printed).
 * Last stdout line: {"bench":"renew-mqtt", …}.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildJoinRequest, buildRenewRequest, type BuiltRequest } from '../src/agent/requests.js';
import { backoffDelay } from '../src/agent/schedule.js';
import { SigilError } from '../src/errors.js';
import { TokenJoinAgent } from '../src/join/token/agent.js';
import { loadSigner, parseKeyRef, type Signer } from '../src/keystore/index.js';
import { CertificateIssuer } from '../src/pki/issue.js';
import { randomSerial } from '../src/pki/serial.js';
import type { Jws } from '../src/protocol/jws.js';
import { identityResponseSchemas } from '../src/protocol/messages.js';
import { requestHash, ResponseVerifier, verifyResponseOrError } from '../src/protocol/verify-response.js';
import { runAdminOp } from '../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores } from '../src/server/data-dir.js';
import { HttpsIssuerClient } from '../src/transport/https/client.js';
import { MqttIssuerClient } from '../src/transport/mqtt/client.js';
import { DEFAULT_RECONNECT_RATE, spreadForFleet } from '../src/transport/mqtt/pacing.js';
import type { IssuerTransport } from '../src/transport/types.js';
import { startMosquitto, type Broker } from '../test/helpers/mosquitto.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SIGIL_BIN = join(ROOT, 'bin', 'sigil.js');
const TD = 'bench.example';
const BOT = 'bench-gw';

const { values: args } = parseArgs({
  options: {
    agents: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '10' },
    storm: { type: 'string', default: '5000' },
    'storm-runs': { type: 'string', default: '1' },
    'steady-rounds': { type: 'string', default: '2' },
    'reconnect-rate': { type: 'string', default: String(DEFAULT_RECONNECT_RATE) },
    profile: { type: 'boolean', default: false },
  },
});
const AGENTS = Number(args.agents);
const SECONDS = Number(args.seconds);
const STORM = Number(args.storm);
const STORM_RUNS = Number(args['storm-runs']);
const ROUNDS = Number(args['steady-rounds']);
const RATE = Number(args['reconnect-rate']);
if (
  ![AGENTS, SECONDS, STORM, STORM_RUNS, ROUNDS, RATE].every((n) => Number.isFinite(n) && n > 0) ||
  AGENTS > 5000 ||
  STORM > 20000 ||
  STORM_RUNS > 10
) {
  process.stderr.write(
    'usage: npm run bench -- renew-mqtt [--agents N<=5000] [--seconds S] [--steady-rounds R] [--storm M<=20000] [--storm-runs K<=10] [--reconnect-rate R] [--profile]\n',
  );
  process.exit(2);
}
/** The agents' reconnect spread: what `reconnect: { fleet_size: STORM, rate: RATE }` gives a real agent. */
const SPREAD_MS = spreadForFleet(STORM, RATE);
if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) {
  process.stderr.write('error[not_built]: run `npm run build` first (`npm run bench` does)\n');
  process.exit(2);
}

const work = mkdtempSync(join(tmpdir(), 'sigil-bench-mqtt-'));
/** Outside `work` (removed at the end): the issuer writes its profile when it exits. */
const PROFILE_DIR = join(tmpdir(), `sigil-renew-mqtt-profile-${process.pid}`);
const dataDir = join(work, 'issuer');
let issuer: ChildProcess | undefined;
let broker: Broker | undefined;
const transports: IssuerTransport[] = [];

interface BenchAgent {
  i: number;
  /** The issuer answers a renewal only on sigil/v1/resp/<this> (transport/mqtt/answer-topic.ts). */
  instanceId: string;
  signer: Signer;
  chainPem: string[];
  mqtt?: MqttIssuerClient;
  https?: HttpsIssuerClient;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length
    ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
    : NaN;
}
const r2 = (x: number): number | null => (Number.isFinite(x) ? Math.round(x * 100) / 100 : null);

/** utime + stime of a process in seconds (/proc/<pid>/stat fields 14 and 15; CLK_TCK 100). */
function cpuS(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function procKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function startIssuer(mqttUrl: string): Promise<{ url: string; pid: number }> {
  const p = spawn(
    process.execPath,
    [
      ...(args.profile ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : []),
      SIGIL_BIN,
      'server',
      'start',
      '--data-dir',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      '--log-level',
      'warn',
      '--mqtt-url',
      mqttUrl,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
    },
  );
  issuer = p;
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`issuer did not start: ${err}`)), 30_000);
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (https:\/\/\S+)/.exec(out);
      if (m && out.includes('mqtt responder subscribed')) {
        clearTimeout(t);
        resolve({ url: m[1]!, pid: p.pid! });
      }
    });
    p.once('exit', (c) => reject(new Error(`issuer exited ${c}: ${err}`)));
  });
}

async function tokens(n: number): Promise<string[]> {
  const stores = openIssuerStores(dataDir);
  try {
    const out: string[] = [];
    for (let i = 0; i < n; i++)
      out.push(((await runAdminOp(stores, 'token.create', { bot: BOT, ttl: '1h' })) as { token: string }).token);
    return out;
  } finally {
    await stores.close();
  }
}

/**
 * An agent's MQTT transport as the agent builds it (agent/transports.ts): the request timeout and
 * connect timeout are the agent's defaults unless given; `reconnectSpreadMs` as from agent.yaml.
 */
function mqttClient(
  broker: Broker,
  pin: string,
  root: string,
  id: string,
  o: { timeoutMs?: number; reconnectSpreadMs?: number } = {},
): MqttIssuerClient {
  const c = new MqttIssuerClient({
    url: broker.url,
    pin,
    rootPem: root,
    ...o,
    session: () => ({ clientId: `sigil-${id}`, responseId: id }),
  });
  transports.push(c);
  return c;
}

/** Join `n` agents over HTTPS, `concurrency` at a time (setup, untimed). */
async function joinAll(n: number, https: HttpsIssuerClient, root: string, concurrency = 50): Promise<BenchAgent[]> {
  const toks = await tokens(n);
  const out: BenchAgent[] = [];
  for (let base = 0; base < n; base += concurrency) {
    await Promise.all(
      toks.slice(base, base + concurrency).map(async (tok, j) => {
        const m = new TokenJoinAgent(tok);
        const b = await buildJoinRequest({ method: 'token', evidence: (c) => m.evidence(c), now: Date.now() });
        for (let attempt = 0; ; attempt++) {
          try {
            const res = verifyResponseOrError(
              await https.post('join', b.envelope),
              'join',
              b.entry.requestId,
              requestHash(b.envelope),
              root,
            );
            out[base + j] = {
              i: base + j,
              instanceId: res.result.instance_id,
              signer: loadSigner(parseKeyRef(b.entry.pendingKeyRef!)),
              chainPem: res.result.chain,
            };
            return;
          } catch (e) {
            // Setup only: resend the same join (idempotent) after a retryable failure.
            if (!(e instanceof SigilError) || !e.retryable || attempt >= 10) throw e;
            await new Promise((r) => setTimeout(r, backoffDelay(attempt)));
          }
        }
      }),
    );
  }
  return out;
}

/** Every answer is verified, as an agent's IssuerLink does (its verifier remembers the issuer chains it checked). */
// The identity answer schemas built once (an agent daemon builds them per check: issue #19).
const verifier = new ResponseVerifier(identityResponseSchemas());

async function renewOnce(
  a: BenchAgent,
  t: IssuerTransport,
  root: string,
  op: BuiltRequest | undefined,
  lat?: number[],
): Promise<void> {
  const b = op ?? (await buildRenewRequest({ current: a.signer, chainPem: a.chainPem, now: Date.now() }));
  let attempt = 0;
  let published = false;
  for (;;) {
    const t0 = performance.now();
    try {
      const body = await t.post('renew', b.envelope as Jws, { sent: () => (published = true) });
      lat?.push(performance.now() - t0);
      const res = verifier.responseOrError(body, 'renew', b.entry.requestId, requestHash(b.envelope), root);
      a.signer = loadSigner(parseKeyRef(b.entry.pendingKeyRef!));
      a.chainPem = res.result.chain;
      return;
    } catch (e) {
      if (!(e instanceof SigilError) || !e.retryable) throw e;
      retryCodes[e.message.slice(0, 60)] = (retryCodes[e.message.slice(0, 60)] ?? 0) + 1;
      // The same request again after a jittered backoff, as the agent's outbox does. A resend
      // is a request that had been published; one that never got out is only a retry.
      await new Promise((r) => setTimeout(r, backoffDelay(attempt++)));
      if (published) resends++;
      else unsentRetries++;
    }
  }
}

let resends = 0;
let unsentRetries = 0;
const retryCodes: Record<string, number> = {};

async function closedLoop(
  agents: BenchAgent[],
  pick: (a: BenchAgent) => IssuerTransport,
  root: string,
  seconds: number,
): Promise<{ perS: number; p50: number; p99: number; n: number }> {
  const lat: number[] = [];
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let last = start;
  await Promise.all(
    agents.map(async (a) => {
      while (performance.now() < deadline) {
        await renewOnce(a, pick(a), root, undefined, lat);
        last = performance.now();
      }
    }),
  );
  const sorted = lat.sort((x, y) => x - y);
  return {
    perS: lat.length / ((Math.max(last, deadline) - start) / 1000),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    n: lat.length,
  };
}

function inProcessRate(seconds = 2): number {
  const ca = loadCaMaterial(dataDir);
  const engine = new CertificateIssuer({ caCertDer: ca.intermediateDer, caKey: ca.intermediateKey });
  const spkis = Array.from({ length: 100 }, () =>
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }),
  );
  const now = Date.now();
  let k = 0;
  const issue = (): void => {
    engine.issueSvid({
      serial: randomSerial(),
      spkiDer: spkis[k++ % 100]!,
      spiffeId: `spiffe://${TD}/bot/${BOT}/inproc-${k}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
    });
  };
  for (let i = 0; i < 200; i++) issue();
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < seconds * 1000) {
    for (let i = 0; i < 100; i++) issue();
    n += 100;
  }
  return n / ((performance.now() - start) / 1000);
}

/** Kernel listen-queue counters (namespace-wide): SYNs or ACKs dropped because an accept queue was full. */
function listenDrops(): { overflows: number; drops: number } {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
  const i = lines.findIndex((l) => l.startsWith('TcpExt:'));
  const names = lines[i]!.split(/\s+/);
  const vals = lines[i + 1]!.split(/\s+/).map(Number);
  const get = (n: string): number => vals[names.indexOf(n)] ?? NaN;
  return { overflows: get('ListenOverflows'), drops: get('ListenDrops') };
}

async function waitUntil(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Steady {
  n: number;
  perS: number;
  p50: number;
  p99: number;
  issuerCpuMs: number;
  genCpuMs: number;
}

/** One closed-loop phase with the issuer's and this process's CPU over exactly that phase. */
async function steadyPhase(
  agents: BenchAgent[],
  pick: (a: BenchAgent) => IssuerTransport,
  root: string,
  pid: number,
): Promise<Steady> {
  const i0 = cpuS(pid);
  const g0 = process.cpuUsage();
  const r = await closedLoop(agents, pick, root, SECONDS);
  const g = process.cpuUsage(g0);
  return { ...r, issuerCpuMs: (cpuS(pid) - i0) * 1000, genCpuMs: (g.user + g.system) / 1000 };
}

function sumSteady(xs: Steady[]): Steady & { lats: number } {
  const n = xs.reduce((t, x) => t + x.n, 0);
  return {
    n,
    perS: xs.reduce((t, x) => t + x.perS, 0) / xs.length,
    p50: xs.reduce((t, x) => t + x.p50, 0) / xs.length,
    p99: Math.max(...xs.map((x) => x.p99)),
    issuerCpuMs: xs.reduce((t, x) => t + x.issuerCpuMs, 0),
    genCpuMs: xs.reduce((t, x) => t + x.genCpuMs, 0),
    lats: xs.length,
  };
}

interface StormRun {
  run: number;
  renewed: number;
  seconds: number;
  resends: number;
  unsent_retries: number;
  connect_retries: number;
  failed_connects: number;
  republished_no_subscriber: number;
  listen_overflows: number;
  listen_drops: number;
  paced_s_mean: number;
  issuer_cpu_ms_per_renewal: number;
  mosquitto_cpu_ms_per_renewal: number;
  load_generator_cpu_ms_per_renewal: number;
  issuer_peak_rss_mb: number;
  failures: Record<string, number>;
}

/**
 * One storm: every storm agent is connected (persistent session); the broker restarts under all of
 * them; when it is back, each has a renewal due and reconnects the way its client paces it.
 */
async function stormRun(run: number, storm: BenchAgent[], root: string, pid: number): Promise<StormRun> {
  const prebuilt = await Promise.all(
    storm.map((a) => buildRenewRequest({ current: a.signer, chainPem: a.chainPem, now: Date.now() })),
  );
  const pacing = () =>
    storm.reduce(
      (t, a) => {
        const p = a.mqtt!.pacing;
        return {
          lost: t.lost + p.lost,
          retries: t.retries + p.retries,
          failed: t.failed + p.failedAttempts,
          republished: t.republished + p.republished,
          pacedMs: t.pacedMs + p.pacedMs,
        };
      },
      { lost: 0, retries: 0, failed: 0, republished: 0, pacedMs: 0 },
    );
  const p0 = pacing();
  await broker!.stop();
  await waitUntil('every agent to see the broker gone', () => pacing().lost - p0.lost >= storm.length, 30_000);
  const net0 = listenDrops();
  await broker!.start();
  resends = 0;
  unsentRetries = 0;
  for (const k of Object.keys(retryCodes)) delete retryCodes[k];
  const rssBefore = procKb(pid, 'VmRSS');
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, procKb(pid, 'VmRSS'))), 100);
  const cpu0 = { issuer: cpuS(pid), broker: cpuS(broker!.pid!), gen: cpuS(process.pid) };
  const t0 = performance.now();
  let done = 0;
  let lastDone = t0;
  const failures: Record<string, number> = {};
  const progress = setInterval(() => {
    const p = pacing();
    console.log(
      `  … ${((performance.now() - t0) / 1000).toFixed(0)} s: ${done}/${STORM} renewed, ${resends} resends, ${p.retries - p0.retries} connect retries, ${p.republished - p0.republished} republished ${JSON.stringify(retryCodes)}`,
    );
  }, 5_000);
  await Promise.all(
    storm.map(async (a, k) => {
      try {
        await renewOnce(a, a.mqtt!, root, prebuilt[k]);
        done++;
        lastDone = performance.now();
      } catch (e) {
        const code = e instanceof SigilError ? e.code : 'unexpected';
        failures[code] = (failures[code] ?? 0) + 1;
      }
    }),
  );
  clearInterval(sampler);
  clearInterval(progress);
  const seconds = (lastDone - t0) / 1000;
  const per = (sec: number): number => (done ? (sec * 1000) / done : NaN);
  const cpu = {
    issuer: per(cpuS(pid) - cpu0.issuer),
    broker: per(cpuS(broker!.pid!) - cpu0.broker),
    gen: per(cpuS(process.pid) - cpu0.gen),
  };
  const net = listenDrops();
  const p = pacing();
  const r: StormRun = {
    run,
    renewed: done,
    seconds: r2(seconds)!,
    resends,
    unsent_retries: unsentRetries,
    connect_retries: p.retries - p0.retries,
    failed_connects: p.failed - p0.failed,
    republished_no_subscriber: p.republished - p0.republished,
    listen_overflows: net.overflows - net0.overflows,
    listen_drops: net.drops - net0.drops,
    paced_s_mean: r2((p.pacedMs - p0.pacedMs) / 1000 / storm.length)!,
    issuer_cpu_ms_per_renewal: r2(cpu.issuer)!,
    mosquitto_cpu_ms_per_renewal: r2(cpu.broker)!,
    load_generator_cpu_ms_per_renewal: r2(cpu.gen)!,
    issuer_peak_rss_mb: Math.round(rssPeak / 1024),
    failures,
  };
  console.log(
    `storm run ${run}: ${done}/${STORM} renewed ${seconds.toFixed(2)} s after the broker came back; ${r.resends} resends, ${r.unsent_retries} unsent retries, ${r.connect_retries} connect retries (${r.failed_connects} failed attempts), ${r.republished_no_subscriber} republished (no subscriber yet), kernel listen overflows ${r.listen_overflows}; failures ${JSON.stringify(failures)}`,
  );
  console.log(
    `  CPU ms per renewal: issuer ${r.issuer_cpu_ms_per_renewal}, mosquitto ${r.mosquitto_cpu_ms_per_renewal}, load generator (all ${STORM} agents, one process) ${r.load_generator_cpu_ms_per_renewal}; issuer RSS peak ${r.issuer_peak_rss_mb} MB; mean wait for its place in the spread ${r.paced_s_mean} s`,
  );
  return r;
}

async function main(): Promise<void> {
  const init = initDataDir(dataDir, TD);
  {
    const stores = openIssuerStores(dataDir);
    await runAdminOp(stores, 'apply', {
      yaml: `kind: role\nname: bench\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: ${BOT}\nspec: { roles: [bench] }\n`,
      source: 'bench',
    });
    await stores.close();
  }
  broker = await startMosquitto(join(work, 'broker'));
  const { url, pid } = await startIssuer(broker.url);
  const https = new HttpsIssuerClient({ url, pin: init.pin });
  transports.push(https);
  const root = await https.ensureRoot();
  console.log(`issuer ${url} (pid ${pid}) + mosquitto ${broker.url} (pid ${broker.pid})`);

  // 1. steady state, MQTT and HTTPS alternating, same agents.
  const agents = await joinAll(AGENTS, https, root);
  for (const a of agents) {
    a.mqtt = mqttClient(broker, init.pin, root, a.instanceId, { timeoutMs: 30_000 });
    a.https = new HttpsIssuerClient({ url, pin: init.pin, rootPem: root });
    transports.push(a.https);
  }
  await Promise.all(agents.map((a) => renewOnce(a, a.mqtt!, root, undefined)));
  await Promise.all(agents.map((a) => renewOnce(a, a.https!, root, undefined)));
  const mqRounds: Steady[] = [];
  const htRounds: Steady[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    mqRounds.push(await steadyPhase(agents, (a) => a.mqtt!, root, pid));
    htRounds.push(await steadyPhase(agents, (a) => a.https!, root, pid));
  }
  const mq = sumSteady(mqRounds);
  const ht = sumSteady(htRounds);
  const mqIssuer = mq.issuerCpuMs / mq.n;
  const htIssuer = ht.issuerCpuMs / ht.n;
  for (const [name, x] of [
    ['MQTT ', mq],
    ['HTTPS', ht],
  ] as const)
    console.log(
      `${name} ${AGENTS} agents, ${ROUNDS}×${SECONDS} s: ${x.n} renewals, ${x.perS.toFixed(0)}/s, p50 ${x.p50.toFixed(1)} ms, p99 ${x.p99.toFixed(1)} ms; CPU ms per renewal: issuer ${(x.issuerCpuMs / x.n).toFixed(3)}, load generator ${(x.genCpuMs / x.n).toFixed(3)}`,
    );
  console.log(
    `issuer CPU per renewal, MQTT / HTTPS: ${(mqIssuer / htIssuer).toFixed(2)}× (target ≤ 1.2×; per round MQTT ${mqRounds.map((r) => (r.issuerCpuMs / r.n).toFixed(3)).join(', ')} / HTTPS ${htRounds.map((r) => (r.issuerCpuMs / r.n).toFixed(3)).join(', ')})`,
  );
  for (const a of agents) a.mqtt!.close();

  // 2. reconnect storms after a broker restart.
  const tJoin = performance.now();
  const storm = await joinAll(STORM, https, root);
  console.log(
    `storm: joined ${STORM} agents over HTTPS in ${((performance.now() - tJoin) / 1000).toFixed(1)} s (setup); reconnect spread ${SPREAD_MS} ms (fleet ${STORM} at ${RATE} connects/s)`,
  );
  // Setup, untimed: each agent connects (persistent session, response topic subscribed) by
  // renewing once, 100 at a time — the fleet as it is before the broker restarts.
  const tSetup = performance.now();
  for (const a of storm) a.mqtt = mqttClient(broker, init.pin, root, a.instanceId, { reconnectSpreadMs: SPREAD_MS });
  for (let base = 0; base < storm.length; base += 100)
    await Promise.all(storm.slice(base, base + 100).map((a) => renewOnce(a, a.mqtt!, root, undefined)));
  console.log(
    `storm: ${STORM} agents connected and renewed once in ${((performance.now() - tSetup) / 1000).toFixed(1)} s (setup)`,
  );
  const runs: StormRun[] = [];
  for (let run = 1; run <= STORM_RUNS; run++) runs.push(await stormRun(run, storm, root, pid));
  const hwm = procKb(pid, 'VmHWM');

  // 3. the limit, in this process with the issuer stopped.
  for (const t of transports) await t.close();
  issuer!.kill('SIGTERM');
  await new Promise((r) => issuer!.once('exit', r));
  if (args.profile) console.log(`issuer CPU profile: ${PROFILE_DIR}/*.cpuprofile`);
  const inproc = inProcessRate();
  console.log(
    `in-process issueSvid: ${inproc.toFixed(0)} certs/s; MQTT renewals / in-process: ${(mq.perS / inproc).toFixed(3)}, HTTPS: ${(ht.perS / inproc).toFixed(3)}`,
  );
  const allOk = runs.every((r) => r.renewed === STORM && r.resends === 0 && r.seconds <= 10);
  console.log(
    `storm target (all ${STORM} renewed in ≤ 10 s with 0 resends, ${STORM_RUNS} runs in a row): ${allOk ? 'met' : 'NOT met'} — ${runs.map((r) => `${r.seconds} s/${r.resends} resends`).join(', ')}`,
  );

  console.log(
    JSON.stringify({
      bench: 'renew-mqtt',
      agents: AGENTS,
      seconds: SECONDS,
      steady_rounds: ROUNDS,
      mqtt_renewals_per_s: Math.round(mq.perS),
      mqtt_p50_ms: r2(mq.p50),
      mqtt_p99_ms: r2(mq.p99),
      https_renewals_per_s: Math.round(ht.perS),
      https_p50_ms: r2(ht.p50),
      https_p99_ms: r2(ht.p99),
      issuer_cpu_ms_per_renewal_mqtt: Math.round(mqIssuer * 1000) / 1000,
      issuer_cpu_ms_per_renewal_https: Math.round(htIssuer * 1000) / 1000,
      issuer_cpu_mqtt_over_https: r2(mqIssuer / htIssuer),
      load_generator_cpu_ms_per_renewal_mqtt: r2(mq.genCpuMs / mq.n),
      load_generator_cpu_ms_per_renewal_https: r2(ht.genCpuMs / ht.n),
      inprocess_certs_per_s: Math.round(inproc),
      storm_agents: STORM,
      storm_spread_ms: SPREAD_MS,
      storm_runs: runs,
      storm_target_met: allOk,
      issuer_vmhwm_mb: Math.round(hwm / 1024),
    }),
  );
}

// Interrupted: leave no issuer or broker behind (the finally below does not run on a signal).
process.once('SIGINT', () => {
  if (issuer?.pid && issuer.exitCode === null) issuer.kill('SIGKILL');
  if (broker?.pid) process.kill(broker.pid, 'SIGKILL');
  rmSync(work, { recursive: true, force: true });
  process.exit(130);
});

let code = 0;
try {
  await main();
} catch (e) {
  process.stderr.write(`error: ${(e as Error).message}\n`);
  code = 1;
} finally {
  for (const t of transports) await t.close();
  if (issuer && issuer.exitCode === null) issuer.kill('SIGKILL');
  await broker?.stop();
  rmSync(work, { recursive: true, force: true });
}
process.exitCode = code;
