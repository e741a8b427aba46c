/**
 * From a gRPC call to the workload behind it: the connection's peer credentials
 * (./listener.ts), the selectors they attest to (./attest.ts), and the entries and SVIDs those
 * selectors are entitled to. Shared by the Workload API and SDS handlers, which turn the
 * refusals into gRPC status codes (SPIFFE_Workload_Endpoint.md §6).
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { toSigilError } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import type { CachedWorkloadSvid } from '../state/workload.js';
import { attestCaller, entryMatches, sha256Needed, type AttestOptions } from './attest.js';
import { ExeHasher } from './exe-hasher.js';
import type { WorkloadIdentities, WorkloadSnapshot } from './identities.js';
import type { WorkloadEntry } from './issuer-port.js';
import { LogThrottle, type ConnectedPeer, type WorkloadListener } from './listener.js';

export interface Caller {
  peer: ConnectedPeer;
  selectors: string[];
  /** Tell the listener this caller was refused (no entry matches): its connection is closed soon. */
  refused?: () => void;
}

export interface Entitlement {
  /** Entries whose every selector the caller has, by entry id. */
  entries: WorkloadEntry[];
  /** Their current SVIDs, in the same order (the first is the default identity, X.509-SVID §5.3). */
  svids: CachedWorkloadSvid[];
}

export function grpcError(code: status, details: string): ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new Metadata() });
}

export class CallerResolver {
  /** The `unix:sha256` hashes: cached, one at a time, off the event loop. */
  readonly hasher = new ExeHasher();
  readonly #throttle = new LogThrottle();

  constructor(
    private readonly listener: Pick<WorkloadListener, 'peerOf' | 'refused'>,
    private readonly opts: AttestOptions & {
      /** The registration entries now (whether any needs the caller's executable hashed). */
      entries: () => readonly WorkloadEntry[];
      log: Logger;
    },
  ) {}

  /** Throws a gRPC PermissionDenied naming the check that failed. */
  async resolve(callPeer: string): Promise<Caller> {
    const peer = this.listener.peerOf(callPeer);
    if (!peer) throw grpcError(status.PERMISSION_DENIED, 'the connection has no attested peer');
    const { entries, log, ...attest } = this.opts;
    try {
      const selectors = await attestCaller(peer, {
        ...attest,
        hasher: this.hasher,
        wantSha256: (sel) => sha256Needed(entries(), sel),
      });
      return { peer, selectors, refused: () => this.listener.refused(callPeer) };
    } catch (e) {
      const err = toSigilError(e);
      this.listener.refused(callPeer);
      const t = this.#throttle.take(`attest:${peer.uid}`);
      if (t.log)
        log.warn(
          { pid: peer.pid, uid: peer.uid, code: err.code, check: err.message, refused_since_last: t.suppressed },
          'workload API: caller attestation failed; call refused',
        );
      throw grpcError(status.PERMISSION_DENIED, `caller attestation failed: ${err.message}`);
    }
  }
}

/** What `selectors` are entitled to in `snap`. */
export function entitlement(selectors: readonly string[], snap: WorkloadSnapshot): Entitlement {
  const have = new Set(selectors);
  const entries = snap.entries.filter((e) => entryMatches(e.selectors, have)).sort((a, b) => (a.id < b.id ? -1 : 1));
  const svids = entries.flatMap((e) => {
    const s = snap.svids.get(e.id);
    return s && s.spiffeId === e.spiffeId ? [s] : [];
  });
  return { entries, svids };
}

/**
 * The caller's entitlement, or the status the spec asks for: Unavailable while the agent has
 * nothing to serve yet (no bundle; or entries that match but no SVID issued yet),
 * PermissionDenied when no entry matches — the message lists the caller's selectors, which is
 * what an operator needs to write the entry (`sigil agent workloads --pid` says the same).
 */
export function entitledOrThrow(caller: Caller, identities: WorkloadIdentities, needSvid: boolean): Entitlement {
  if (!identities.ready())
    throw grpcError(status.UNAVAILABLE, 'the agent has no workload identities yet (no trust bundle)');
  const ent = entitlement(caller.selectors, identities.snapshot());
  if (ent.entries.length === 0) {
    caller.refused?.();
    throw grpcError(
      status.PERMISSION_DENIED,
      `no identity issued: no registration entry matches this process (selectors: ${caller.selectors.join(' ')})`,
    );
  }
  if (needSvid && ent.svids.length === 0)
    throw grpcError(status.UNAVAILABLE, 'the identities of this process have not been issued yet; retry');
  return ent;
}
