/**
 * `sigil agent …`. Everything heavy is imported inside the actions, and `agent run` first puts
 * the cached identity on disk (agent/serve-cached.ts) before loading the rest of the agent, so
 * a restart while offline serves workloads within a few hundred milliseconds.
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Command } from 'commander';
import type { TickOutcome } from '../agent/agent.js';
import type { OutputOutcome } from '../agent/credentials.js';
import type { AgentConfig } from '../agent/config.js';
import type { AgentState } from '../agent/state/index.js';
import type { AgentStatusReport } from '../agent/status.js';
import type { StatusConfigFacts } from './status-config.js';
import { SigilError } from '../errors.js';
import { formatDuration } from '../util/duration.js';
import { EXIT, parseFormat, printJson, printKv, reportError } from './output.js';

/**
 * What one pass did with each credential output: `--once` after a pass that renewed nothing but
 * wrote a JWT or an SSH certificate said only "result none" (found walking the docs).
 */
function credentialSummary(c: readonly OutputOutcome[]): string {
  return c
    .map((o) => {
      const what =
        o.action === 'issued'
          ? `issued, expires ${new Date(o.notAfter).toISOString()}`
          : o.action === 'failed'
            ? `failed: ${o.error.code}`
            : o.action === 'none' && o.failing
              ? `failing: ${o.failing.error.code}, next attempt ${new Date(o.failing.retryAt).toISOString()}`
              : o.action === 'none'
                ? 'not due (fresh)'
                : `skipped${o.reason ? `: ${o.reason}` : ''}`;
      return `${o.type} ${o.path} ${what}`;
    })
    .join('; ');
}

function summary(r: TickOutcome & { credentials?: OutputOutcome[] }, fmt: 'json' | 'table'): Record<string, unknown> {
  const id = r.identity;
  const creds = r.credentials ?? [];
  return {
    result: r.action,
    spiffe_id: id?.spiffeId ?? null,
    serial: id?.serial ?? null,
    not_after: id ? new Date(id.notAfter).toISOString() : null,
    ttl: id ? formatDuration((id.notAfter - id.notBefore) / 1000 - 60) : null,
    ...(r.action === 'joined' || r.action === 'renewed'
      ? { ttl_clamped: r.ttlClamped, requested_ttl: formatDuration(r.requestedTtlS) }
      : {}),
    key_storage: id?.keyStorage ?? null,
    exportable: id?.exportable ?? null,
    generation: id?.generation ?? null,
    ...(creds.length === 0
      ? {}
      : fmt === 'json'
        ? {
            credential_outputs: creds.map((o) => ({
              type: o.type,
              path: o.path,
              action: o.action,
              ...(o.action === 'issued' ? { not_after: new Date(o.notAfter).toISOString() } : {}),
              ...(o.action === 'failed' ? { error: o.error.code } : {}),
              ...(o.action === 'none' && o.failing
                ? { error: o.failing.error.code, next_attempt: new Date(o.failing.retryAt).toISOString() }
                : {}),
            })),
          }
        : { credential_outputs: credentialSummary(creds) }),
  };
}

/** The table form; before the first join a short block, not a column of dashes. */
function printStatus(s: AgentStatusReport, dataDir: string): void {
  const { credential_outputs: outputs, ...rest } = s;
  if (s.state === 'not_joined') {
    const tried =
      s.consecutive_failures > 0
        ? {
            consecutive_failures: s.consecutive_failures,
            last_error: s.last_error,
            next_attempt: s.next_attempt,
            transport: s.transport,
          }
        : {};
    printKv({
      state: 'not_joined (no identity yet)',
      data_dir: dataDir,
      ...tried,
      ...(s.pending_request ? { pending_request: s.pending_request } : {}),
    });
  } else {
    printKv({ ...rest, time_left: s.time_left_s === null ? null : formatDuration(s.time_left_s) });
  }
  for (const o of outputs) {
    const health =
      o.consecutive_failures > 0
        ? `${o.consecutive_failures} failures, retry ${o.next_attempt ?? '-'}: ${o.last_error ?? ''}`
        : `renews ${o.next_renewal ?? '-'}`;
    process.stdout.write(
      `output ${o.type ?? '?'} ${o.path ?? '?'}  serial ${o.serial ?? '-'}  expires ${o.not_after ?? '-'}  ${health}\n`,
    );
  }
}

