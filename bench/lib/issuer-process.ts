/**
 * A Sigil issuer as its own process for the benches: `node bin/sigil.js server start` from the
 * built dist/, on 127.0.0.1 with an OS-chosen port, optionally under `node --cpu-prof`. The
 * bench talks to it over the network only and reads its CPU from /proc/<pid>.
 */
import { spawn, type ChildProcess } from 'node:child_process';
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
  static start(p: { root: string; dataDir: string; args?: string[]; cpuProfDir?: string }): Promise<IssuerProcess> {
    const node = p.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', p.cpuProfDir] : [];
    const child = spawn(
      process.execPath,
      [
        ...node,
        join(p.root, 'bin', 'sigil.js'),
        ...['server', 'start', '--data-dir', p.dataDir, '--listen', '127.0.0.1:0', '--log-level', 'warn'],
        ...(p.args ?? []),
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
        if (m) {
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

  /** For synchronous exit paths (signal handlers). */
  kill(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }
}
