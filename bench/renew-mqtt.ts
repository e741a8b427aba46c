/**
 * Renewal over MQTT, next to HTTPS and to the in-process issuance rate, all in one run, against
 * one issuer process (`sigil server start --mqtt-url`) and a real mosquitto:
 *
 *  1. steady state: N agents renew in a closed loop through mosquitto for S seconds (each agent
 *     its own MqttIssuerClient: own connection, persistent session, response topic), then the
 *     same agents over HTTPS for S seconds — renewals/s and p50/p99 of the round trip;
 *  2. a reconnect storm: M agents whose certificates all need renewal at once connect together
 *     (one MQTT connection each) and renew — time until all are renewed, retries, and the
 *     issuer's peak RSS (/proc/<pid>/status VmHWM, and the highest VmRSS sampled in the storm);
 *  3. the issuer stopped, CertificateIssuer.issueSvid in this process: the issuance limit.
 *
 *   npm run bench -- renew-mqtt [--agents 50] [--seconds 10] [--storm 5000]
 *
 * Requests are built before their timed phase where that is possible (the storm's 5,000 CSRs
 * and signatures) so that the load generator's key generation does not pace the issuer.
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
import { requestHash, verifyResponseOrError } from '../src/protocol/verify-response.js';
import { runAdminOp } from '../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores } from '../src/server/data-dir.js';
import { HttpsIssuerClient } from '../src/transport/https/client.js';
import { MqttIssuerClient } from '../src/transport/mqtt/client.js';
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
  },
});
const AGENTS = Number(args.agents);
const SECONDS = Number(args.seconds);
const STORM = Number(args.storm);
if (![AGENTS, SECONDS, STORM].every((n) => Number.isFinite(n) && n > 0) || AGENTS > 5000 || STORM > 20000) {
  process.stderr.write('usage: npm run bench -- renew-mqtt [--agents N<=5000] [--seconds S] [--storm M<=20000]\n');
  process.exit(2);
}
if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) {
  process.stderr.write('error[not_built]: run `npm run build` first (`npm run bench` does)\n');
  process.exit(2);
}

const work = mkdtempSync(join(tmpdir(), 'sigil-bench-mqtt-'));
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

function mqttClient(broker: Broker, pin: string, root: string, id: string, timeoutMs: number): MqttIssuerClient {
  // The load generator is one process playing thousands of devices: in the storm its event loop,
  // not the broker, is what delays CONNACKs; a real device would not wait behind 4,999 others.
  const c = new MqttIssuerClient({
    url: broker.url,
    pin,
    rootPem: root,
    timeoutMs,
    connectTimeoutMs: timeoutMs,
    session: () => ({ clientId: id, responseId: id }),
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

async function renewOnce(
  a: BenchAgent,
  t: IssuerTransport,
  root: string,
  op: BuiltRequest | undefined,
  lat?: number[],
): Promise<void> {
  const b = op ?? (await buildRenewRequest({ current: a.signer, chainPem: a.chainPem, now: Date.now() }));
  let attempt = 0;
  for (;;) {
    const t0 = performance.now();
    try {
      const body = await t.post('renew', b.envelope as Jws);
      lat?.push(performance.now() - t0);
      const res = verifyResponseOrError(body, 'renew', b.entry.requestId, requestHash(b.envelope), root);
      a.signer = loadSigner(parseKeyRef(b.entry.pendingKeyRef!));
      a.chainPem = res.result.chain;
      return;
    } catch (e) {
      if (!(e instanceof SigilError) || !e.retryable) throw e;
      retryCodes[e.message.slice(0, 60)] = (retryCodes[e.message.slice(0, 60)] ?? 0) + 1;
      // The same request again after a jittered backoff, as the agent's outbox does.
      await new Promise((r) => setTimeout(r, backoffDelay(attempt++)));
      retries++;
    }
  }
}

let retries = 0;
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

  // 1. steady state, MQTT then HTTPS, same agents.
  const agents = await joinAll(AGENTS, https, root);
  for (const a of agents) {
    a.mqtt = mqttClient(broker, init.pin, root, a.instanceId, 30_000);
    a.https = new HttpsIssuerClient({ url, pin: init.pin, rootPem: root });
    transports.push(a.https);
  }
  await Promise.all(agents.map((a) => renewOnce(a, a.mqtt!, root, undefined)));
  await Promise.all(agents.map((a) => renewOnce(a, a.https!, root, undefined)));
  const mq = await closedLoop(agents, (a) => a.mqtt!, root, SECONDS);
  console.log(
    `MQTT  ${AGENTS} agents, ${SECONDS} s: ${mq.n} renewals, ${mq.perS.toFixed(0)}/s, p50 ${mq.p50.toFixed(1)} ms, p99 ${mq.p99.toFixed(1)} ms`,
  );
  const ht = await closedLoop(agents, (a) => a.https!, root, SECONDS);
  console.log(
    `HTTPS ${AGENTS} agents, ${SECONDS} s: ${ht.n} renewals, ${ht.perS.toFixed(0)}/s, p50 ${ht.p50.toFixed(1)} ms, p99 ${ht.p99.toFixed(1)} ms`,
  );
  for (const a of agents) a.mqtt!.close();

  // 2. reconnect storm.
  const tJoin = performance.now();
  const storm = await joinAll(STORM, https, root);
  console.log(
    `storm: joined ${STORM} agents over HTTPS in ${((performance.now() - tJoin) / 1000).toFixed(1)} s (setup)`,
  );
  const prebuilt = await Promise.all(
    storm.map((a) => buildRenewRequest({ current: a.signer, chainPem: a.chainPem, now: Date.now() })),
  );
  const rssBefore = procKb(pid, 'VmRSS');
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, procKb(pid, 'VmRSS'))), 100);
  retries = 0;
  const cpu0 = { issuer: cpuS(pid), broker: cpuS(broker.pid!), gen: cpuS(process.pid) };
  const t0 = performance.now();
  let done = 0;
  let lastDone = t0;
  const failures: Record<string, number> = {};
  const progress = setInterval(
    () =>
      console.log(
        `  … ${((performance.now() - t0) / 1000).toFixed(0)} s: ${done}/${STORM} renewed, ${retries} resends ${JSON.stringify(retryCodes)}`,
      ),
    5_000,
  );
  await Promise.all(
    storm.map(async (a, k) => {
      const c = mqttClient(broker!, init.pin, root, a.instanceId, 60_000);
      try {
        await renewOnce(a, c, root, prebuilt[k]);
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
  const stormS = (lastDone - t0) / 1000;
  const pct = (k: 'issuer' | 'broker' | 'gen', p: number): number => (100 * (cpuS(p) - cpu0[k])) / stormS;
  const cpu = { issuer: pct('issuer', pid), broker: pct('broker', broker.pid!), gen: pct('gen', process.pid) };
  const hwm = procKb(pid, 'VmHWM');
  console.log(
    `storm: ${done}/${STORM} renewed in ${stormS.toFixed(2)} s (${(done / stormS).toFixed(0)}/s), ${retries} resends, failures ${JSON.stringify(failures)}`,
  );
  console.log(
    `issuer RSS: ${(rssBefore / 1024).toFixed(0)} MB before the storm, peak sampled ${(rssPeak / 1024).toFixed(0)} MB, VmHWM ${(hwm / 1024).toFixed(0)} MB`,
  );
  console.log(
    `CPU during the storm (100% = one core, 2 cores here): issuer ${cpu.issuer.toFixed(0)}%, mosquitto ${cpu.broker.toFixed(0)}%, load generator (all ${STORM} agents in one process) ${cpu.gen.toFixed(0)}%`,
  );

  // 3. the limit, in this process with the issuer stopped.
  for (const t of transports) await t.close();
  issuer!.kill('SIGTERM');
  await new Promise((r) => issuer!.once('exit', r));
  const inproc = inProcessRate();
  console.log(
    `in-process issueSvid: ${inproc.toFixed(0)} certs/s; MQTT renewals / in-process: ${(mq.perS / inproc).toFixed(3)}, HTTPS: ${(ht.perS / inproc).toFixed(3)}`,
  );

  console.log(
    JSON.stringify({
      bench: 'renew-mqtt',
      agents: AGENTS,
      seconds: SECONDS,
      mqtt_renewals_per_s: Math.round(mq.perS),
      mqtt_p50_ms: r2(mq.p50),
      mqtt_p99_ms: r2(mq.p99),
      https_renewals_per_s: Math.round(ht.perS),
      https_p50_ms: r2(ht.p50),
      https_p99_ms: r2(ht.p99),
      inprocess_certs_per_s: Math.round(inproc),
      storm_agents: STORM,
      storm_renewed: done,
      storm_seconds: r2(stormS),
      storm_resends: retries,
      storm_failures: failures,
      issuer_rss_before_storm_mb: Math.round(rssBefore / 1024),
      issuer_peak_rss_storm_mb: Math.round(rssPeak / 1024),
      issuer_vmhwm_mb: Math.round(hwm / 1024),
      storm_cpu_pct: {
        issuer: Math.round(cpu.issuer),
        mosquitto: Math.round(cpu.broker),
        load_generator: Math.round(cpu.gen),
      },
    }),
  );
}

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
