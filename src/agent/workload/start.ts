/**
 * The agent daemon's entry to the Workload API (`workload_api:` in agent.yaml): the issuer port
 * over the agent's own link (./issuer-client.ts) and the server on the configured socket.
 * Imported only when the section is there, so an agent without it loads none of gRPC.
 */
import type { TpmAccesses } from '../../keystore/index.js';
import type { Logger } from '../../util/log.js';
import type { AgentConfig } from '../config.js';
import type { AgentState } from '../state/index.js';
import type { IssuerLink } from '../transports.js';
import { LinkWorkloadIssuer } from './issuer-client.js';
import { limitsOf } from './listener.js';
import { WorkloadApiServer } from './server.js';

export async function startWorkloadApi(deps: {
  cfg: AgentConfig;
  state: AgentState;
  link: IssuerLink;
  log: Logger;
  now: () => number;
  tpm: TpmAccesses;
  /** Started by `sigil agent run` before the agent was loaded (./early-start.ts): given its port, not started again. */
  early?: WorkloadApiServer | undefined;
}): Promise<WorkloadApiServer | undefined> {
  const wl = deps.cfg.workloadApi;
  if (!wl) return undefined;
  const port = new LinkWorkloadIssuer({
    link: deps.link,
    state: deps.state,
    now: deps.now,
    tpmTcti: deps.cfg.tpmTcti,
    tpm: deps.tpm,
  });
  if (deps.early) {
    deps.early.attach(port);
    return deps.early;
  }
  const server = new WorkloadApiServer({
    socket: wl.socket,
    sha256MaxBytes: wl.sha256MaxBytes,
    limits: limitsOf(wl.maxConnectionsPerUid),
    port,
    store: deps.state.workloads,
    log: deps.log,
    now: deps.now,
  });
  await server.start();
  return server;
}
