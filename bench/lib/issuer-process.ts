/**
 * A Sigil issuer as its own process for the benches: `node bin/sigil.js server start` from the
 * built dist/, on 127.0.0.1 with an OS-chosen port, optionally under `node --cpu-prof`. The
 * bench talks to it over the network only and reads its CPU from /proc/<pid>.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What bench/lib/issuer-probe.mjs reports for the time between two {@link IssuerProcess.probe} calls. */
export interface ProbeReport {
  seconds: number;
  loopDelayMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  gcMs: Dist;
  /** GC pauses by collector (minor, major, incremental, weakcb): count, total and longest, ms. */
  gcByKind?: Record<string, { n: number; sumMs: number; maxMs: number }>;
  /** GC pauses and group commits that held the loop ≥ 10 ms: count and total ms. */
  stalls?: { gc: { n: number; ms: number }; group: { n: number; ms: number } };
  groupSize: Dist;
  commitMs: Dist;
  groupHoldMs: Dist;
  /** PostgreSQL: statements and round trips (per connection, per event-loop turn) the issuer's pool sent. */
  pgStatements?: number;
  pgRoundTrips?: number;
}
export interface Dist {
  n: number;
  mean: number | null;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
  sum: number;
}

const PROBE = fileURLToPath(new URL('./issuer-probe.mjs', import.meta.url));

export class IssuerProcess {
  #stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    /** https://127.0.0.1:<port>, from the issuer's "listening on" line. */
    readonly url: string,
    /** Where the preloaded probe writes its report (`probeFile`), if any. */
    private readonly probeFile?: string,
  ) {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.#stderr = (this.#stderr + d).slice(-8000)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The last few KB the issuer wrote to stderr (for error reports). */
  get stderrTail(): string {
    return this.#stderr;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Start it and wait for its "listening on" line (30 s at most). `args` are added to
   * `server start --data-dir <dataDir> --listen 127.0.0.1:0 --log-level warn`.
   */
  static start(p: {
    root: string;
    dataDir: string;
    args?: string[];
    cpuProfDir?: string;
    /** `--workers N` (N > 1): wait until the primary announced all N workers (src/server/cluster.ts). */
    workers?: number;
    /** Preload bench/lib/issuer-probe.mjs writing to this file: event-loop delay, GC, group commits ({@link probe}). */
    probeFile?: string;
    /** Extra node options (V8 flags) for the issuer process, for A/B runs. */
    nodeArgs?: string[];
  }): Promise<IssuerProcess> {
    const workers = p.workers ?? 1;
    const node = [
      ...(p.nodeArgs ?? []),
      ...(p.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', p.cpuProfDir] : []),
      ...(p.probeFile ? ['--import', PROBE] : []),
    ];
    const child = spawn(
      process.execPath,
      [
        ...node,
        join(p.root, 'bin', 'sigil.js'),
        ...['server', 'start', '--data-dir', p.dataDir, '--listen', '127.0.0.1:0', '--log-level', 'warn'],
        ...(p.args ?? []),
        ...(workers > 1 ? ['--workers', String(workers)] : []),
      ],
      {
        cwd: p.root,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          SIGIL_LOG_FORMAT: 'json',
          ...(p.probeFile ? { SIGIL_BENCH_PROBE_FILE: p.probeFile } : {}),
        },
      },
    );
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-8000)));
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the issuer did not listen within 30 s:\n${stderr}`));
      }, 30_000);
      // SIGIL_BENCH_ISSUER_STDOUT=FILE: the issuer's stdout appended to FILE (what `--issuer-node-args=--trace-gc` prints).
      const tee = process.env.SIGIL_BENCH_ISSUER_STDOUT;
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        if (tee) appendFileSync(tee, d);
        out += d;
        const m = /listening on (https:\/\/\S+)/.exec(out);
        const announced = [...out.matchAll(/worker \d+ \(pid \d+\) listening on/g)].length;
        if (m && (workers === 1 || announced >= workers)) {
          clearTimeout(timer);
          const issuer = new IssuerProcess(child, m[1]!, p.probeFile);
          issuer.#stderr = stderr;
          resolve(issuer);
        }
      });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`the issuer exited (${sig ?? `code ${code}`}) before listening:\n${stderr}`));
      });
    });
  }

  /** SIGTERM (the issuer shuts down cleanly and, under --cpu-prof, writes its profile), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.alive && this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /**
   * The probe's figures since the previous call (or since start), and a fresh start: SIGUSR2, then
   * wait for the report file (its handler runs when the issuer's event loop gets to it).
   */
  async probe(timeoutMs = 10_000): Promise<ProbeReport | undefined> {
    const file = this.probeFile;
    if (!file || !this.alive) return undefined;
    rmSync(file, { force: true });
    this.child.kill('SIGUSR2');
    for (const until = Date.now() + timeoutMs; Date.now() < until;) {
      if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as ProbeReport;
      await new Promise((r) => setTimeout(r, 20));
    }
    return undefined;
  }

  /** `--workers N`: the worker processes' pids (children of this one), for their CPU. */
  workerPids(): number[] {
    try {
      return readFileSync(`/proc/${this.pid}/task/${this.pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    } catch {
      return [];
    }
  }

  /** For synchronous exit paths (signal handlers). */
  kill(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }
}
