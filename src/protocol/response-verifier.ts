/**
 * Verify an issuer response envelope on the agent: x5c chains to the pinned root, the signer
 * is the issuer (SPIFFE ID spiffe://<td>/sigil/issuer), the signature holds, and the payload
 * answers *this* request. This is what makes an untrusted carrier (an MQTT broker) harmless.
 *
 * This module knows the identity operations' answers (join, renew, bundle: messages.ts, built
 * for each check rather than kept: a daemon verifies a few answers a day). The
 * answers of `credential`, `workload` and `attest` are validated with schemas the code that sends
 * those requests hands over ({@link ResponseVerifier.know}): an agent without credential outputs,
 * Workload API or interval attestation never builds those ~250 zod schemas (issue #19: the
 * daemon's memory). ./verify-response.ts is the everything-known front for the issuer's tools and
 * tests.
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { z } from 'zod';
import type * as core from 'zod/v4/core';
import { SigilError } from '../errors.js';
import { expectedIssuerId, spiffeIdOf, spkiPin, verifyChain } from '../pki/chain.js';
import { fromPem, toPem } from '../pki/pem.js';
import { serialKey } from '../pki/serial-key.js';
import type { attestResponseSchema } from './attest-messages.js';
import type { credentialResponseSchema } from './credential-messages.js';
import { b64u, parseJws, verifyJws, x5cDers } from './jws.js';
import { errorResponseSchema, identityResponseSchemas, parseWith, TYP_RESPONSE } from './messages.js';
import type { workloadResponseSchema } from './workload-messages.js';

/** The answers of the operations outside messages.ts, known once their sender hands them over. */
export interface LaterSchemas {
  credential: typeof credentialResponseSchema;
  workload: typeof workloadResponseSchema;
  attest: typeof attestResponseSchema;
}
/** Every success an agent may verify: identity ops (messages.ts), `credential`, `workload` and `attest`. */
export type ResponseSchemas = ReturnType<typeof identityResponseSchemas> & LaterSchemas;
export type Op = keyof ResponseSchemas;
export type Success<O extends Op> = z.infer<ResponseSchemas[O]>;

/** How long a verified signer chain may be reused, and for which bytes (see {@link ResponseVerifier}). */
interface VerifiedSigner {
  leaf: X509Certificate;
  notBefore: number;
  notAfter: number;
  /** The serials of the path below the root (RootCrl form: pki/root-crl.ts serialKey). */
  serials: string[];
}
const MAX_VERIFIED_SIGNERS = 16;

function signerKey(rootPem: string, ders: Buffer[]): string {
  const h = createHash('sha256').update(rootPem);
  for (const d of ders) h.update(String(d.length)).update(':').update(d);
  return h.digest('hex');
}

/**
 * Verifies issuer answers, remembering the signer chains it already verified, by (pinned root,
 * x5c): the issuer signs every response with the same leaf, so after the first response only the
 * signature is re-checked — the OpenSSL path validation (~1.5 ms) ran three times per TPM join
 * before (bench/tpm-join.ts). An entry is used only while `now` lies inside every certificate's
 * validity window of that path; outside it the chain is validated again, which yields the
 * precise refusal. Keyed by the exact bytes, so a different root or chain never hits; bounded,
 * oldest entry evicted. One per agent (its IssuerLink owns it): nothing is shared between two
 * agents, or two configurations, in one process.
 */
export class ResponseVerifier {
  readonly #signers = new Map<string, VerifiedSigner>();
  readonly #issuerIds = new Map<string, string>();
  readonly #known: Known;
  #revoked: () => ReadonlySet<string> = () => EMPTY;

  /**
   * `known`: answer schemas known from the start — those of operations outside messages.ts
   * (default: none yet), and optionally the identity answers (`identityResponseSchemas()`), which
   * are otherwise built for each check: a verifier that checks many answers a second (a load
   * generator, a tool) keeps them; an agent daemon, which checks a few a day, does not.
   */
  constructor(known: Known = {}) {
    this.#known = { ...known };
  }

