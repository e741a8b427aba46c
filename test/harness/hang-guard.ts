/**
 * Vitest reporter that turns a hung test file into a failure that names it.
 *
 * Why: vitest's testTimeout and hookTimeout are timers inside the worker. A worker whose event loop
 * is blocked — a synchronous child process that never exits, a native call that never returns —
 * never fires them, and the run waits until CI's own limit (90 minutes) with nothing saying which
 * file. This reporter runs in vitest's main process, whose loop is free: a test file that reports
 * no progress (no test or hook starting or ending) for SIGIL_TEST_HANG_MS (default 4 minutes, twice
 * the hook timeout) gets its worker's process tree printed (with each process's state and the
 * kernel function it waits in), and then the whole tree is killed. Vitest records the
 * file as failed and goes on with the rest. Each report is also appended to SIGIL_TEST_HANG_LOG when
 * set (scripts/test.sh: its verdict, the last lines of the run, repeats it).
 */
import { appendFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Reporter, TestCase, TestModule } from 'vitest/node';
import { WORKER_MARK_DIR } from './hang-guard-setup.js';
import { formatTree, processTree } from './process-tree.js';

const DEFAULT_LIMIT_MS = 240_000;

interface Running {
  since: number;
  last: number;
  /** Tests started and not yet finished, by full name. */
  tests: Set<string>;
  hook: string | undefined;
}

type HookContext = Parameters<NonNullable<Reporter['onHookStart']>>[0];

export default class HangGuard implements Reporter {
  readonly #limitMs = Number(process.env.SIGIL_TEST_HANG_MS) || DEFAULT_LIMIT_MS;
  readonly #markDir = WORKER_MARK_DIR;
  readonly #running = new Map<string, Running>();
  #timer: NodeJS.Timeout | undefined;

  onInit(): void {
    rmSync(this.#markDir, { recursive: true, force: true });
    mkdirSync(this.#markDir, { recursive: true });
    this.#timer = setInterval(() => this.#check(), Math.min(10_000, this.#limitMs / 4));
    this.#timer.unref();
  }

  onTestModuleQueued(m: TestModule): void {
    const now = Date.now();
    this.#running.set(m.moduleId, { since: now, last: now, tests: new Set(), hook: undefined });
  }

  onTestModuleEnd(m: TestModule): void {
    this.#running.delete(m.moduleId);
  }

  onTestCaseReady(t: TestCase): void {
    const r = this.#touch(t.module.moduleId);
    r?.tests.add(t.fullName);
  }

  onTestCaseResult(t: TestCase): void {
    const r = this.#touch(t.module.moduleId);
    r?.tests.delete(t.fullName);
  }

  onHookStart(h: HookContext): void {
    const r = this.#touch(moduleOf(h));
    if (r) r.hook = `${h.name} of ${h.entity.type === 'module' ? 'the file' : `"${h.entity.fullName}"`}`;
  }

  onHookEnd(h: HookContext): void {
    const r = this.#touch(moduleOf(h));
    if (r) r.hook = undefined;
  }

  onTestRunEnd(): void {
    clearInterval(this.#timer);
  }

  #touch(moduleId: string): Running | undefined {
    const r = this.#running.get(moduleId);
    if (r) r.last = Date.now();
    return r;
  }

  #check(): void {
    const now = Date.now();
    for (const [file, r] of this.#running) {
      if (now - r.last < this.#limitMs) continue;
      this.#running.delete(file);
      this.#stop(file, r, now);
    }
  }

  /** The worker running `file` and the test it last started, from the marks worker-mark.ts leaves. */
  #workerOf(file: string): { pid: number; test: string | undefined } | undefined {
    for (const name of readdirSync(this.#markDir)) {
      try {
        const [markedFile, test] = readFileSync(path.join(this.#markDir, name), 'utf8').split('\n');
        if (markedFile === file) return { pid: Number(name), test };
      } catch {
        // the worker exited while we looked
      }
    }
    return undefined;
  }

  #report(lines: string[]): void {
    const text = `${lines.join('\n')}\n`;
    process.stderr.write(text);
    try {
      if (process.env.SIGIL_TEST_HANG_LOG) appendFileSync(process.env.SIGIL_TEST_HANG_LOG, text);
    } catch (err) {
      process.stderr.write(`hang guard: cannot append to SIGIL_TEST_HANG_LOG: ${(err as Error).message}\n`);
    }
  }

  #stop(file: string, r: Running, now: number): void {
    const rel = path.relative(process.cwd(), file);
    const lines = [
      `hang guard: ${rel} made no progress for ${Math.round((now - r.last) / 1000)} s (running ${Math.round((now - r.since) / 1000)} s)`,
    ];
    if (r.tests.size > 0) lines.push(`  running: ${[...r.tests].map((t) => `"${t}"`).join(', ')}`);
    if (r.hook) lines.push(`  hook: ${r.hook}`);
    const worker = this.#workerOf(file);
    if (worker === undefined) {
      lines.push('  its worker left no mark (is worker-mark.ts in setupFiles?): nothing stopped');
      this.#report(lines);
      return;
    }
    const { pid } = worker;
    lines.push(
      `  last test started in the worker: ${worker.test ? `"${worker.test}"` : 'none (loading the file, or a beforeAll)'}`,
    );
    const tree = processTree(pid);
    // A mark outlives a worker that was killed (no exit handler ran), and its pid may be reused:
    // only a child of this vitest process is a worker of this run.
    if (tree[0]?.entry.ppid !== process.pid) {
      lines.push(`  its worker (pid ${pid}) is gone: nothing stopped`);
      this.#report(lines);
      return;
    }
    lines.push(
      `  worker ${pid} and what it started (pid state wchan command):`,
      formatTree(tree).replace(/^/gm, '    '),
    );
    // Children first, so none is re-parented to init and left running.
    for (const { entry } of [...tree].reverse()) {
      try {
        process.kill(entry.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    lines.push(
      `  killed ${tree.length} process(es); vitest fails the run with an unhandled error (the worker's exit), the file's tests stay pending`,
    );
    this.#report(lines);
  }
}

function moduleOf(h: HookContext): string {
  return h.entity.type === 'module' ? h.entity.moduleId : h.entity.module.moduleId;
}
