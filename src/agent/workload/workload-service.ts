/**
 * The SpiffeWorkloadAPI handlers (SPIFFE_Workload_API.md; ./proto/workload.proto).
 *
 * Every call must carry the `workload.spiffe.io: true` header (SPIFFE_Workload_Endpoint.md §4:
 * it keeps browsers and SSRF-style proxies, which cannot set it, from reaching the API):
 * InvalidArgument without it. Streams send the complete state at once and again after every
 * change (§4.3); a change that leaves the caller with no identity ends the stream with
 * PermissionDenied, which the spec tells clients to treat as "stop using the redacted SVIDs".
 */
import { X509Certificate } from 'node:crypto';
import {
  status,
  type Metadata,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { JWTPayload, JSONWebKeySet } from 'jose';
import { pemToDers } from '../../pki/pem.js';
import { parseSpiffeId, trustDomainId } from '../../pki/spiffe-id.js';
import type { Logger } from '../../util/log.js';
import { entitledOrThrow, grpcError, type Caller, type CallerResolver, type Entitlement } from './callers.js';
import type { WorkloadIdentities } from './identities.js';

export const SECURITY_HEADER = 'workload.spiffe.io';

/** JWT-SVID §3: the algorithms a JWT-SVID may be signed with (none and HMAC never). */
const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'];

export interface WorkloadServiceDeps {
  identities: WorkloadIdentities;
  callers: CallerResolver;
  log: Logger;
}

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;

function checkHeader(md: Metadata): void {
  const v = md.get(SECURITY_HEADER);
  if (v.length !== 1 || v[0] !== 'true')
    throw grpcError(status.INVALID_ARGUMENT, `security header missing from request: "${SECURITY_HEADER}: true"`);
}

function derConcat(pem: string): Buffer {
  return Buffer.concat(pemToDers(pem, 'CERTIFICATE'));
}

function pkcs8Der(pem: string): Buffer {
  return pemToDers(pem, 'PRIVATE KEY')[0]!;
}

export function workloadServiceHandlers(deps: WorkloadServiceDeps): UntypedServiceImplementation {
  const { identities, callers, log } = deps;

  /** Header, then caller, then entitlement: a failure is the call's status. */
  const admit = (call: AnyCall): Promise<Caller> => {
    checkHeader(call.metadata);
    return callers.resolve(call.getPeer());
  };

  /** A server stream that sends `render()` now and after every change, until the client goes or render refuses. */
  const stream = (call: ServerWritableStream<unknown, unknown>, render: (c: Caller) => unknown, what: string): void => {
    let caller: Caller;
    let last = '';
    let ended = false;
    const send = (): boolean => {
      let msg: unknown;
      try {
        msg = render(caller);
      } catch (e) {
        stop();
        call.emit('error', e);
        return false;
      }
      const key = JSON.stringify(msg);
      if (key === last) return true;
      last = key;
      call.write(msg);
      return true;
    };
    let unsubscribe: (() => void) | undefined;
    const stop = (): void => {
      ended = true;
      unsubscribe?.();
    };
    call.once('cancelled', stop);
    call.once('close', stop);
    call.once('error', stop);
    void (async () => {
      try {
        caller = await admit(call);
      } catch (e) {
        stop();
        call.emit('error', e);
        return;
      }
      // The client may have gone while the caller was attested.
      if (ended) return;
      unsubscribe = identities.onChange(() => void send());
      if (send()) log.debug({ pid: caller.peer.pid, uid: caller.peer.uid }, `workload API: ${what} stream opened`);
    })();
  };

  const x509Response = (ent: Entitlement, bundle: Buffer): unknown => ({
    svids: ent.svids.map((s) => ({
      spiffe_id: s.spiffeId,
      x509_svid: derConcat(s.chainPem),
      x509_svid_key: pkcs8Der(s.keyPem),
      bundle,
      hint: '',
    })),
    crl: [],
    federated_bundles: {},
  });

  const bundleOf = (): { td: string; roots: Buffer; jwks: Buffer } => {
    const b = identities.store.bundles()!;
    return { td: trustDomainId(b.trustDomain), roots: derConcat(b.rootsPem), jwks: Buffer.from(b.jwks) };
  };

  return {
    FetchX509SVID(call: ServerWritableStream<unknown, unknown>): void {
      stream(call, (c) => x509Response(entitledOrThrow(c, identities, true), bundleOf().roots), 'FetchX509SVID');
    },

    FetchX509Bundles(call: ServerWritableStream<unknown, unknown>): void {
      stream(
        call,
        (c) => {
          entitledOrThrow(c, identities, false);
          const b = bundleOf();
          return { crl: [], bundles: { [b.td]: b.roots } };
        },
        'FetchX509Bundles',
      );
    },

    FetchJWTBundles(call: ServerWritableStream<unknown, unknown>): void {
      stream(
        call,
        (c) => {
          entitledOrThrow(c, identities, false);
          const b = bundleOf();
          return { bundles: { [b.td]: b.jwks } };
        },
        'FetchJWTBundles',
      );
    },

    FetchJWTSVID(
      call: ServerUnaryCall<{ audience: string[]; spiffe_id: string }, unknown>,
      cb: sendUnaryData<unknown>,
    ): void {
      void (async () => {
        const caller = await admit(call);
        const audience = call.request.audience ?? [];
        if (audience.length === 0 || audience.some((a) => a === ''))
          throw grpcError(status.INVALID_ARGUMENT, 'audience must be specified');
        const ent = entitledOrThrow(caller, identities, false);
        const wanted = call.request.spiffe_id
          ? ent.entries.filter((e) => e.spiffeId === call.request.spiffe_id)
          : ent.entries;
        if (wanted.length === 0)
          throw grpcError(
            status.PERMISSION_DENIED,
            `no identity issued: this process is not entitled to ${call.request.spiffe_id}`,
          );
        // The issuer re-checks, but the agent must not even ask for an audience the entry does not allow.
        const allowed = wanted.filter((e) => audience.every((a) => e.jwtAudiences.includes(a)));
        if (allowed.length === 0)
          throw grpcError(
            status.PERMISSION_DENIED,
            `no identity of this process may have a JWT-SVID for audience ${audience.join(', ')} (the entry's jwt_audiences do not list it)`,
          );
        const svids = [];
        for (const e of allowed) {
          try {
            const jwt = await identities.jwtFor(e, audience);
            svids.push({ spiffe_id: e.spiffeId, svid: jwt.token, hint: '' });
          } catch (err) {
            log.warn({ spiffe_id: e.spiffeId, err: (err as Error).message }, 'workload API: no JWT-SVID to serve');
          }
        }
        if (svids.length === 0)
          throw grpcError(
            status.UNAVAILABLE,
            'no JWT-SVID could be minted (the issuer is unreachable) and none is cached',
          );
        return { svids };
      })().then(
        (r) => cb(null, r),
        (e: unknown) => cb(e as Error),
      );
    },

    ValidateJWTSVID(
      call: ServerUnaryCall<{ audience: string; svid: string }, unknown>,
      cb: sendUnaryData<unknown>,
    ): void {
      void (async () => {
        checkHeader(call.metadata);
        const { audience, svid } = call.request;
        if (!audience) throw grpcError(status.INVALID_ARGUMENT, 'audience must be specified');
        if (!svid) throw grpcError(status.INVALID_ARGUMENT, 'svid must be specified');
        if (!identities.ready()) throw grpcError(status.UNAVAILABLE, 'the agent has no JWT bundle yet');
        const claims = await validateJwtSvid(svid, audience, identities.store.bundles()!);
        return { spiffe_id: claims.sub, claims: toStruct(claims) };
      })().then(
        (r) => cb(null, r),
        (e: unknown) => cb(e as Error),
      );
    },

    // WIT-SVID profile: optional, and Sigil does not implement it (§7: MUST answer Unimplemented).
    FetchWITSVID(call: ServerWritableStream<unknown, unknown>): void {
      call.emit('error', grpcError(status.UNIMPLEMENTED, 'the WIT-SVID profile is not supported'));
    },
    FetchWITBundles(call: ServerWritableStream<unknown, unknown>): void {
      call.emit('error', grpcError(status.UNIMPLEMENTED, 'the WIT-SVID profile is not supported'));
    },
  };
}

/**
 * JWT-SVID §7 validation with this trust domain's JWT bundle: signature by a bundle key, an
 * allowed algorithm, `aud` containing the validator's audience, `exp` present and not passed,
 * `sub` a SPIFFE ID in the bundle's trust domain (a token of another trust domain needs that
 * domain's bundle, which the agent does not have: untrusted, §7).
 */
async function validateJwtSvid(
  token: string,
  audience: string,
  bundle: { trustDomain: string; jwks: string },
): Promise<JWTPayload & { sub: string }> {
  let payload: JWTPayload;
  // jose (~25 ms of CPU to load) is loaded at the first validation, not before the socket serves.
  const { createLocalJWKSet, jwtVerify } = await import('jose');
  try {
    const jwks = createLocalJWKSet(jwtSvidKeys(bundle.jwks));
    ({ payload } = await jwtVerify(token, jwks, {
      audience,
      algorithms: JWT_ALGORITHMS,
      requiredClaims: ['sub', 'aud', 'exp'],
    }));
  } catch (e) {
    throw grpcError(status.INVALID_ARGUMENT, `the JWT-SVID is not valid: ${(e as Error).message}`);
  }
  let td: string;
  try {
    td = parseSpiffeId(String(payload.sub)).trustDomain;
  } catch (e) {
    throw grpcError(status.INVALID_ARGUMENT, `the JWT-SVID's sub is not a SPIFFE ID: ${(e as Error).message}`);
  }
  if (td !== bundle.trustDomain)
    throw grpcError(
      status.INVALID_ARGUMENT,
      `the JWT-SVID is from trust domain ${td}; the agent has the bundle of ${bundle.trustDomain} only`,
    );
  return payload as JWTPayload & { sub: string };
}

/**
 * The JWT-SVID keys of a SPIFFE bundle's JWKS: `use: "jwt-svid"` (SPIFFE_Trust_Domain_and_Bundle
 * §4.2.2; a key without `use` is taken as one), x509-svid keys left out. jose selects only keys
 * whose `use` is absent or "sig", so the SPIFFE use is dropped from the keys it is given.
 */
function jwtSvidKeys(jwksJson: string): JSONWebKeySet {
  const parsed = JSON.parse(jwksJson) as { keys?: Array<Record<string, unknown>> };
  const keys = (parsed.keys ?? [])
    .filter((k) => k['use'] === undefined || k['use'] === 'jwt-svid')
    .map(({ use: _use, ...k }) => k);
  return { keys } as unknown as JSONWebKeySet;
}

/**
 * JSON → google.protobuf.Struct. protobufjs defines the well-known types itself, with camelCase
 * field names whatever keepCase says; on the wire only the field numbers count.
 */
function toValue(v: unknown): unknown {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v as Record<string, unknown>) };
}

export function toStruct(o: Record<string, unknown>): unknown {
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toValue(v)])) };
}

/** The leaf's notAfter, for logs and `sigil agent workloads`. */
export function leafNotAfter(chainPem: string): string {
  return new Date(new X509Certificate(pemToDers(chainPem, 'CERTIFICATE')[0]!).validTo).toISOString();
}