  /**
   * The serials the pinned root revoked (its CRL, as the agent keeps it: agent/root-crl-state.ts):
   * an answer whose signer chains through one of them is refused — a stolen intermediate key,
   * revoked with `rotate-intermediate --revoke-old`, could otherwise answer as the issuer.
   */
  revocations(fn: () => ReadonlySet<string>): this {
    this.#revoked = fn;
    return this;
  }

  /** Learn the answer schema of an operation outside messages.ts (its sender calls this before sending). */
  know(later: Partial<LaterSchemas>): this {
    Object.assign(this.#known, later);
    return this;
  }

  /** A success answering this request (its id), or response_invalid. */
  response<O extends Op>(
    body: unknown,
    op: O,
    requestId: string | null,
    rootPem: string,
    now: Date = new Date(),
  ): Success<O> {
    return checkSuccess(this.#known, this.#verifySigned(body, rootPem, now), op, requestId);
  }

  /** A success, or the signed refusal for this request thrown (see {@link verifyResponseOrError}). */
  responseOrError<O extends Op>(
    body: unknown,
    op: O,
    requestId: string | null,
    requestHash: string | null,
    rootPem: string,
    now: Date = new Date(),
  ): Success<O> {
    return successOrRefusal(this.#known, this.#verifySigned(body, rootPem, now), op, requestId, requestHash);
  }

  /** A join step: the identity, or a challenge (see {@link verifyJoinStep}). */
  joinStep(
    body: unknown,
    requestId: string,
    rootPem: string,
    opts: { requestHash?: string | null; now?: Date } = {},
  ): JoinStep {
    const payload = this.#verifySigned(body, rootPem, opts.now ?? new Date());
    if (
      payload &&
      typeof payload === 'object' &&
      'challenge' in payload &&
      !('result' in payload) &&
      !('error' in payload)
    ) {
      return { kind: 'challenge', payload: checkSuccess(this.#known, payload, 'join_challenge', requestId) };
    }
    return {
      kind: 'identity',
      payload: successOrRefusal(this.#known, payload, 'join', requestId, opts.requestHash ?? null),
    };
  }

  /** Check the envelope's signer and signature; returns the (unvalidated) payload. */
  #verifySigned(body: unknown, rootPem: string, now: Date): unknown {
    const { jws, header } = parseJws(body, 'response_invalid');
    if (header.typ !== TYP_RESPONSE)
      throw new SigilError('response_invalid', `response typ is ${header.typ}, expected ${TYP_RESPONSE}`);
    const ders = x5cDers(header);
    if (ders.length === 0) throw new SigilError('response_invalid', 'response carries no signer chain');
    return verifyJws(jws, header, this.#signer(rootPem, ders, now).publicKey, 'response_invalid').payload;
  }

  /** The verified signer certificate of `ders` under `rootPem` at `now` (cached; see the class comment). */
  #signer(rootPem: string, ders: Buffer[], now: Date): X509Certificate {
    const key = signerKey(rootPem, ders);
    const t = now.getTime();
    const hit = this.#signers.get(key);
    if (hit && t >= hit.notBefore && t <= hit.notAfter) return this.#notRevoked(hit);
    let path;
    try {
      path = verifyChain({
        leaf: ders[0]!,
        intermediates: ders.slice(1),
        roots: [fromPem(rootPem, 'CERTIFICATE')],
        at: now,
      }).path;
    } catch (e) {
      const msg = (e as Error).message;
      // A signer "not valid before" a time the issuer already reached means this clock is behind.
      const clock = /not valid before/.test(msg)
        ? ` (is this machine's clock right? it reads ${now.toISOString()})`
        : '';
      throw new SigilError(
        'response_invalid',
        `response signer does not chain to the pinned issuer CA: ${msg}${clock}`,
      );
    }
    // Exact match on spiffe://<td>/sigil/issuer, <td> from the pinned root: a bot identity can never pass.
    let want = this.#issuerIds.get(rootPem);
    if (want === undefined) this.#issuerIds.set(rootPem, (want = expectedIssuerId(rootPem)));
    const leaf = path[0]!;
    if (spiffeIdOf(leaf) !== want)
      throw new SigilError('response_invalid', `response is not signed by the issuer identity ${want}`);
    const entry = {
      leaf,
      notBefore: Math.max(...path.map((c) => Date.parse(c.validFrom))),
      notAfter: Math.min(...path.map((c) => Date.parse(c.validTo))),
      // The certificate the root issued on this path (the intermediate): the root CRL's entries
      // are serials the ROOT issued, so a leaf's serial is another namespace (review).
      serials: path.length >= 2 ? [serialKey(path[path.length - 2]!.serialNumber)] : [],
    };
    if (this.#signers.size >= MAX_VERIFIED_SIGNERS) this.#signers.delete(this.#signers.keys().next().value!);
    if (this.#issuerIds.size > MAX_VERIFIED_SIGNERS) this.#issuerIds.clear();
    this.#signers.set(key, entry);
    return this.#notRevoked(entry);
  }

  /** The signer's leaf, unless the root revoked a certificate of its path. */
  #notRevoked(s: VerifiedSigner): X509Certificate {
    const revoked = this.#revoked();
    if (revoked.size > 0 && s.serials.some((n) => revoked.has(n)))
      throw new SigilError(
        'response_invalid',
        'response is signed under an intermediate CA the pinned root revoked (its CRL lists it): not the issuer',
      );
    return s.leaf;
  }
}

type Known = Partial<ResponseSchemas>;
const EMPTY: ReadonlySet<string> = new Set();

/** The answer schema of `op`: the one handed over, else an identity operation's built for this check (messages.ts). */
function schemaOf(known: Known, op: Op): core.$ZodType | undefined {
  const handed = known[op];
  if (handed || op === 'credential' || op === 'workload' || op === 'attest') return handed;
  return identityResponseSchemas()[op];
}

function checkSuccess<O extends Op>(
  schemas: Known,
  payload: unknown,
  op: O,
  requestId: string | null,
  requestHash: string | null = null,
): Success<O> {
  const schema = schemaOf(schemas, op);
  // Read before the schema, which drops members it does not name (and an older issuer sends none).
  const boundTo =
    payload && typeof payload === 'object' ? (payload as { request_hash?: unknown }).request_hash : undefined;
  // A programming error, not the issuer's: the sender of `op` did not hand its schema over.
  if (!schema) throw new TypeError(`ResponseVerifier: no answer schema for ${op}; call know() first`);
  const p = parseWith(schema, payload, 'response_invalid', `${op} response`) as {
    request_id: string | null;
  };
  if (p.request_id !== requestId)
    throw new SigilError(
      'response_invalid',
      `response answers request ${String(p.request_id)}, expected ${String(requestId)}`,
    );
  // The exact signed request answered, not only its id (review of issue #16): whoever saw a
  // request on its way (an MQTT broker) could send the issuer a request of its own under the
  // same id first and hand the victim that answer — a peer's workload entries, say. An issuer
  // from before the binding sends no request_hash; one that sends it is held to it.
  if (boundTo !== undefined && (typeof boundTo !== 'string' || (requestHash !== null && boundTo !== requestHash)))
    throw new SigilError(
      'response_invalid',
      `response answers another request under the id ${String(requestId)} (request_hash differs); ignoring it`,
    );
  return p as Success<O>;
}

/** The verified payload as the success it must be, or its signed refusal thrown (see above). */
function successOrRefusal<O extends Op>(
  schemas: Known,
  payload: unknown,
  op: O,
  requestId: string | null,
  requestHash: string | null,
): Success<O> {
  if (!payload || typeof payload !== 'object' || !('error' in payload))
    return checkSuccess(schemas, payload, op, requestId, requestHash);
  const p = parseWith(errorResponseSchema(), payload, 'response_invalid', `${op} error response`);
  if (p.op !== op) throw new SigilError('response_invalid', `refusal answers a ${p.op} request, expected ${op}`);
  if (p.request_id !== requestId || (requestHash !== null && p.request_hash !== requestHash)) {
    throw new SigilError(
      'response_invalid',
      `signed refusal (${p.error.code}) is not bound to request ${String(requestId)}; ignoring it`,
    );
  }
  throw SigilError.fromWire({
    code: p.error.code,
    message: p.error.message,
    retryable: p.error.retryable,
    ...(p.error.retry_after_ms !== undefined ? { retryAfterMs: p.error.retry_after_ms } : {}),
  });
}

/**
 * First contact over a carrier without pinned TLS (MQTT): pick, from a `bundle` response, the
 * root whose SubjectPublicKeyInfo hash is the configured pin — a self-signed CA — and verify the
 * response's signature under it. No trust on first use: a bundle without the pinned root, or
 * signed by anything that does not chain to it, is refused. `body` may also be a bare
 * `{roots}` object (a root remembered from an earlier contact, re-checked against the pin).
 */
export function pinnedRootFromBundle(body: unknown, pin: string, now: Date = new Date()): string {
  let roots: unknown;
  const bare = body && typeof body === 'object' && 'roots' in body && !('payload' in body);
  if (bare) roots = (body as { roots: unknown }).roots;
  else {
    try {
      const { jws } = parseJws(body, 'response_invalid');
      const p = JSON.parse(b64u.decode(jws.payload).toString('utf8')) as {
        result?: { roots?: unknown };
        error?: unknown;
      };
      if (p && typeof p === 'object' && 'error' in p) {
        // A refusal is only believable once verified, and we have nothing to verify it with yet.
        throw new SigilError(
          'issuer_unreachable',
          'the issuer answered the bundle request with an (unverifiable) refusal',
        );
      }
      roots = p?.result?.roots;
    } catch (e) {
      if (e instanceof SigilError) throw e;
      throw new SigilError('response_invalid', 'the bundle response payload is not JSON');
    }
  }
  if (!Array.isArray(roots)) throw new SigilError('response_invalid', 'the bundle response carries no roots');
  for (const pem of roots) {
    if (typeof pem !== 'string') continue;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      continue;
    }
    if (spkiPin(cert) !== pin) continue;
    if (!cert.ca || !cert.checkIssued(cert) || !cert.verify(cert.publicKey))
      throw new SigilError('pin_mismatch', 'the pinned certificate is not a self-signed CA');
    const rootPem = toPem('CERTIFICATE', cert.raw);
    if (!bare) new ResponseVerifier().response(body, 'bundle', null, rootPem, now);
    return rootPem;
  }
  throw new SigilError(
    'pin_mismatch',
    `no root in the issuer's bundle matches ca_pin ${pin}; check the pin printed by \`sigil server init\``,
  );
}

/** What a join request is answered with: the identity, or a challenge to answer first. */
export type JoinStep =
  { kind: 'identity'; payload: Success<'join'> } | { kind: 'challenge'; payload: Success<'join_challenge'> };

/**
 * Verify the answer to a join request. A method with a challenge round (x509) answers the
 * first request with a signed challenge (messages.ts JoinChallenge) instead of the identity;
 * everything else is exactly {@link verifyResponseOrError} (`requestHash` null over HTTPS,
 * where refusals are plain bodies). `opts.verifier`: a caller's {@link ResponseVerifier} whose
 * cache to use (default: a one-off one).
 */
export function verifyJoinStep(
  body: unknown,
  requestId: string,
  rootPem: string,
  opts: { requestHash?: string | null; now?: Date; verifier?: ResponseVerifier } = {},
): JoinStep {
  return (opts.verifier ?? new ResponseVerifier()).joinStep(body, requestId, rootPem, opts);
}
