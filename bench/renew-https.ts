/**
 * Renewal throughput over HTTPS: N agents renew in a closed loop against an issuer running as a
 * separate process (`sigil server start`), next to the limit measured in the same run — the
 * in-process issuance rate (CertificateIssuer.issueSvid) and the raw ECDSA P-256 signature.
 *
 *   npm run bench -- renew-https [--agents 50] [--seconds 10] [--pregen-keys] [--profile]
 *   (npm run bench builds first; the issuer runs from dist/ through bin/sigil.js)
 *
 * The machine has 2 cores: the issuer process gets one, this process (the load generator: all N
 * agents on one event loop) the other. Every agent has its own HttpsIssuerClient (own keep-alive
 * TLS connection, CA pin), joins with a one-time token, then loops: buildRenewRequest from its
 * current identity (fresh P-256 key + CSR, JWS signed by the current key) → POST /v1/renew →
 * verifyResponse → adopt the new key and chain for the next renewal. A failed request that is
 * retryable is resent with the same request id (as the real agent's outbox does); others are
 * counted and the agent builds a new request, or stops if its instance is locked.
 *
 * Latency is the POST round trip (request written → JSON body received), not the client's own
 * build/verify work; with a CPU-bound load generator it includes waiting for this event loop.
 * renewals/s counts successful renewals over the timed window (start → the last in-flight renewal
 * completing after the deadline). CPU per renewal (issuer from /proc/<pid>/stat, this process from
 * process.cpuUsage) is printed too: it stays meaningful when other processes on the machine take
 * CPU (their share is printed as "other processes"), which depresses renewals/s.
 *
 *   --pregen-keys  make the agents' next keys before the timed loop: keygen + PKCS#8 export there,
 *                  and the signer object is reused instead of re-parsing the outbox entry's PKCS#8
 *                  PEM (the slowest step on the client). buildRenewRequest still runs unchanged:
 *                  SoftwareSigner.generate is swapped for a hand-out of the agent's next key. Each
 *                  agent cycles through 3 keys, so every renewal rotates to a key ≠ the current one.
 *   --profile      run the issuer under `node --cpu-prof` (or BENCH_PROFILE=1) and this process
 *                  under the inspector's profiler for the timed loop; the issuer's .cpuprofile is
 *                  kept in a printed directory (open it in Chrome DevTools) and the top hotspots
 *                  of both (source-mapped to src/*.ts) are printed. Profiling slows things down.
 *
 * Last stdout line: {"bench":"renew-https","agents":…,"seconds":…,"renewals":…,"renewals_per_s":…,
 *   "p50_ms":…,"p90_ms":…,"p99_ms":…,"errors":{code:count},"inprocess_certs_per_s":…,"raw_sign_per_s":…,
 *   "issuer_cpu_pct":…,"client_cpu_pct":…,"other_cpu_pct":…,"issuer_cpu_ms_per_renewal":…,
 *   "client_cpu_ms_per_renewal":…,"pregen_keys":…,"profiled":…}
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import inspector from 'node:inspector';
import { findSourceMap, SourceMap } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildJoinRequest, buildRenewRequest, type BuiltRequest } from '../src/agent/requests.js';
import { SigilError } from '../src/errors.js';
import { TokenJoinAgent } from '../src/join/token/agent.js';
import { loadSigner, parseKeyRef, SoftwareSigner, type Signer } from '../src/keystore/index.js';
import { CertificateIssuer } from '../src/pki/issue.js';
import { randomSerial } from '../src/pki/serial.js';
import { ResponseVerifier } from '../src/protocol/verify-response.js';
import { runAdminOp } from '../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores } from '../src/server/data-dir.js';
import { HttpsIssuerClient } from '../src/transport/https/client.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TRUST_DOMAIN = 'bench.example';
const BOT = 'bench-gw';
const JOIN_CONCURRENCY = 50;
/** In-process phase: issueSvid and crypto.sign, each this long in total (alternating rounds). */
const INPROCESS_SECONDS = 2;

