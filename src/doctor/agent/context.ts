/**
 * What the agent checks share: the parsed config, the agent's state (opened only when
 * `agent.db` exists — doctor never creates an agent), and one probe of the issuer per transport,
 * memoised so that the pin check, the clock check and the broker check make one round trip
 * between them. Everything opened here is closed by {@link AgentDoctorContext.close}.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentConfig, TransportConfig } from '../../agent/config.js';
import type { AgentState } from '../../agent/state/index.js';
import { AGENT_DB_FILE } from '../../agent/state/db.js';
import { probeIssuer, type IssuerProbe } from './probe.js';

export interface AgentDoctorContext {
  configPath: string;
  cfg: AgentConfig;
  now(): number;
  /** The agent's state, or undefined when it has never run (no agent.db). Throws when it cannot be opened. */
  state(): Promise<AgentState | undefined>;
  /** The issuer as seen through transport `i`: pinned root and a verified, signed bundle. */
  probe(i: number): Promise<IssuerProbe>;
  /** Things to close at the end (MQTT clients, TPM connections). */
  onClose(fn: () => unknown): void;
  close(): Promise<void>;
}

export function agentDoctorContext(configPath: string, cfg: AgentConfig): AgentDoctorContext {
  let opened: Promise<AgentState | undefined> | undefined;
  const probes = new Map<number, Promise<IssuerProbe>>();
  const closers: Array<() => unknown> = [];
  let closeState: (() => void) | undefined;
  const ctx: AgentDoctorContext = {
    configPath,
    cfg,
    now: () => Date.now(),
    state() {
      opened ??= (async () => {
        if (!existsSync(join(cfg.dataDir, AGENT_DB_FILE))) return undefined;
        // Opened like `sigil agent status` opens it: read-only, creating and migrating nothing,
        // without the agent's lock, beside a running daemon. Not the agent's read-write open:
        // that refuses a data directory another user owns (agent/state/dir-perms.ts), which is
        // what `sudo sigil doctor` looks at for an agent run as `sigil`; the data_dir check
        // reports ownership and modes.
        const { openAgentStateReadOnly } = await import('../../agent/state/index.js');
        const st = openAgentStateReadOnly(cfg.dataDir);
        if (!st) return undefined;
        closeState = () => st.close();
        return st;
      })();
      return opened;
    },
    probe(i) {
      let p = probes.get(i);
      if (!p) {
        p = probeIssuer(ctx, cfg.transports[i]!);
        probes.set(i, p);
        p.catch(() => undefined);
      }
      return p;
    },
    onClose(fn) {
      closers.push(fn);
    },
    async close() {
      // Transports and TPM first, the state last (a probe may still read it).
      for (const fn of closers.splice(0).reverse())
        await Promise.resolve()
          .then(fn)
          .catch(() => undefined);
      closeState?.();
      closeState = undefined;
    },
  };
  return ctx;
}

/** How a transport is named in check names and messages. */
export const transportLabel = (t: TransportConfig): string => t.url;
