/**
 * The issuer's operations, declared once (issue #13; docs/operations.md). A transport is a thin
 * adapter that loops over this table: the HTTPS server registers one route per entry
 * (transport/https/server.ts), the MQTT responder dispatches by it (transport/mqtt/responder.ts).
 * So every operation works over every transport, and a rule (where an answer may go, what is
 * rate limited, what is audited) is written here once instead of once per carrier.
 *
 * The names come from protocol/messages.ts OPS; the table is keyed by them, so the compiler
 * refuses an operation without an entry.
 *
 * Refusals: over HTTPS a plain {code, message, retryable} body (TLS to the pinned CA protects
 * it); over MQTT, whose broker is untrusted for integrity, every operation's refusal is signed
 * and bound to its request (./respond.ts signErrorResponse): {@link SIGNED_REFUSALS}.
 */
import type { Jws } from '../../protocol/jws.js';
import { isOp, OPS, type Op } from '../../protocol/messages.js';
import type { IssuerContext } from '../issuer.js';
import type { Carrier } from './agent-facts.js';
import type { OpHooks } from './authenticate.js';
import { handleAttest } from './attest.js';
import { handleBundle } from './bundle.js';
import { handleCredential } from './credential.js';
import { handleJoin } from './join.js';
import { handleRenew } from './renew.js';
import { handleWorkload } from './workload.js';

/**
 * Where an answer may go on a carrier whose reply address the requester chooses (an MQTT v5
 * Response Topic is not covered by any signature: transport/mqtt/answer-topic.ts):
 *
 *   bootstrap   only a bootstrap topic (nobody is authenticated yet; bootstrap topics belong to
 *               no instance)
 *   signer      only the topic of the instance whose chain AND signature verified (the
 *               handler's onAuthenticated hook); a request that does not authenticate is not
 *               answered at all
 *   any         a bootstrap or an instance topic (public, unbound data)
 */
export type AnswerRule = 'bootstrap' | 'signer' | 'any';

/** One request as an adapter hands it to an operation. */
export interface OpRequest {
  /** The parsed JSON body (undefined for an operation that takes none). */
  body: unknown;
  /** The caller's address for audit and logs (HTTPS: IP; MQTT: `mqtt:<response topic>`). */
  remote: string | null;
  /**
   * Whether the carrier is confidential end to end between agent and issuer: HTTPS is (TLS to
   * the pinned CA); MQTT is not (the broker, and every peer allowed to read response topics,
   * sees the bytes). Secret-bearing answers over a non-confidential carrier must be encrypted
   * to the requester (./credential.ts answer_key).
   */
  confidential: boolean;
  /** The adapter that carried it: recorded for the fleet view (join, renew: ./agent-facts.ts). */
  carrier: Carrier;
  /**
   * The requester's nonce of an operation that takes no signed envelope (`bundle` over MQTT:
   * `{v, op, nonce}`), echoed in the signed answer so that an old answer cannot be replayed to it.
   */
  nonce?: string;
  hooks?: OpHooks;
}

export interface Operation {
  readonly name: Op;
  /** A signed envelope in the request (HTTPS POST); `bundle` takes none (HTTPS GET). */
  readonly takesBody: boolean;
  readonly answerTo: AnswerRule;
  /**
   * Limited per source before the handler runs: an unauthenticated request whose checks are
   * costly (join methods call out to clouds, verify TPM quotes).
   */
  readonly rateLimited: boolean;
  /**
   * Audited: every answer is recorded with its audit row in the issuing transaction, and every
   * refusal is audited (./refusal.ts) — also one an adapter makes before the handler runs
   * (malformed JSON, too large). `bundle` serves public data and is only counted in metrics.
   */
  readonly audited: boolean;
  handle(ctx: IssuerContext, req: OpRequest): Promise<Jws>;
}

/** Refusals are signed on the carriers that are untrusted for integrity (see the module comment). */
export const SIGNED_REFUSALS: Readonly<Record<Carrier, boolean>> = { https: false, mqtt: true };

export const OPERATIONS: Readonly<Record<Op, Operation>> = {
  join: {
    name: 'join',
    takesBody: true,
    answerTo: 'bootstrap',
    rateLimited: true,
    audited: true,
    handle: (ctx, r) => handleJoin(ctx, r.body, r.remote, r.carrier),
  },
  renew: {
    name: 'renew',
    takesBody: true,
    answerTo: 'signer',
    rateLimited: false,
    audited: true,
    handle: (ctx, r) => handleRenew(ctx, r.body, r.remote, r.hooks, r.carrier),
  },
  credential: {
    name: 'credential',
    takesBody: true,
    answerTo: 'signer',
    rateLimited: false,
    audited: true,
    handle: (ctx, r) =>
      handleCredential(ctx, r.body, r.remote, { confidential: r.confidential, ...(r.hooks ? { hooks: r.hooks } : {}) }),
  },
  bundle: {
    name: 'bundle',
    takesBody: false,
    answerTo: 'any',
    rateLimited: false,
    audited: false,
    handle: async (ctx, r) => handleBundle(ctx, r.nonce),
  },
  // Workload registration entries and their SVIDs (issue #17; docs/workload-registration.md).
  workload: {
    name: 'workload',
    takesBody: true,
    answerTo: 'signer',
    rateLimited: false,
    audited: true,
    handle: (ctx, r) =>
      handleWorkload(ctx, r.body, r.remote, { confidential: r.confidential, ...(r.hooks ? { hooks: r.hooks } : {}) }),
  },
  // Boot state re-proven on the agent's interval, independent of renewal (issue #16; docs/attest-interval.md).
  attest: {
    name: 'attest',
    takesBody: true,
    answerTo: 'signer',
    rateLimited: false,
    audited: true,
    handle: (ctx, r) => handleAttest(ctx, r.body, r.remote, r.hooks),
  },
};

/** The table in protocol order, for adapters that register one route or topic per operation. */
export const OPERATION_LIST: readonly Operation[] = OPS.map((op) => OPERATIONS[op]);

/** The operation named `name` (an MQTT topic level, an HTTPS path segment), or undefined. */
export function operationNamed(name: string | undefined): Operation | undefined {
  return isOp(name) ? OPERATIONS[name] : undefined;
}