// ---------------------------------------------------------------------------------------------
// Arguments

function usage(msg: string): never {
  process.stderr.write(
    `error: ${msg}\nusage: npm run bench -- renew-https [--agents N] [--seconds S] [--pregen-keys] [--profile]\n`,
  );
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      agents: { type: 'string', default: '50' },
      seconds: { type: 'string', default: '10' },
      'pregen-keys': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
    },
    strict: true,
  }).values;
} catch (e) {
  usage((e as Error).message);
}
const AGENTS = Number(parsed.agents);
const SECONDS = Number(parsed.seconds);
const PREGEN = parsed['pregen-keys'] === true;
const PROFILE = parsed.profile === true || process.env.BENCH_PROFILE === '1';
if (!Number.isInteger(AGENTS) || AGENTS < 1 || AGENTS > 10_000)
  usage('--agents must be an integer between 1 and 10000');
if (!Number.isFinite(SECONDS) || SECONDS <= 0 || SECONDS > 3600)
  usage('--seconds must be a number of seconds between 0 and 3600');

const SIGIL_BIN = join(ROOT, 'bin', 'sigil.js');
if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) {
  process.stderr.write(
    'error[not_built]: the issuer runs from dist/, which is missing; run `npm run build` first (`npm run bench -- renew-https` builds)\n',
  );
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Issuer process and cleanup

const work = mkdtempSync(join(tmpdir(), 'sigil-bench-renew-'));
const dataDir = join(work, 'issuer');
const profDir = PROFILE ? mkdtempSync(join(tmpdir(), 'sigil-bench-renew-prof-')) : undefined;
let server: ChildProcess | undefined;
let serverStderr = '';
const clients: HttpsIssuerClient[] = [];

function processAlive(p: ChildProcess | undefined): p is ChildProcess {
  return p !== undefined && p.exitCode === null && p.signalCode === null;
}

/** SIGTERM (the issuer shuts down cleanly and, under --cpu-prof, writes its profile), SIGKILL after 10 s. */
async function stopServer(): Promise<void> {
  const p = server;
  if (!processAlive(p)) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (processAlive(p)) p.kill('SIGKILL');
  }, 10_000);
  await exited;
  clearTimeout(timer);
}

let cleanedUp = false;
let issuerDied = false;
function cleanupSync(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const c of clients) c.close();
  if (processAlive(server)) server.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}
process.once('SIGINT', () => {
  process.stderr.write('\ninterrupted: stopping the issuer and removing the temp dir\n');
  cleanupSync();
  process.exit(130);
});
process.once('SIGTERM', () => {
  cleanupSync();
  process.exit(143);
});

async function startServer(): Promise<{ url: string; pid: number }> {
  const nodeArgs = PROFILE ? ['--cpu-prof', '--cpu-prof-dir', profDir!] : [];
  const p = spawn(
    process.execPath,
    [
      ...nodeArgs,
      SIGIL_BIN,
      'server',
      'start',
      '--data-dir',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      '--log-level',
      'warn',
    ],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
    },
  );
  server = p;
  p.stderr!.setEncoding('utf8').on('data', (d: string) => {
    serverStderr = (serverStderr + d).slice(-8000);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`the issuer did not print its "listening on" line within 30 s; stderr:\n${serverStderr}`)),
      30_000,
    );
    p.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /listening on (https:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1]!, pid: p.pid! });
      }
    });
    p.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`the issuer exited (${sig ?? `code ${code}`}) before listening; stderr:\n${serverStderr}`));
    });
    p.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** utime + stime of a process in seconds, from /proc (Linux). */
function procCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after "(comm)": state=0 … utime=11, stime=12 (proc(5) fields 14 and 15).
    return (Number(f[11]) + Number(f[12])) / 100; // CLK_TCK is 100 on Linux
  } catch {
    return undefined;
  }
}

