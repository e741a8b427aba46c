/**
 * Envoy's Secret Discovery Service (v3) on the Workload API socket, serving the same cache and
 * the same caller attestation: Envoy connects as a process like any other and gets the
 * identities its selectors are entitled to. Resource names, as SPIRE's agent serves them:
 * - `default`: the caller's default identity (its first SVID) as a tls_certificate;
 * - a SPIFFE ID the caller is entitled to: that SVID as a tls_certificate;
 * - `ROOTCA`, `ALL`, or the trust domain's ID (`spiffe://<td>`): the trust bundle as a
 *   validation_context (`ALL` would add federated bundles; Sigil has none);
 * - no names (a wildcard subscription): every SVID by SPIFFE ID, and the bundle by trust domain ID.
 * Envoy sends no `workload.spiffe.io` header (SPIRE does not require it on SDS either).
 *
 * StreamSecrets follows the xDS protocol: a response carries a version and a nonce; Envoy
 * answers each with a request echoing the nonce (ACK, or NACK with error_detail) — neither is a
 * new subscription, so nothing is resent for it; a request with other names, and every change
 * of the served material, gets a new response. DeltaSecrets answers Unimplemented.
 */
import { createHash } from 'node:crypto';
import {
  status,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { trustDomainId } from '../../pki/spiffe-id.js';
import type { Logger } from '../../util/log.js';
import type { CachedWorkloadBundles, CachedWorkloadSvid } from '../state/workload.js';
import { entitledOrThrow, grpcError, type Caller, type CallerResolver } from './callers.js';
import type { WorkloadIdentities } from './identities.js';
import { SECRET_TYPE_URL } from './protos.js';

export const SDS_DEFAULT = 'default';
export const SDS_ROOTCA = 'ROOTCA';
export const SDS_ALL = 'ALL';

interface DiscoveryRequest {
  version_info: string;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail: { code: number; message: string } | null;
}

interface Secret {
  name: string;
  tls_certificate?: { certificate_chain: { inline_bytes: Buffer }; private_key: { inline_bytes: Buffer } };
  validation_context?: { trusted_ca: { inline_bytes: Buffer } };
}

export interface SdsDeps {
  identities: WorkloadIdentities;
  callers: CallerResolver;
  log: Logger;
}

function tlsSecret(name: string, s: CachedWorkloadSvid): Secret {
  return {
    name,
    tls_certificate: {
      certificate_chain: { inline_bytes: Buffer.from(s.chainPem) },
      private_key: { inline_bytes: Buffer.from(s.keyPem) },
    },
  };
}

function bundleSecret(name: string, b: CachedWorkloadBundles): Secret {
  return { name, validation_context: { trusted_ca: { inline_bytes: Buffer.from(b.rootsPem) } } };
}

/** The secrets for `names` (empty: all), for this caller, now. Unknown names are left out (and logged by the caller). */
export function secretsFor(caller: Caller, names: readonly string[], identities: WorkloadIdentities): Secret[] {
  const ent = entitledOrThrow(caller, identities, true);
  const bundles = identities.store.bundles()!;
  const td = trustDomainId(bundles.trustDomain);
  if (names.length === 0) return [...ent.svids.map((s) => tlsSecret(s.spiffeId, s)), bundleSecret(td, bundles)];
  return names.flatMap((name): Secret[] => {
    if (name === SDS_DEFAULT) return [tlsSecret(name, ent.svids[0]!)];
    if (name === SDS_ROOTCA || name === SDS_ALL || name === td) return [bundleSecret(name, bundles)];
    const svid = ent.svids.find((s) => s.spiffeId === name);
    return svid ? [tlsSecret(name, svid)] : [];
  });
}

function response(secrets: Secret[], nonce: string): { version: string; msg: unknown } {
  const version = createHash('sha256')
    .update(
      JSON.stringify(
        secrets.map((s) => [
          s.name,
          s.tls_certificate?.certificate_chain.inline_bytes.toString('base64'),
          s.validation_context?.trusted_ca.inline_bytes.toString('base64'),
        ]),
      ),
    )
    .digest('hex')
    .slice(0, 16);
  return {
    version,
    msg: {
      version_info: version,
      resources: secrets.map((s) => ({ type_url: SECRET_TYPE_URL, value: s })),
      canary: false,
      type_url: SECRET_TYPE_URL,
      nonce,
    },
  };
}

export function sdsServiceHandlers(deps: SdsDeps): UntypedServiceImplementation {
  const { identities, callers, log } = deps;
  return {
    StreamSecrets(call: ServerDuplexStream<DiscoveryRequest, unknown>): void {
      // Requests that arrive while the caller is attested wait for it (in order).
      const early: DiscoveryRequest[] = [];
      const buffer = (req: DiscoveryRequest): number => early.push(req);
      let ended = false;
      const markEnded = (): void => {
        ended = true;
      };
      call.on('data', buffer);
      call.once('end', markEnded);
      callers.resolve(call.getPeer()).then(
        (caller) => {
          call.off('data', buffer);
          call.off('end', markEnded);
          serveStream(call, caller, early, ended);
        },
        (e: unknown) => {
          call.off('data', buffer);
          call.emit('error', e);
        },
      );
    },

    FetchSecrets(call: ServerUnaryCall<DiscoveryRequest, unknown>, cb: sendUnaryData<unknown>): void {
      callers.resolve(call.getPeer()).then(
        (caller) => {
          try {
            cb(null, response(secretsFor(caller, call.request.resource_names ?? [], identities), '').msg);
          } catch (e) {
            cb(e as Error);
          }
        },
        (e: unknown) => cb(e as Error),
      );
    },

    DeltaSecrets(call: ServerDuplexStream<unknown, unknown>): void {
      call.emit('error', grpcError(status.UNIMPLEMENTED, 'DeltaSecrets is not supported; use StreamSecrets (SotW)'));
    },
  };

  function serveStream(
    call: ServerDuplexStream<DiscoveryRequest, unknown>,
    caller: Caller,
    early: readonly DiscoveryRequest[],
    ended: boolean,
  ): void {
    if (call.cancelled || call.destroyed) return;
    let names: string[] | undefined;
    let sentVersion = '';
    let nonce = 0;
    const push = (force: boolean): void => {
      if (names === undefined) return;
      let secrets: Secret[];
      try {
        secrets = secretsFor(caller, names, identities);
      } catch (e) {
        stop();
        call.emit('error', e);
        return;
      }
      const r = response(secrets, String(++nonce));
      if (!force && r.version === sentVersion) return;
      sentVersion = r.version;
      call.write(r.msg);
    };
    const unsubscribe = identities.onChange(() => push(false));
    const stop = (): void => {
      unsubscribe();
    };
    call.once('cancelled', stop);
    call.once('close', stop);
    call.once('error', stop);
    const onEnd = (): void => {
      stop();
      call.end();
    };
    const onRequest = (req: DiscoveryRequest): void => {
      if (req.type_url && req.type_url !== SECRET_TYPE_URL) {
        stop();
        call.emit('error', grpcError(status.INVALID_ARGUMENT, `SDS serves ${SECRET_TYPE_URL}, not ${req.type_url}`));
        return;
      }
      if (req.error_detail) {
        log.warn({ nonce: req.response_nonce, error: req.error_detail.message }, 'SDS: Envoy rejected a response');
      }
      const requested = [...(req.resource_names ?? [])].sort();
      const same = names !== undefined && JSON.stringify(requested) === JSON.stringify(names);
      // An ACK/NACK of what was sent (same names, a nonce): nothing new to send.
      if (same && req.response_nonce) return;
      names = requested;
      push(true);
    };
    for (const req of early) onRequest(req);
    call.on('data', onRequest);
    if (ended) onEnd();
    else call.on('end', onEnd);
  }
}
