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
import { type ListenerLimits, WorkloadListener } from './listener.js';
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
  /** Connection limits and idle timeouts (./listener.ts DEFAULT_LISTENER_LIMITS). */
  limits?: Partial<ListenerLimits> | undefined;
}

export class WorkloadApiServer {
  readonly identities: WorkloadIdentities;
  readonly listener: WorkloadListener;
  readonly callers: CallerResolver;
  private readonly grpc: Server;
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
    this.listener = new WorkloadListener(opts.socket, reader, opts.log, opts.limits);
    // The listener learns from every call when its connection is busy (idle connections are closed).
    this.grpc = new Server({ interceptors: [this.listener.interceptor] });
    const callers = new CallerResolver(this.listener, {
      ...(opts.sha256MaxBytes !== undefined ? { sha256MaxBytes: opts.sha256MaxBytes } : {}),
      ...(opts.procRoot !== undefined ? { procRoot: opts.procRoot } : {}),
      entries: () => this.identities.store.entries(),
      log: opts.log,
    });
    this.callers = callers;
    const defs = loadServiceDefinitions();
    const deps = { identities: this.identities, callers, log: opts.log };
    this.grpc.addService(defs.workload, workloadServiceHandlers(deps));
    this.grpc.addService(defs.sds, sdsServiceHandlers(deps));
  }

  /** Listen (serving the cache at once), then keep the cache fresh in the background once there is an issuer port. */
  async start(): Promise<void> {
    await this.listener.listen(this.grpc);
    const cached = this.identities.snapshot();
    // At load, and for entries synced later (each entry once).
    const warned = new Set<string>();
    warnExecutableOnlyEntries(cached.entries, this.opts.log, warned);
    this.identities.onChange(() => warnExecutableOnlyEntries(this.identities.store.entries(), this.opts.log, warned));
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

/**
 * An entry whose only selectors are `unix:path`/`unix:sha256` is given to any user who can run
 * that executable, and pins it only as of the moment the agent accepted the connection
 * (docs/workload-api.md): say so once at start, so the operator adds a uid, gid or unit.
 */
export function warnExecutableOnlyEntries(
  entries: ReadonlyArray<{ id: string; selectors: readonly string[] }>,
  log: Logger,
  warned = new Set<string>(),
): void {
  for (const e of entries) {
    const key = `${e.id}\0${e.selectors.join(' ')}`;
    if (warned.has(key)) continue;
    if (
      e.selectors.length > 0 &&
      e.selectors.every((s) => s.startsWith('unix:path:') || s.startsWith('unix:sha256:'))
    ) {
      warned.add(key);
      log.warn(
        { entry: e.id, selectors: e.selectors },
        'workload entry selects by executable only (unix:path/unix:sha256): any local user who can run it gets this identity; add a unix:uid, unix:gid or systemd:unit selector',
      );
    }
  }
}
