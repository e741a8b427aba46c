/**
 * A Sigil issuer as its own process for the benches: `node bin/sigil.js server start` from the
 * built dist/, on 127.0.0.1 with an OS-chosen port, optionally under `node --cpu-prof`. The
 * bench talks to it over the network only and reads its CPU from /proc/<pid>.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export class IssuerProcess {
  #stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    /** https://127.0.0.1:<port>, from the issuer's "listening on" line. */
    readonly url: string,
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
  }): Promise<IssuerProcess> {
    const workers = p.workers ?? 1;
    const node = p.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', p.cpuProfDir] : [];
    const child = spawn(
      process.execPath,
      [
        ...node,
        join(p.root, 'bin', 'sigil.js'),
        ...['server', 'start', '--data-dir', p.dataDir, '--listen', '127.0.0.1:0', '--log-level', 'warn'],
        ...(p.args ?? []),
        ...(workers > 1 ? ['--workers', String(workers)] : []),
      ],
      { cwd: p.root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SIGIL_LOG_FORMAT: 'json' } },
    );
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-8000)));
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the issuer did not listen within 30 s:\n${stderr}`));
      }, 30_000);
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /listening on (https:\/\/\S+)/.exec(out);
        const announced = [...out.matchAll(/worker \d+ \(pid \d+\) listening on/g)].length;
        if (m && (workers === 1 || announced >= workers)) {
          clearTimeout(timer);
          const issuer = new IssuerProcess(child, m[1]!);
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
