/**
 * `sigil agent run` starts the Workload API before the rest of the agent is loaded, the way it
 * puts the cached identity files back first (../serve-cached.ts): a restarted agent then serves
 * its workloads the cached SVIDs within a few hundred milliseconds, whether or not the issuer
 * is reachable (issue #17). The agent attaches its issuer link once it is up (./start.ts).
 *
 * Only `workload_api` is read here, with the same rules as config.ts; anything doubtful starts
 * nothing and leaves the decision to the full configuration load. The logger is not loaded
 * yet either: lines are kept until the agent's logger takes them ({@link DeferredLog}).
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Logger } from '../../util/log.js';
import type { AgentState } from '../state/index.js';
import { limitsOf } from './listener.js';
import { WorkloadApiServer } from './server.js';

export interface WorkloadApiPlan {
  socket: string;
  sha256MaxBytes: number | undefined;
  maxConnectionsPerUid?: number | undefined;
}

/** `workload_api` from agent.yaml, or undefined when it is absent or not plainly valid. */
export function readWorkloadApiPlan(configPath: string): WorkloadApiPlan | undefined {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(configPath, 'utf8'));
  } catch {
    return undefined;
  }
  const w = (raw as { workload_api?: unknown } | null)?.workload_api as Record<string, unknown> | undefined;
  if (!w || typeof w !== 'object' || typeof w['socket'] !== 'string' || w['socket'] === '') return undefined;
  if (Object.keys(w).some((k) => k !== 'socket' && k !== 'sha256_max_bytes' && k !== 'max_connections_per_uid'))
    return undefined;
  const max = w['sha256_max_bytes'];
  if (max !== undefined && !(Number.isInteger(max) && (max as number) > 0)) return undefined;
  const perUid = w['max_connections_per_uid'];
  if (perUid !== undefined && !(Number.isInteger(perUid) && (perUid as number) > 0 && (perUid as number) <= 4096))
    return undefined;
  const socket = w['socket'];
  return {
    socket: isAbsolute(socket) ? socket : resolve(dirname(resolve(configPath)), socket),
    sha256MaxBytes: max as number | undefined,
    maxConnectionsPerUid: perUid as number | undefined,
  };
}

type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
const LEVELS: readonly Level[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

/** A logger that keeps what is logged until {@link setTarget} gives it the real one. */
export class DeferredLog {
  #target: Logger | undefined;
  readonly #held: Array<{ level: Level; args: unknown[] }> = [];
  readonly logger: Logger;

  constructor() {
    const log = Object.fromEntries(
      LEVELS.map((level) => [
        level,
        (...args: unknown[]) => {
          if (this.#target) (this.#target[level] as (...a: unknown[]) => void)(...args);
          else if (this.#held.length < 100) this.#held.push({ level, args });
        },
      ]),
    );
    this.logger = log as unknown as Logger;
  }

  setTarget(target: Logger): void {
    this.#target = target;
    for (const { level, args } of this.#held.splice(0)) (target[level] as (...a: unknown[]) => void)(...args);
  }
}

/** Listen on the socket with what `state` has cached; undefined (nothing started) on any doubt or failure. */
export async function startEarlyWorkloadApi(
  configPath: string,
  state: AgentState,
): Promise<{ server: WorkloadApiServer; log: DeferredLog } | undefined> {
  const plan = readWorkloadApiPlan(configPath);
  if (!plan) return undefined;
  const log = new DeferredLog();
  try {
    const server = new WorkloadApiServer({
      socket: plan.socket,
      sha256MaxBytes: plan.sha256MaxBytes,
      limits: limitsOf(plan.maxConnectionsPerUid),
      store: state.workloads,
      log: log.logger,
    });
    await server.start();
    return { server, log };
  } catch {
    // The full start (agent.ts) reports the same failure with the agent's logger.
    return undefined;
  }
}
