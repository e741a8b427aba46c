/**
 * Pushed events (issue #16, docs/events.md): what the issuer tells receivers that did not ask —
 * a webhook, an MQTT subscriber — when an instance stops being trustworthy or is trusted again.
 *
 * Each event is a JWS (compact serialization, RFC 7515 §7.1) signed by the issuer's serving key
 * exactly as its responses are (ES256, `x5c` = serving certificate + intermediate), with
 * `typ: sigil-event+jws`: a receiver verifies it against the trust bundle it already pins
 * (./verify.ts), so a forged webhook call or a message injected on the broker is refused, and the
 * typ keeps an event from ever passing as a response (or the reverse).
 *
 * Events are derived, never stored: from audit rows (./derive.ts) and from the CRL's changes. Their
 * id is a hash of what they were derived from (the audit row's chain hash; the revoked
 * certificate's serial and revocation time), so two issuers on one PostgreSQL store, or a retry,
 * send the same id for the same fact: receivers deduplicate by id.
 */
import { createHash } from 'node:crypto';
import { signJwsWithKey } from '../../protocol/jws.js';
import type { ServerIdentity } from '../issuer.js';

export const TYP_EVENT = 'sigil-event+jws';
/** The payload's version: a receiver refuses one it does not know. */
export const EVENT_VERSION = 1;

export const EVENT_TYPES = [
  'instance_locked',
  'instance_unlocked',
  'certificate_revoked',
  'attestation_failed',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The signed payload (docs/events.md "Schema"). */
export interface SigilEvent {
  v: typeof EVENT_VERSION;
  /** `evt_` + 32 hex: stable for one fact (see the file comment). */
  id: string;
  type: EventType;
  /** When it happened (the audit row's time; for certificate_revoked, the revocation time), ISO 8601. */
  time: string;
  /** When this envelope was signed, seconds since the epoch: a receiver refuses old ones. */
  iat: number;
  trust_domain: string;
  instance_id: string | null;
  bot: string | null;
  /** The audit row it was derived from (`sigil ctl audit` shows it), when there is one. */
  audit_seq?: number;
  /** Type-specific facts (docs/events.md). */
  data: Record<string, unknown>;
}

/** What an event says before it is signed. */
export type EventFact = Omit<SigilEvent, 'v' | 'id' | 'iat' | 'trust_domain'> & {
  /** What the id is derived from: the same fact gives the same id wherever it is derived. */
  idSource: string;
};

export function eventId(type: EventType, source: string): string {
  return `evt_${createHash('sha256').update(`${type}\n${source}`).digest('hex').slice(0, 32)}`;
}

/** Sign a fact as the issuer; returns the compact JWS and the payload. */
export function signEvent(
  server: Pick<ServerIdentity, 'key' | 'chainDer'>,
  trustDomain: string,
  fact: EventFact,
  now: number,
): { jws: string; event: SigilEvent } {
  const { idSource, ...rest } = fact;
  const event: SigilEvent = {
    v: EVENT_VERSION,
    id: eventId(fact.type, idSource),
    ...rest,
    iat: Math.floor(now / 1000),
    trust_domain: trustDomain,
  };
  const j = signJwsWithKey(server.key, 'ES256', TYP_EVENT, event, server.chainDer);
  return { jws: `${j.protected}.${j.payload}.${j.signature}`, event };
}
