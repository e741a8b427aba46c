/**
 * What the agent costs a small gateway (issue #19), next to bare Node measured in the same run:
 *
 *   anchors        `node -e ''` start (wall and CPU), and the RSS of an idle
 *                  `node -e 'setInterval(()=>{},1e9)'` after it settled (anonymous and
 *                  file-backed pages apart: the node binary's own code is most of the latter)
 *   --version      `sigil --version`                                      target ≤ 1.5× bare start
 *   status         `sigil agent status --config …` of a token-joined agent  target ≤ 2×
 *   run --once     `sigil agent run --once` with nothing due                target ≤ 3×
 *   daemon idle    `sigil agent run` RSS after --settle seconds            target ≤ 1.3× idle bare RSS
 *   daemon peak    the daemon's peak RSS during a renewal (VmHWM after clear_refs), reported
 *
 * One real issuer from dist/ on 127.0.0.1 (`server start`), a token join during setup, the
 * agent talking HTTPS to it. Each command runs --runs times interleaved with the bare-node
 * anchor (A, B, A, B…) and the MEDIAN is reported: the machine is shared, so single runs and
 * means mislead. Each process's own CPU time (user+sys) is printed next to the wall time and
 * the target is judged on it: on a shared machine the wall clock says more about the other jobs
 * than about Sigil (a bare `node -e ''` took 60–400 ms wall in one run, ~45 ms CPU throughout).
 *
 *   npm run bench -- agent-footprint [--runs 9] [--settle 30] [--bin bin/sigil.js]
 *       [--node-flags="--no-opt …"] [--cli-node-flags="…"] [--skip-daemon] [--skip-starts] [--tpm-mqtt] [--smaps P]
 *
 * --smaps P: the bare node's and the daemon's /proc/<pid>/smaps at the idle sample, written to
 * P.bare and P.daemon — where the difference lives (mapping by mapping: the node binary's pages,
 * better-sqlite3's .node, anonymous memory).
 * --bin: the `sigil` entry to measure (dist by default; dist-bundle/sigil.mjs for the bundle).
 * --node-flags: V8/Node flags for the daemon (what a packaged unit would set); --cli-node-flags:
 * the same for the one-shot commands (what /usr/bin/sigil would set).
 * --tpm-mqtt: also the daemon of a TPM agent on MQTT (issue #19: idle ≤ 1.5× bare node) — tpm join
 * on swtpm (key_storage: tpm, event log sent), mqtts through mosquitto configured from
 * scripts/mosquitto/*.example with the bootstrap user, its own issuer (`server start
 * --mqtt-url`); its renewal goes over MQTT with the transport certificate.
 * Last stdout line: one JSON object with every figure and ratio.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { applyResources, RESOURCES, type RunningIssuer } from '../test/helpers/cli.js';
import { startExampleBroker } from '../test/helpers/mosquitto.js';
import { createLocalCa, simulateBoot, startSwtpm } from '../test/helpers/swtpm.js';
import { IssuerProcess } from './lib/issuer-process.js';

const ROOT = resolve(import.meta.dirname, '..');
const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '9' },
    settle: { type: 'string', default: '30' },
    bin: { type: 'string', default: join(ROOT, 'bin', 'sigil.js') },
    'node-flags': { type: 'string', default: '' },
    'cli-node-flags': { type: 'string', default: '' },
    'skip-daemon': { type: 'boolean', default: false },
    'skip-starts': { type: 'boolean', default: false },
    'tpm-mqtt': { type: 'boolean', default: false },
    smaps: { type: 'string' },
  },
});
const RUNS = Number(opt.runs);
const SETTLE_S = Number(opt.settle);
const BIN = resolve(opt.bin);
const DAEMON_FLAGS = opt['node-flags'].split(/\s+/).filter(Boolean);
const CLI_FLAGS = opt['cli-node-flags'].split(/\s+/).filter(Boolean);
const JSON_LOG_ENV = { ...process.env, SIGIL_LOG_FORMAT: 'json' };

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * Each measured process reports its own CPU time (µs, from process.cpuUsage(), which counts
 * from process start) and peak RSS when it exits, through a preloaded CommonJS file: the /proc
 * counters of a reaped child tick in 10 ms, too coarse for a 50 ms bare start. The preload runs
 * in the anchor too, so it cancels out of the ratios.
 */