function printOutcome(r: TickOutcome & { credentials?: OutputOutcome[] }, fmt: 'json' | 'table'): void {
  if (r.action === 'failed') throw r.error;
  if (fmt === 'json') printJson(summary(r, fmt));
  else printKv(summary(r, fmt));
  process.exitCode = failedOutputsExit(r.credentials ?? [], fmt);
}

/**
 * A pass that could not write a credential output fails for cron and scripts too (it exited 0,
 * found walking the docs): one error line per failed output on stderr, and the exit code of the
 * worst — 1 if any was refused, else 75 (every one may work on a retry: the issuer unreachable, a
 * key withdrawn meanwhile). The identity itself was fine; the summary above says what was written.
 */
function failedOutputsExit(outcomes: readonly OutputOutcome[], fmt: 'json' | 'table'): number {
  let exit = 0;
  for (const o of outcomes) {
    // Failed now, or failed before and waiting out its backoff (a rerun right after a failure
    // said "not due" and exited 0: found walking the docs).
    const failure =
      o.action === 'failed'
        ? o.error
        : o.action === 'none' && o.failing
          ? new SigilError(
              o.failing.error.code,
              `${o.failing.error.message} (failed ${o.failing.failures} time${o.failing.failures > 1 ? 's' : ''}; next attempt after ${new Date(o.failing.retryAt).toISOString()}, or now with sigil agent renew)`,
            )
          : undefined;
    if (!failure) continue;
    const code = reportError(new SigilError(failure.code, `${o.type} output ${o.path}: ${failure.message}`), {
      json: fmt === 'json',
    });
    exit = exit === EXIT.failed || code !== EXIT.tempfail ? EXIT.failed : EXIT.tempfail;
  }
  return exit;
}

/** Take the data directory's lock (agent/state/lock.ts); the directory from the serve plan, else from the config. */
async function lockAgent(configPath: string, dataDir: string | undefined, what: string): Promise<() => void> {
  const { lockDataDir } = await import('../agent/state/lock.js');
  const dir = dataDir ?? (await import('../agent/config.js')).loadAgentConfig(configPath).dataDir;
  return lockDataDir(dir, what);
}

/** The Workload API started before the agent was loaded (agent/workload/early-start.ts). */
type EarlyWorkloadApi = NonNullable<
  Awaited<ReturnType<typeof import('../agent/workload/early-start.js').startEarlyWorkloadApi>>
>;

/** `oneShot` (`run --once`, `renew`): warnings only, and the failure is the command's error line, not also a log line. */
async function openAgent(
  configPath: string,
  oneShot: boolean,
  early?: { state: AgentState; dataDir: string; workloadApi?: EarlyWorkloadApi | undefined },
) {
  const [{ loadAgentConfig }, { Agent, loadAgentModules }, { createLogger }] = await Promise.all([
    import('../agent/config.js'),
    import('../agent/agent.js'),
    import('../util/log.js'),
  ]);
  let cfg;
  try {
    cfg = loadAgentConfig(configPath);
  } catch (e) {
    await early?.workloadApi?.server.close();
    early?.state.close();
    throw e;
  }
  const level = cfg.logLevel ?? (oneShot ? 'warn' : undefined);
  const log = createLogger({ name: 'sigil-agent', ...(level ? { level } : {}) });
  const state = early && early.dataDir === cfg.dataDir ? early.state : undefined;
  // The early Workload API serves from the early state: it goes where that state goes.
  const workloadApi = state ? early?.workloadApi : undefined;
  if (early && !state) await early.workloadApi?.server.close();
  if (early && !state) early.state.close();
  let agent;
  try {
    // Only the code this config names: its join method, and the credential outputs if it has any.
    const modules = await loadAgentModules(cfg);
    agent = new Agent(cfg, log, {
      modules,
      ...(state ? { state } : {}),
      ...(oneShot ? { failureLogLevel: 'debug' as const } : {}),
      ...(workloadApi ? { workloadApi } : {}),
    });
  } catch (e) {
    await workloadApi?.server.close();
    throw e;
  }
  return { cfg, log, agent, served: false };
}