/** Busy CPU time of the whole machine (all cores) in seconds, from /proc/stat. */
function machineBusySeconds(): number | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal …; guest time is already inside user.
    const busy = f[0]! + f[1]! + f[2]! + (f[5] ?? 0) + (f[6] ?? 0);
    return busy / 100;
  } catch {
    return undefined;
  }
}

function clientCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

// ---------------------------------------------------------------------------------------------
// Agents

interface BenchAgent {
  index: number;
  client: HttpsIssuerClient;
  signer: Signer;
  chainPem: string[];
  generation: number;
  /** A request whose answer was lost (retryable error): resent with the same request id. */
  pending?: BuiltRequest;
  /** --pregen-keys: keys this agent rotates through. */
  keys?: SoftwareSigner[];
  nextKey: number;
  stopped?: string;
}

// --pregen-keys: createSigner() calls SoftwareSigner.generate() synchronously at the start of
// buildRenewRequest (before its first await), so handing out the agent's next pre-made key
// through this slot is race-free on one event loop. The request is otherwise built unchanged.
let preparedKey: SoftwareSigner | undefined;
if (PREGEN) {
  const generate = SoftwareSigner.generate.bind(SoftwareSigner);
  SoftwareSigner.generate = (): SoftwareSigner => {
    const k = preparedKey ?? generate();
    preparedKey = undefined;
    return k;
  };
}

async function renewRequest(a: BenchAgent): Promise<BuiltRequest> {
  if (a.keys) {
    preparedKey = a.keys[a.nextKey++ % a.keys.length];
  }
  return buildRenewRequest({ current: a.signer, chainPem: a.chainPem, now: Date.now() });
}

/** The new key of a built request, as the agent loads it from the outbox entry's key reference. */
function newSigner(a: BenchAgent, built: BuiltRequest): Signer {
  const ref = parseKeyRef(built.entry.pendingKeyRef!);
  if (a.keys) {
    // --pregen-keys: the signer object is already at hand; skip re-parsing its PKCS#8 PEM.
    const k = a.keys.find((x) => ref.storage === 'software' && x.toPkcs8Pem() === ref.pkcs8Pem);
    if (k) return k;
  }
  return loadSigner(ref);
}

function errCode(e: unknown): string {
  if (e instanceof SigilError) return e.code;
  return `unexpected:${(e as Error)?.name ?? typeof e}`;
}

/** Codes after which this agent's identity cannot be renewed any more. */
const TERMINAL = new Set([
  'instance_locked',
  'generation_mismatch',
  'unknown_instance',
  'cert_expired',
  'bot_locked',
  'chain_invalid',
]);

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 1) : 'n/a');
const round = (x: number, d = 0): number | null => (Number.isFinite(x) ? Number(x.toFixed(d)) : null);

// ---------------------------------------------------------------------------------------------
// In-process limits (same method as bench/issue.ts)

function measure(seconds: number, fn: () => void): number {
  for (let i = 0; i < 200; i++) fn();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let n = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
  }
  return n / ((performance.now() - start) / 1000);
}