const REPORT = `process.on('exit', () => require('node:fs').writeFileSync(process.env.FOOTPRINT_REPORT,
  JSON.stringify({ cpuUs: process.cpuUsage().user + process.cpuUsage().system, maxRssKb: process.resourceUsage().maxRSS })));`;

interface Timing {
  wallMs: number;
  cpuMs: number;
  maxRssMb: number;
}

function timeOnce(args: string[], scratch: string, okCodes = [0]): Timing {
  const report = join(scratch, 'report.json');
  rmSync(report, { force: true });
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, ['-r', join(scratch, 'report.cjs'), ...args], {
    env: { ...JSON_LOG_ENV, FOOTPRINT_REPORT: report },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (!okCodes.includes(r.status ?? -1))
    throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr.toString().slice(0, 2000)}`);
  const rep = JSON.parse(readFileSync(report, 'utf8')) as { cpuUs: number; maxRssKb: number };
  return { wallMs, cpuMs: rep.cpuUs / 1000, maxRssMb: rep.maxRssKb / 1024 };
}

/** Median wall and CPU of `args` and of the bare-node anchor, runs interleaved. */
function timeVsAnchor(args: string[], scratch: string): { cmd: Timing; anchor: Timing } {
  const cmd: Timing[] = [];
  const anchor: Timing[] = [];
  timeOnce(args, scratch); // warm the page cache; not counted
  for (let i = 0; i < RUNS; i++) {
    anchor.push(timeOnce(['-e', ''], scratch));
    cmd.push(timeOnce(args, scratch));
  }
  const med = (ts: Timing[]): Timing => ({
    wallMs: median(ts.map((t) => t.wallMs)),
    cpuMs: median(ts.map((t) => t.cpuMs)),
    maxRssMb: median(ts.map((t) => t.maxRssMb)),
  });
  return { cmd: med(cmd), anchor: med(anchor) };
}

function procStatusKb(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} for ${pid}`);
  return Number(m[1]);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function stopChild(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await exited;
}

/**
 * RSS in MB, split: anonymous memory (V8 heap, malloc: the process's own) and file-backed pages
 * (mostly the node binary's code, shared with every other node process and reclaimable).
 */
interface Rss {
  total: number;
  anon: number;
  file: number;
}

function rssOf(pid: number): Rss {
  const mb = (f: 'VmRSS' | 'RssAnon' | 'RssFile'): number => procStatusKb(pid, f) / 1024;
  return { total: mb('VmRSS'), anon: mb('RssAnon'), file: mb('RssFile') };
}

/** Idle RSS of a bare node process after the settle time: the RSS anchor. */
async function bareIdleRss(): Promise<Rss> {
  const p = spawn(process.execPath, ['-e', 'setInterval(()=>{},1e9)'], { stdio: 'ignore' });
  await sleep(SETTLE_S * 1000);
  const rss = rssOf(p.pid!);
  if (opt.smaps) writeFileSync(`${opt.smaps}.bare`, readFileSync(`/proc/${p.pid}/smaps`));
  await stopChild(p);
  return rss;
}

/** The issuer side always runs from dist/ (bin/sigil.js); `bin` is for the agent's commands. */
const DIST_BIN = join(ROOT, 'bin', 'sigil.js');

