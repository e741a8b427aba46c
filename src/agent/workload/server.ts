/**
 * The agent's Workload API endpoint (issue #17; docs/workload-api.md): one Unix socket serving
 * the SPIFFE Workload API and Envoy SDS over gRPC, from the SQLite cache kept fresh by
 * {@link WorkloadIdentities}. The socket is listened on before the issuer is contacted, so a
 * restarted agent serves the cached identities at once, whether or not the issuer is reachable.
 */
import { Server } from '@grpc/grpc-js';
import { PeerCredentialReader } from '#native/peer-credentials.js';
import { SigilError } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import type { WorkloadStore } from '../state/workload.js';
import { CallerResolver } from './callers.js';
import { WorkloadIdentities } from './identities.js';
import type { WorkloadIssuerPort } from './issuer-port.js';
import { WorkloadListener } from './listener.js';
import { loadServiceDefinitions } from './protos.js';
import { sdsServiceHandlers } from './sds-service.js';
import { workloadServiceHandlers } from './workload-service.js';

export interface WorkloadApiOptions {
  socket: string;
  sha256MaxBytes?: number | undefined;
  /** The issuer; may be attached after start() (./early-start.ts), until then only the cache is served. */
  port?: WorkloadIssuerPort | undefined;
  store: WorkloadStore;
  log: Logger;
  now?: () => number;
  /** The SO_PEERCRED reader (tests may pass another); default: libc through koffi. */
  peerReader?: Pick<PeerCredentialReader, 'read'>;
  /** Where /proc is (tests). */
  procRoot?: string;
}

export class WorkloadApiServer {
  readonly identities: WorkloadIdentities;
  readonly listener: WorkloadListener;
  private readonly grpc = new Server();
  private readonly stopSync = new AbortController();
  private syncLoop: Promise<void> | undefined;

  constructor(private readonly opts: WorkloadApiOptions) {
    this.identities = new WorkloadIdentities(opts.port, opts.store, opts.log, opts.now);
    let reader = opts.peerReader;
    if (!reader) {
      try {
        reader = PeerCredentialReader.open();
      } catch (e) {
        throw new SigilError(
          'config_invalid',
          `workload_api needs the peer credentials of Unix sockets: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
    this.listener = new WorkloadListener(opts.socket, reader, opts.log);
    const callers = new CallerResolver(this.listener, {
      ...(opts.sha256MaxBytes !== undefined ? { sha256MaxBytes: opts.sha256MaxBytes } : {}),
      ...(opts.procRoot !== undefined ? { procRoot: opts.procRoot } : {}),
    });
    const defs = loadServiceDefinitions();
    const deps = { identities: this.identities, callers, log: opts.log };
    this.grpc.addService(defs.workload, workloadServiceHandlers(deps));
    this.grpc.addService(defs.sds, sdsServiceHandlers(deps));
  }

  /** Listen (serving the cache at once), then keep the cache fresh in the background once there is an issuer port. */
  async start(): Promise<void> {
    await this.listener.listen(this.grpc);
    const cached = this.identities.snapshot();
    this.opts.log.info(
      { socket: this.opts.socket, entries: cached.entries.length, cached_svids: cached.svids.size },
      'workload API listening',
    );
    if (this.opts.port) this.syncLoop = this.identities.run(this.stopSync.signal);
  }

  /** Give a server started without an issuer port its port, and start keeping the cache fresh. */
  attach(port: WorkloadIssuerPort): void {
    this.identities.attach(port);
    this.syncLoop ??= this.identities.run(this.stopSync.signal);
  }

  /** The agent joined or renewed: the sync retries at once what it could not do without that identity. */
  agentIdentityChanged(how: 'joined' | 'renewed'): void {
    this.identities.agentIdentityChanged(how);
  }

  async close(): Promise<void> {
    this.stopSync.abort();
    await this.syncLoop;
    this.grpc.forceShutdown();
    await this.listener.close();
  }
}
