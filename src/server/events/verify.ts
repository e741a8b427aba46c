/**
 * Verifying a pushed event (./event.ts) as a receiver does (docs/events.md "Verifying"): the
 * envelope is a compact JWS of typ `sigil-event+jws`; its x5c chains to the pinned root; the
 * signer is the issuer identity spiffe://<td>/sigil/issuer (a bot's certificate from the same CA
 * cannot sign events); the signature holds; the payload is a version-1 event of the root's trust
 * domain, signed at most `maxAgeS` ago. Deduplicating by `id` is the receiver's part (a replay of
 * a fresh event is the same event again).
 */
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { expectedIssuerId, spiffeIdOf, verifyChain } from '../../pki/chain.js';
import { fromPem } from '../../pki/pem.js';
import { parseJws, verifyJws, x5cDers } from '../../protocol/jws.js';
import { parseWith } from '../../protocol/messages.js';
import { EVENT_TYPES, EVENT_VERSION, TYP_EVENT, type SigilEvent } from './event.js';

/** Default freshness a receiver asks for: older envelopes are refused as replays. */
export const DEFAULT_EVENT_MAX_AGE_S = 3600;
/** Envelopes signed this far in the issuer's future are still taken (clock skew). */
const FUTURE_SKEW_S = 300;

const eventSchema = z.strictObject({
  v: z.literal(EVENT_VERSION),
  id: z.string().regex(/^evt_[0-9a-f]{32}$/),
  type: z.enum(EVENT_TYPES),
  time: z.string().datetime(),
  iat: z.number().int().nonnegative(),
  trust_domain: z.string().min(1).max(255),
  instance_id: z.string().max(256).nullable(),
  bot: z.string().max(256).nullable(),
  audit_seq: z.number().int().nonnegative().optional(),
  data: z.record(z.string(), z.unknown()),
});

export function verifyEvent(compact: string, rootPem: string, opts: { now?: Date; maxAgeS?: number } = {}): SigilEvent {
  const now = opts.now ?? new Date();
  const parts = compact.trim().split('.');
  if (parts.length !== 3) throw new SigilError('event_invalid', 'an event is a compact JWS: three base64url parts');
  const { jws, header } = parseJws({ protected: parts[0], payload: parts[1], signature: parts[2] }, 'event_invalid');
  if (header.typ !== TYP_EVENT)
    throw new SigilError('event_invalid', `JWS typ is ${header.typ}, expected ${TYP_EVENT}`);
  const ders = x5cDers(header);
  if (ders.length === 0) throw new SigilError('event_invalid', 'the event carries no signer chain (x5c)');
  let leaf: X509Certificate;
  try {
    leaf = verifyChain({
      leaf: ders[0]!,
      intermediates: ders.slice(1),
      roots: [fromPem(rootPem, 'CERTIFICATE')],
      at: now,
    }).path[0]!;
  } catch (e) {
    throw new SigilError(
      'event_invalid',
      `the event signer does not chain to the pinned root: ${(e as Error).message}`,
    );
  }
  const want = expectedIssuerId(rootPem);
  if (spiffeIdOf(leaf) !== want) throw new SigilError('event_invalid', `the event is not signed by ${want}`);
  const payload = verifyJws(jws, header, leaf.publicKey, 'event_invalid').payload;
  const ev = parseWith(eventSchema, payload, 'event_invalid', 'event') as SigilEvent;
  if (`spiffe://${ev.trust_domain}/sigil/issuer` !== want)
    throw new SigilError('event_invalid', `the event names trust domain ${ev.trust_domain}, not the root's`);
  const age = now.getTime() / 1000 - ev.iat;
  const maxAge = opts.maxAgeS ?? DEFAULT_EVENT_MAX_AGE_S;
  if (age > maxAge)
    throw new SigilError(
      'event_invalid',
      `the event was signed ${Math.round(age)} s ago (more than ${maxAge} s): a replay?`,
    );
  if (age < -FUTURE_SKEW_S) throw new SigilError('event_invalid', 'the event was signed in the future');
  return ev;
}