function sigilJson<T>(args: string[], bin = DIST_BIN): T {
  const r = spawnSync(process.execPath, [bin, ...args, '--format', 'json'], { env: JSON_LOG_ENV, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sigil ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** An issuer from dist/ with one bot, and a way to mint a join token for it. */
async function startIssuer(dir: string): Promise<{ issuer: IssuerProcess; pin: string; token(): string }> {
  const dataDir = join(dir, 'issuer');
  const init = sigilJson<{ ca_pin: string }>([
    'server',
    'init',
    '--data-dir',
    dataDir,
    '--trust-domain',
    'example.org',
  ]);
  const res = join(dir, 'resources.yaml');
  writeFileSync(
    res,
    'kind: role\nname: edge\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: gw\nspec: { roles: [edge] }\n',
  );
  spawnSync(process.execPath, [DIST_BIN, 'ctl', '--data-dir', dataDir, 'apply', '-f', res], { stdio: 'ignore' });
  const issuer = await IssuerProcess.start({ root: ROOT, dataDir });
  const token = (): string =>
    sigilJson<{ token: string }>(['ctl', '--data-dir', dataDir, 'token', 'create', '--bot', 'gw', '--ttl', '15m'])
      .token;
  return { issuer, pin: init.ca_pin, token };
}

function agentConfig(
  dir: string,
  name: string,
  o: { url: string; pin: string; token: string; extra?: string },
): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `issuer: ${o.url}\nca_pin: ${o.pin}\ndata_dir: ${join(dir, name, 'data')}\n` +
      `join: { method: token, token: ${o.token} }\noutputs:\n  - { type: identity, path: ${join(dir, name, 'identity')} }\n` +
      (o.extra ?? ''),
  );
  return file;
}

/**
 * The daemon: idle RSS at SETTLE_S, then the peak RSS of its next renewal. The identity is
 * joined just before with a lifetime whose renewal (at 0.5 × lifetime, ±10% jitter) falls after
 * the settle time, so the idle sample sees no renewal and the peak sees exactly one; half the
 * lifetime stays as margin (a token agent whose identity expires cannot rejoin).
 */
/** The process's own CPU (user + system) so far in ms, from /proc/<pid>/stat (10 ms ticks). */
function procCpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime (fields 14, 15) in USER_HZ = 100
}

interface DaemonFigures {
  idle: Rss;
  peakMb: number;
  renewalMs: number;
  /** CPU from the idle sample to just after the renewal: the renewal's cost (idle ticks are ~0). */
  renewalCpuMs: number;
}

