/**
 * The seam between the agent and whatever carries its requests to an issuer (HTTPS, MQTT).
 * A transport only moves bytes: it returns the issuer's answer as parsed JSON and never decides
 * whether to believe it — the agent verifies every answer against the pinned CA
 * (protocol/verify-response.ts), so a transport through an untrusted broker is harmless.
 *
 * Failures a transport reports itself (cannot connect, timed out, broker refused the publish)
 * are SigilErrors, normally the retryable `issuer_unreachable`, so the agent can fail over to
 * the next transport and later resend the same request (same request id) idempotently.
 */
import type { Jws } from '../protocol/jws.js';
import type { RequestOp } from '../protocol/messages.js';

export type { RequestOp } from '../protocol/messages.js';
export type TransportKind = 'https' | 'mqtt';

export interface PostHooks {
  /**
   * Called once the request has left this process (HTTPS: body flushed to the socket; MQTT:
   * the broker acknowledged the publish). Used by the agent's test-only crash hooks.
   */
  sent?(): void;
}

export interface IssuerTransport {
  readonly kind: TransportKind;
  /** Where it connects, for logs, status and metrics (no credentials in it). */
  readonly url: string;
  /**
   * The issuer CA root (PEM) whose SPKI hash equals the configured pin, learned on first contact
   * without trusting the carrier (HTTPS: the presented TLS chain; MQTT: the signed bundle), or
   * the root given at construction.
   */
  ensureRoot(): Promise<string>;
  /**
   * Send a signed request of any operation (protocol/messages.ts OPS): every operation works
   * over every transport. Resolves with the answer body (success, or a signed refusal over MQTT).
   */
  post(op: RequestOp, envelope: Jws, hooks?: PostHooks): Promise<unknown>;
  /** The trust bundle response (signed), as JSON. */
  bundle(): Promise<unknown>;
  close(): void | Promise<void>;
}