export interface AgentRunOptions {
  config: string;
  once?: boolean;
  format?: string;
}

export interface AgentStatusOptions {
  config?: string;
  dataDir?: string;
  format?: string;
}

/**
 * Importing ../agent/workload/early-start.ts loads the Workload API server (gRPC, protobuf: half
 * a megabyte of code, ~2 MB of a daemon's idle memory) before it reads `workload_api`. A config
 * whose text does not hold that word has no such key, so the early start would start nothing:
 * skip the import. Any doubt (unreadable file) leaves it to early-start, which leaves it to the
 * full configuration load, as before.
 */
export function mayNameWorkloadApi(config: string): boolean {
  try {
    return readFileSync(config, 'utf8').includes('workload_api');
  } catch {
    return true;
  }
}

/** `sigil agent run` (the daemon, or one pass with --once). Also reached without commander: ./agent-argv.ts. */
export async function agentRunCommand(o: AgentRunOptions): Promise<void> {
  const fmt = parseFormat(o.format);
  // Serve first, load the rest after (see the module comment) — but only as the one agent of this data directory.
  const { readServePlan, serveCachedIdentity } = await import('../agent/serve-cached.js');
  const plan = readServePlan(o.config);
  const release = await lockAgent(o.config, plan?.dataDir, o.once ? 'sigil agent run --once' : 'sigil agent run');
  let opened: Awaited<ReturnType<typeof openAgent>>;
  try {
    const served = plan ? serveCachedIdentity(plan) : undefined;
    // The daemon serves the Workload API from its cache next, also before the rest is loaded.
    const workloadApi =
      served && !o.once && mayNameWorkloadApi(o.config)
        ? await (await import('../agent/workload/early-start.js')).startEarlyWorkloadApi(o.config, served.state)
        : undefined;
    opened = await openAgent(
      o.config,
      o.once === true,
      served && plan ? { state: served.state, dataDir: plan.dataDir, workloadApi } : undefined,
    );
    opened.served = served?.identity !== undefined;
  } catch (e) {
    release();
    throw e;
  }
  const { cfg, log, agent: a } = opened;
  try {
    if (o.once) {
      if (!opened.served) a.serveCached();
      printOutcome(await a.once(), fmt);
      return;
    }
    const ac = new AbortController();
    const stop = (signal: string): void => {
      log.info({ signal }, `stopping (${signal})`);
      ac.abort();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    let server: Server | undefined;
    if (cfg.metrics.listen) {
      const { serveAgentMetrics } = await import('../agent/metrics-server.js');
      server = await serveAgentMetrics(cfg.metrics.listen, a);
      log.info({ listen: cfg.metrics.listen }, 'agent metrics listening');
    }
    await a.run(ac.signal, { served: opened.served });
    server?.close();
    log.info({}, 'stopped');
  } finally {
    await a.close();
    release();
  }
}

/** `sigil agent status`. Also reached without commander: ./agent-argv.ts. */
export async function agentStatusCommand(o: AgentStatusOptions): Promise<void> {
  const fmt = parseFormat(o.format);
  const [{ readStatusFacts }, { openAgentStateReadOnly }, { agentStatus, nextStepHint }] = await Promise.all([
    import('./status-config.js'),
    import('../agent/state/index.js'),
    import('../agent/status.js'),
  ]);
  // The full config loader (zod, every join method's schema) only when the YAML alone does not say (./status-config.ts).
  const fullConfig = async (file: string) => (await import('../agent/config.js')).loadAgentConfig(file);
  let cfg: AgentConfig | undefined;
  let facts: StatusConfigFacts | undefined;
  if (o.config) {
    facts = readStatusFacts(o.config);
    if (!facts) {
      cfg = await fullConfig(o.config);
      facts = { dataDir: cfg.dataDir, tpmTcti: cfg.tpmTcti, mqtt: cfg.transports.some((t) => t.type === 'mqtt') };
    }
  }
  const dir = o.dataDir ?? facts?.dataDir;
  if (!dir) throw new SigilError('config_invalid', 'give --config FILE or --data-dir DIR');
  // Read-only: status never creates the directory or the database it was pointed at.
  const state = openAgentStateReadOnly(dir);
  let s;
  let hint;
  try {
    s = agentStatus(state, Date.now(), { tpmTcti: facts?.tpmTcti, mqtt: facts?.mqtt });
    // The hint for an expired token identity looks at the configured token: the whole config then.
    if (o.config && cfg === undefined && s.state === 'expired') cfg = await fullConfig(o.config);
    hint = await nextStepHint(s, o.config, { cfg, state });
  } finally {
    state?.close();
  }
  if (fmt === 'json') printJson(s);
  else printStatus(s, dir);
  // An identity that cannot be used is a failure for scripts (`sigil agent status && …`), with the next step on stderr.
  if (hint) {
    process.stderr.write(
      fmt === 'json' ? `${JSON.stringify({ hint: { state: s.state, next_step: hint } })}\n` : `hint: ${hint}\n`,
    );
    process.exitCode = EXIT.failed;
  }
}

export function registerAgent(program: Command, run: (fn: () => Promise<void> | void) => Promise<void>): void {
  const agent = program.command('agent').description('the machine side: join, renew, write credentials');

  agent
    .command('run')
    .description('join or renew as needed and keep credentials fresh (daemon), or once with --once')
    .requiredOption('--config <file>', 'agent.yaml')
    .option(
      '--once',
      'trust check if due, join or renew if needed, write outputs, exit (0 ok, 75 issuer unreachable, 1 refused; an output that failed counts)',
    )
    .option('--format <fmt>', 'table or json (with --once)')
    .action((o: AgentRunOptions) => run(() => agentRunCommand(o)));

  agent
    .command('renew')
    .description('renew now, whatever the schedule says')
    .requiredOption('--config <file>', 'agent.yaml')
    .option('--format <fmt>', 'table or json')
    .action((o: { config: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        const release = await lockAgent(o.config, undefined, 'sigil agent renew');
        try {
          const { cfg, agent: a } = await openAgent(o.config, true);
          try {
            if (!a.state.getIdentity())
              throw new SigilError(
                'not_joined',
                `no identity in ${cfg.dataDir}; run: sigil agent run --once --config ${o.config}`,
              );
            printOutcome(await a.tick({ force: true }), fmt);
          } finally {
            await a.close();
          }
        } finally {
          release();
        }
      }),
    );

  agent
    .command('status')
    .description("show the agent's identity and renewal state")
    .option('--config <file>', 'agent.yaml')
    .option('--data-dir <dir>', 'agent data directory (instead of --config)')
    .option('--format <fmt>', 'table or json')
    .action((o: AgentStatusOptions) => run(() => agentStatusCommand(o)));

  agent
    .command('workloads')
    .description(
      'Workload API: the registration entries of this node, what is served, and why a process gets it (or not)',
    )
    .option('--config <file>', 'agent.yaml')
    .option('--data-dir <dir>', 'agent data directory (instead of --config)')
    .option('--pid <pid>', 'a process: its selectors, and which entries match it (or which selectors it lacks)')
    .option('--format <fmt>', 'table or json')
    .action((o: { config?: string; dataDir?: string; pid?: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        const [{ loadAgentConfig }, { openAgentStateReadOnly }, { explainWorkloads, formatExplanation }] =
          await Promise.all([
            import('../agent/config.js'),
            import('../agent/state/index.js'),
            import('../agent/workload/explain.js'),
          ]);
        const cfg = o.config ? loadAgentConfig(o.config) : undefined;
        const dir = o.dataDir ?? cfg?.dataDir;
        if (!dir) throw new SigilError('config_invalid', 'give --config FILE or --data-dir DIR');
        if (o.pid !== undefined && !/^[1-9]\d{0,9}$/.test(o.pid))
          throw new SigilError('config_invalid', `--pid must be a process id, got "${o.pid}"`);
        const state = openAgentStateReadOnly(dir);
        if (!state) throw new SigilError('not_joined', `no agent state in ${dir}`);
        let x;
        try {
          x = explainWorkloads(state.workloads, {
            socket: cfg?.workloadApi?.socket,
            sha256MaxBytes: cfg?.workloadApi?.sha256MaxBytes,
            ...(o.pid !== undefined ? { pid: Number(o.pid) } : {}),
          });
        } finally {
          state.close();
        }
        if (fmt === 'json') printJson(x);
        else process.stdout.write(formatExplanation(x));
      }),
    );
}