async function daemon(cfgFile: string, ttlS: number): Promise<DaemonFigures> {
  const p = spawn(process.execPath, [...DAEMON_FLAGS, BIN, 'agent', 'run', '--config', cfgFile], {
    env: JSON_LOG_ENV,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const renewed = new Promise<number>((res, rej) => {
    p.stderr!.setEncoding('utf8').on('data', (d: string) => {
      log += d;
      if (/"msg":"renewed"/.test(log)) res(Date.now());
    });
    p.once('exit', (c) => rej(new Error(`agent exited ${c}: ${log.slice(-2000)}`)));
  });
  renewed.catch(() => undefined);
  try {
    await sleep(SETTLE_S * 1000);
    if (/"msg":"renewed"/.test(log)) throw new Error('the renewal came before the settle time; lower --settle');
    const idle = rssOf(p.pid!);
    if (opt.smaps) writeFileSync(`${opt.smaps}.daemon`, readFileSync(`/proc/${p.pid}/smaps`));
    // proc(5): writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
    writeFileSync(`/proc/${p.pid}/clear_refs`, '5');
    const cpu0 = procCpuMs(p.pid!);
    const t0 = Date.now();
    const timeout = new Promise<never>((_, rej) =>
      setTimeout(
        () => rej(new Error(`no renewal within the lifetime (${ttlS} s): ${log.slice(-2000)}`)),
        ttlS * 1000,
      ).unref(),
    );
    const at = await Promise.race([renewed, timeout]);
    await sleep(200); // let the renewal's output writes and log line finish
    return {
      idle,
      peakMb: procStatusKb(p.pid!, 'VmHWM') / 1024,
      renewalMs: at - t0,
      renewalCpuMs: procCpuMs(p.pid!) - cpu0,
    };
  } finally {
    await stopChild(p);
  }
}

/** Lifetime whose renewal (≥ 0.45 × ttl after the join) falls a few seconds past the settle time. */
const daemonTtlS = (): number => Math.max(30, Math.ceil((SETTLE_S + 6) / 0.45));

/**
 * The TPM agent on MQTT: swtpm (EK certified by a local CA), a tpm join rule, mosquitto with the
 * example configuration and an issuer answering on it, one join with `run --once`, then the
 * daemon as for the token agent.
 */
async function tpmMqttDaemon(dir: string): Promise<DaemonFigures> {
  const base = join(dir, 'tpm-mqtt');
  const dataDir = join(base, 'issuer');
  const { ca_pin: pin } = sigilJson<{ ca_pin: string }>([
    'server',
    'init',
    '--data-dir',
    dataDir,
    '--trust-domain',
    'example.org',
  ]);
  const ca = await createLocalCa();
  const tpm = await startSwtpm({ localCa: ca });
  try {
    const eventLog = join(base, 'boot.log');
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    await applyResources(
      { dataDir } as RunningIssuer,
      base,
      `${RESOURCES}---\nkind: join_rule\nname: racks\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles[0]}, ${ca.caFiles[1]}]\n    firmware_profiles: [lab-gateway-v1]\n`,
    );
    const pwFile = join(base, 'bootstrap.pw');
    const { broker, issuer } = await startExampleBroker(base, dataDir, pwFile);
    try {
      const ttlS = daemonTtlS();
      const cfg = join(base, 'agent.yaml');
      writeFileSync(
        cfg,
        `ca_pin: ${pin}\ndata_dir: ${join(base, 'agent')}\n` +
          `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: ${eventLog} } }\nkey_storage: tpm\n` +
          `transports:\n  - { type: mqtt, url: "${broker.url}", timeout: 10s, bootstrap: { url: "${broker.bootstrapUrl}", username: bootstrap, password_file: ${pwFile} } }\n` +
          `outputs:\n  - { type: identity, path: ${join(base, 'identity')} }\nttl: ${ttlS}s\nrenew_fraction: 0.5\n`,
      );
      sigilJson(['agent', 'run', '--once', '--config', cfg], BIN);
      return await daemon(cfg, ttlS);
    } finally {
      await issuer.stop();
      await broker.stop();
    }
  } finally {
    await tpm.destroy();
    ca.destroy();
  }
}

const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;
const fmt = (n: number): string => n.toFixed(1);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-footprint-'));
  const { issuer, pin, token } = await startIssuer(dir);
  writeFileSync(join(dir, 'report.cjs'), REPORT);
  const out: Record<string, unknown> = { bench: 'agent-footprint', bin: BIN, runs: RUNS, settle_s: SETTLE_S };
  try {
    const once = agentConfig(dir, 'once', { url: issuer.url, pin, token: token(), extra: 'ttl: 1h\n' });
    sigilJson(['agent', 'run', '--once', '--config', once], BIN);

    console.log(`agent-footprint: ${BIN}, median of ${RUNS} interleaved runs (shared machine: medians only)`);
    const rows: Array<[string, string[], number, number[]?]> = [
      ['--version', [...CLI_FLAGS, BIN, '--version'], 1.5],
      ['agent status', [...CLI_FLAGS, BIN, 'agent', 'status', '--config', once], 2],
      ['agent run --once (nothing due)', [...CLI_FLAGS, BIN, 'agent', 'run', '--once', '--config', once], 3],
    ];
    const starts: Record<string, unknown> = {};
    for (const [name, args, target] of opt['skip-starts'] ? [] : rows) {
      const { cmd, anchor } = timeVsAnchor(args, dir);
      const r = ratio(cmd.wallMs, anchor.wallMs);
      const rc = ratio(cmd.cpuMs, anchor.cpuMs);
      console.log(
        `  ${name.padEnd(31)} wall ${fmt(cmd.wallMs).padStart(6)} ms, cpu ${fmt(cmd.cpuMs).padStart(6)} ms, peak ${fmt(cmd.maxRssMb)} MB   bare node: wall ${fmt(anchor.wallMs)} ms, cpu ${fmt(anchor.cpuMs)} ms, ${fmt(anchor.maxRssMb)} MB   ${r}× wall, ${rc}× cpu   target ≤ ${target}×: ${rc <= target ? 'met' : 'NOT met'} (cpu)`,
      );
      starts[name] = {
        wall_ms: cmd.wallMs,
        cpu_ms: cmd.cpuMs,
        peak_rss_mb: cmd.maxRssMb,
        bare_wall_ms: anchor.wallMs,
        bare_cpu_ms: anchor.cpuMs,
        bare_peak_rss_mb: anchor.maxRssMb,
        ratio: r,
        cpu_ratio: rc,
        target,
      };
    }
    out.starts = starts;

    const bareRss = opt['skip-daemon'] && !opt['tpm-mqtt'] ? undefined : await bareIdleRss();
    if (!opt['skip-daemon'] && bareRss) {
      const bare = bareRss.total;
      const ttlS = daemonTtlS();
      const cfg = agentConfig(dir, 'daemon', {
        url: issuer.url,
        pin,
        token: token(),
        extra: `ttl: ${ttlS}s\nrenew_fraction: 0.5\n`,
      });
      sigilJson(['agent', 'run', '--once', '--config', cfg], BIN);
      const d = await daemon(cfg, ttlS);
      const r = ratio(d.idle.total, bare);
      console.log(
        `  daemon idle RSS after ${SETTLE_S}s     ${fmt(d.idle.total)} MB (anon ${fmt(d.idle.anon)}, file ${fmt(d.idle.file)})   bare node idle ${fmt(bare)} MB (anon ${fmt(bareRss.anon)}, file ${fmt(bareRss.file)})   ${r}×   target ≤ 1.3× ${r <= 1.3 ? 'met' : 'NOT met'}${DAEMON_FLAGS.length ? `   (node ${DAEMON_FLAGS.join(' ')})` : ''}`,
      );
      console.log(
        `  daemon peak RSS during a renewal  ${fmt(d.peakMb)} MB   ${ratio(d.peakMb, bare)}× bare idle   renewal CPU ${fmt(d.renewalCpuMs)} ms`,
      );
      out.daemon = {
        idle_rss_mb: d.idle.total,
        idle_anon_mb: d.idle.anon,
        idle_file_mb: d.idle.file,
        peak_renewal_rss_mb: d.peakMb,
        renewal_cpu_ms: d.renewalCpuMs,
        bare_idle_rss_mb: bare,
        bare_idle_anon_mb: bareRss.anon,
        bare_idle_file_mb: bareRss.file,
        ratio: r,
        target: 1.3,
        node_flags: DAEMON_FLAGS,
      };
    }
    if (opt['tpm-mqtt'] && bareRss) {
      const bare = bareRss.total;
      const d = await tpmMqttDaemon(dir);
      const r = ratio(d.idle.total, bare);
      console.log(
        `  TPM agent on MQTT: idle RSS after ${SETTLE_S}s ${fmt(d.idle.total)} MB (anon ${fmt(d.idle.anon)}, file ${fmt(d.idle.file)})   ${r}× bare idle   target ≤ 1.5× ${r <= 1.5 ? 'met' : 'NOT met'}${DAEMON_FLAGS.length ? `   (node ${DAEMON_FLAGS.join(' ')})` : ''}`,
      );
      console.log(
        `  TPM agent on MQTT: peak RSS during a renewal ${fmt(d.peakMb)} MB   ${ratio(d.peakMb, bare)}× bare idle   renewal CPU ${fmt(d.renewalCpuMs)} ms`,
      );
      out.tpm_mqtt_daemon = {
        idle_rss_mb: d.idle.total,
        idle_anon_mb: d.idle.anon,
        idle_file_mb: d.idle.file,
        peak_renewal_rss_mb: d.peakMb,
        renewal_after_ms: d.renewalMs,
        renewal_cpu_ms: d.renewalCpuMs,
        bare_idle_rss_mb: bare,
        ratio: r,
        target: 1.5,
        node_flags: DAEMON_FLAGS,
      };
    }
  } finally {
    await issuer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify(out));
}

await main();