function measureInProcess(): { certsPerS: number; rawSignPerS: number } {
  const ca = loadCaMaterial(dataDir);
  const engine = new CertificateIssuer({ caCertDer: ca.intermediateDer, caKey: ca.intermediateKey });
  const spkis = Array.from({ length: 200 }, () =>
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }),
  );
  const tbsSized = randomBytes(400);
  const now = Date.now();
  let k = 0;
  const issue = (): void => {
    engine.issueSvid({
      serial: randomSerial(),
      spkiDer: spkis[k++ % spkis.length]!,
      spiffeId: `spiffe://${TRUST_DOMAIN}/bot/${BOT}/inproc-${k}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
    });
  };
  const rawSign = (): void => {
    sign('sha256', tbsSized, { key: ca.intermediateKey, dsaEncoding: 'der' });
  };
  const ROUNDS = 4;
  let certsPerS = 0;
  let rawSignPerS = 0;
  for (let r = 0; r < ROUNDS; r++) {
    rawSignPerS += measure(INPROCESS_SECONDS / ROUNDS, rawSign) / ROUNDS;
    certsPerS += measure(INPROCESS_SECONDS / ROUNDS, issue) / ROUNDS;
  }
  return { certsPerS, rawSignPerS };
}

// ---------------------------------------------------------------------------------------------
// CPU profile summary (--profile)

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** `file:line` in src/*.ts where a source map says so (dist/*.js.map for the issuer, tsx's inline maps here). */
function makeLocator(): (cf: ProfileNode['callFrame']) => string {
  const maps = new Map<string, SourceMap | undefined>();
  const mapFor = (path: string, url: string): SourceMap | undefined => {
    if (!maps.has(path)) {
      let sm: SourceMap | undefined;
      try {
        sm = existsSync(`${path}.map`)
          ? new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')))
          : findSourceMap(url);
      } catch {
        sm = undefined;
      }
      maps.set(path, sm);
    }
    return maps.get(path);
  };
  return (cf) => {
    if (!cf.url) return '(native)';
    let path = cf.url.startsWith('file://') ? fileURLToPath(cf.url) : cf.url;
    let line = cf.lineNumber + 1;
    if (path.startsWith(ROOT) && !path.includes('node_modules')) {
      const e = mapFor(path, cf.url)?.findEntry(cf.lineNumber, cf.columnNumber) as
        { originalSource?: string; originalLine?: number } | undefined;
      if (e?.originalSource) {
        path = e.originalSource.startsWith('file://')
          ? fileURLToPath(e.originalSource)
          : join(path, '..', e.originalSource);
        line = (e.originalLine ?? 0) + 1;
      }
    }
    const rel = path.startsWith(ROOT) ? relative(ROOT, path) : path;
    return `${rel.replace(/^.*node_modules\//, 'node_modules/')}:${line}`;
  };
}

/** Top self time and inclusive time of Sigil's own functions, as percentages of busy (non-idle) time. */
function summariseProfile(prof: CpuProfile, title: string, top = 20): string[] {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of prof.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const locate = makeLocator();
  const keys = new Map<number, string>();
  const keyOf = (id: number): string => {
    let k = keys.get(id);
    if (k === undefined) {
      const cf = byId.get(id)!.callFrame;
      k = `${cf.functionName || '(anonymous)'} ${locate(cf)}`;
      keys.set(id, k);
    }
    return k;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let all = 0;
  let idle = 0;
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    all += dt;
    if (byId.get(id)!.callFrame.functionName === '(idle)') {
      idle += dt;
      return;
    }
    self.set(keyOf(id), (self.get(keyOf(id)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = keyOf(cur);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  });
  const busy = all - idle;
  const pct = (x: number): string => `${((100 * x) / busy).toFixed(1).padStart(5)}%`;
  const lines = [
    title,
    `  sampled ${(all / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s; percentages are of busy time`,
    '  top self time:',
  ];
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`    ${pct(v)}  ${k}`);
  lines.push('  inclusive time, Sigil code (src/):');
  for (const [k, v] of [...total]
    .filter(([k]) => / src\//.test(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top))
    lines.push(`    ${pct(v)}  ${k}`);
  return lines;
}

function issuerProfileSummary(dir: string): string[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return [`no .cpuprofile was written to ${dir}`];
  const file = join(dir, files[0]!);
  return summariseProfile(
    JSON.parse(readFileSync(file, 'utf8')) as CpuProfile,
    `issuer CPU profile (whole process life): ${file}`,
  );
}

/** The load generator's own profile over the timed loop only, through the inspector. */
async function startClientProfile(): Promise<() => Promise<CpuProfile>> {
  const session = new inspector.Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) =>
      session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))),
    );
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 1000 });
  await post('Profiler.start');
  return async () => {
    const { profile } = (await post('Profiler.stop')) as { profile: CpuProfile };
    session.disconnect();
    return profile;
  };
}

// ---------------------------------------------------------------------------------------------
// The run

async function main(): Promise<void> {
  // 1. data dir, policy and one token per agent (straight into the store, before the issuer runs).
  const init = initDataDir(dataDir, TRUST_DOMAIN);
  const stores = openIssuerStores(dataDir);
  const tokens: string[] = [];
  try {
    const yaml = `kind: role\nname: bench-edge\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: ${BOT}\nspec: { roles: [bench-edge] }\n`;
    await runAdminOp(stores, 'apply', { yaml, source: 'bench' });
    for (let i = 0; i < AGENTS; i++)
      tokens.push(((await runAdminOp(stores, 'token.create', { bot: BOT, ttl: '1h' })) as { token: string }).token);
  } finally {
    await stores.close();
  }

  // 2. the issuer, as its own process.
  const { url, pid } = await startServer();
  console.log(`issuer: ${url} (pid ${pid}${PROFILE ? `, --cpu-prof into ${profDir}` : ''}), data dir ${dataDir}`);

  // 3. join every agent through the real HTTPS client (pinned CA, token join, verified response).
  const first = new HttpsIssuerClient({ url, pin: init.pin });
  clients.push(first);
  const root = await first.ensureRoot();
  // The agents' verifier: keeps the issuer chain it verified, as an agent's IssuerLink does.
  const verifier = new ResponseVerifier();
  const agents: BenchAgent[] = [];
  const joinStart = performance.now();
  for (let base = 0; base < AGENTS; base += JOIN_CONCURRENCY) {
    const batch = Array.from({ length: Math.min(JOIN_CONCURRENCY, AGENTS - base) }, async (_, j) => {
      const i = base + j;
      const client = i === 0 ? first : new HttpsIssuerClient({ url, pin: init.pin, rootPem: root });
      if (i !== 0) clients.push(client);
      const method = new TokenJoinAgent(tokens[i]!);
      const built = await buildJoinRequest({
        method: method.name,
        evidence: (c) => method.evidence(c),
        now: Date.now(),
      });
      const body = await client.post('join', built.envelope);
      const res = verifier.response(body, 'join', built.entry.requestId, root);
      const a: BenchAgent = {
        index: i,
        client,
        signer: loadSigner(parseKeyRef(built.entry.pendingKeyRef!)),
        chainPem: res.result.chain,
        generation: res.result.generation,
        nextKey: 0,
      };
      agents[i] = a;
    });
    await Promise.all(batch);
  }
  const joinS = (performance.now() - joinStart) / 1000;
  console.log(
    `joined ${AGENTS} agents in ${joinS.toFixed(2)} s (${(AGENTS / joinS).toFixed(0)} joins/s, token join, ${JOIN_CONCURRENCY} at a time)`,
  );

  if (PREGEN) {
    const t = performance.now();
    const premade = (): SoftwareSigner => {
      const k = SoftwareSigner.generate();
      // createSigner() exports the key as PKCS#8 for the outbox entry; do that export here once.
      const pem = k.toPkcs8Pem();
      k.toPkcs8Pem = (): string => pem;
      return k;
    };
    for (const a of agents) a.keys = [premade(), premade(), premade()];
    console.log(
      `pre-generated ${3 * AGENTS} P-256 keys (+ PKCS#8 export) in ${((performance.now() - t) / 1000).toFixed(2)} s, outside the timed loop`,
    );
  }

  // 4. warm-up: one untimed renewal per agent (JIT on both sides, every agent on generation 2).
  const renewOnce = async (a: BenchAgent): Promise<void> => {
    const built = await renewRequest(a);
    const body = await a.client.post('renew', built.envelope);
    const res = verifier.response(body, 'renew', built.entry.requestId, root);
    a.signer = newSigner(a, built);
    a.chainPem = res.result.chain;
    a.generation = res.result.generation;
  };
  await Promise.all(agents.map(renewOnce));

  // 5. the timed closed loop.
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let buildMs = 0;
  let verifyMs = 0;
  let renewals = 0;
  let lastDone = 0;
  const stopClientProfile = PROFILE ? await startClientProfile() : undefined;
  const cpu0 = { client: clientCpuSeconds(), issuer: procCpuSeconds(pid), machine: machineBusySeconds() };
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  const loop = async (a: BenchAgent): Promise<void> => {
    while (performance.now() < deadline) {
      const tb = performance.now();
      const built = a.pending ?? (await renewRequest(a));
      const t0 = performance.now();
      buildMs += t0 - tb;
      try {
        const body = await a.client.post('renew', built.envelope);
        const t1 = performance.now();
        const res = verifier.response(body, 'renew', built.entry.requestId, root);
        a.signer = newSigner(a, built);
        a.chainPem = res.result.chain;
        a.generation = res.result.generation;
        a.pending = undefined;
        const t2 = performance.now();
        verifyMs += t2 - t1;
        latencies.push(t1 - t0);
        renewals++;
        lastDone = t2;
      } catch (e) {
        const code = errCode(e);
        errors[code] = (errors[code] ?? 0) + 1;
        if (e instanceof SigilError && e.retryable) {
          a.pending = built; // resend the same request id: an idempotent replay if it was processed
          await new Promise((r) => setTimeout(r, 50));
        } else {
          a.pending = undefined;
          if (TERMINAL.has(code)) {
            a.stopped = code;
            return;
          }
        }
      }
    }
  };
  await Promise.all(agents.map(loop));
  const end = Math.max(lastDone, deadline);
  const windowS = (end - start) / 1000;
  const cpu1 = { client: clientCpuSeconds(), issuer: procCpuSeconds(pid), machine: machineBusySeconds() };
  const clientProfile = stopClientProfile ? await stopClientProfile() : undefined;
  for (const c of clients) c.close();

  const sorted = Float64Array.from(latencies).sort();
  const p50 = percentile(sorted, 50);
  const p90 = percentile(sorted, 90);
  const p99 = percentile(sorted, 99);
  const max = sorted.length ? sorted[sorted.length - 1]! : NaN;
  const perS = renewals / windowS;
  const issuerCpuS = cpu0.issuer !== undefined && cpu1.issuer !== undefined ? cpu1.issuer - cpu0.issuer : NaN;
  const clientCpuS = cpu1.client - cpu0.client;
  const issuerCpuPct = (100 * issuerCpuS) / windowS;
  const clientCpuPct = (100 * clientCpuS) / windowS;
  // Everything else on the machine over the window (other jobs steal from both sides).
  const otherCpuPct =
    cpu0.machine !== undefined && cpu1.machine !== undefined
      ? (100 * (cpu1.machine - cpu0.machine - issuerCpuS - clientCpuS)) / windowS
      : NaN;
  const issuerMsPer = (1000 * issuerCpuS) / renewals;
  const clientMsPer = (1000 * clientCpuS) / renewals;
  const stopped = agents.filter((a) => a.stopped).length;

  console.log(`renew over HTTPS: ${AGENTS} agents, closed loop, ${SECONDS} s${PREGEN ? ', keys pre-generated' : ''}`);
  console.log(
    `  renewals:           ${String(renewals).padStart(7)}  in ${windowS.toFixed(2)} s = ${perS.toFixed(0)} renewals/s`,
  );
  console.log(`  latency (POST):     p50 ${ms(p50)} ms   p90 ${ms(p90)} ms   p99 ${ms(p99)} ms   max ${ms(max)} ms`);
  console.log(
    `  errors:             ${
      Object.keys(errors).length
        ? Object.entries(errors)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')
        : 'none'
    }${stopped ? `  (${stopped} agents stopped)` : ''}`,
  );
  console.log(
    `  CPU over the window: issuer ${issuerCpuPct.toFixed(0)}% of a core, load generator ${clientCpuPct.toFixed(0)}%, other processes ${Math.max(0, otherCpuPct).toFixed(0)}% (2 cores = 200%)`,
  );
  console.log(
    `  CPU per renewal:    issuer ${issuerMsPer.toFixed(2)} ms (→ ~${(1000 / issuerMsPer).toFixed(0)}/s on one saturated core), load generator ${clientMsPer.toFixed(2)} ms`,
  );
  console.log(
    `  client wall/renewal: build request ${(buildMs / Math.max(1, renewals)).toFixed(2)} ms, verify response + adopt ${(verifyMs / Math.max(1, renewals)).toFixed(2)} ms (interleaved with other agents)`,
  );
  const bottleneck =
    issuerCpuPct >= 85 && issuerCpuPct >= clientCpuPct
      ? 'the issuer (its core is saturated)'
      : clientCpuPct >= 85
        ? 'the load generator (its core is saturated; the issuer had spare CPU)'
        : otherCpuPct >= 20
          ? 'other processes on this machine took CPU from both sides'
          : 'neither core is saturated (latency-bound)';
  console.log(`  bottleneck:         ${bottleneck}`);
  if (otherCpuPct >= 20) {
    console.log(
      `  note: other processes used ${otherCpuPct.toFixed(0)}% CPU during the window, so renewals/s is depressed; CPU per renewal is the stable figure`,
    );
  }

  // 6. the issuer is done: stop it (this also writes its CPU profile), then measure in-process.
  const srv = server as ChildProcess;
  if (srv.exitCode !== null || srv.signalCode !== null) {
    process.stderr.write(
      `warning: the issuer exited during the run (${srv.signalCode ?? `code ${srv.exitCode}`}); its stderr (tail):\n${serverStderr.slice(-2000)}\n`,
    );
    issuerDied = true;
  }
  await stopServer();
  const profileLines = profDir ? issuerProfileSummary(profDir) : [];
  if (clientProfile)
    profileLines.push(...summariseProfile(clientProfile, 'load generator CPU profile (timed loop only):', 12));

  const { certsPerS, rawSignPerS } = measureInProcess();
  console.log(`in-process, this process (issuer stopped, ${INPROCESS_SECONDS} s each):`);
  console.log(`  issueSvid:          ${certsPerS.toFixed(0).padStart(7)} certs/s`);
  console.log(`  raw crypto.sign:    ${rawSignPerS.toFixed(0).padStart(7)} signs/s  (P-256, intermediate key)`);
  console.log(`  HTTPS renewals / in-process issuance: ${(perS / certsPerS).toFixed(3)}`);
  for (const l of profileLines) console.log(l);

  console.log(
    JSON.stringify({
      bench: 'renew-https',
      agents: AGENTS,
      seconds: SECONDS,
      renewals,
      renewals_per_s: round(perS),
      p50_ms: round(p50, 2),
      p90_ms: round(p90, 2),
      p99_ms: round(p99, 2),
      errors,
      inprocess_certs_per_s: round(certsPerS),
      raw_sign_per_s: round(rawSignPerS),
      issuer_cpu_pct: round(issuerCpuPct),
      client_cpu_pct: round(clientCpuPct),
      other_cpu_pct: round(Math.max(0, otherCpuPct)),
      issuer_cpu_ms_per_renewal: round(issuerMsPer, 3),
      client_cpu_ms_per_renewal: round(clientMsPer, 3),
      pregen_keys: PREGEN,
      profiled: PROFILE,
    }),
  );
}

let exitCode = 0;
try {
  await main();
  if (issuerDied) exitCode = 1;
} catch (e) {
  process.stderr.write(`error: ${e instanceof SigilError ? `[${e.code}] ` : ''}${(e as Error).message ?? String(e)}\n`);
  if (serverStderr && !(e as Error).message?.includes(serverStderr.slice(-200)))
    process.stderr.write(`issuer stderr (tail):\n${serverStderr.slice(-2000)}\n`);
  exitCode = 1;
} finally {
  await stopServer().catch(() => undefined);
  cleanupSync();
}
process.exitCode = exitCode;
