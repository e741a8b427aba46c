/**
 * Sigil's MQTT topic layout (ARCHITECTURE "Protocol sketch", docs/mqtt.md):
 *
 *   sigil/v1/<op>                      requests (QoS 1), MQTT v5 Response Topic + Correlation Data;
 *                                      <op> is one of protocol/messages.ts OPS (join, renew,
 *                                      credential, bundle)
 *   sigil/v1/resp/<instance id>        responses for a joined agent (its certificate's CN)
 *   sigil/v1/resp/bootstrap/<random>   responses before the first join
 *   $share/sigil/sigil/v1/+            the issuers' shared subscription: one issuer per request
 */
import { isOp, type Op } from '../../protocol/messages.js';

export const TOPIC_PREFIX = 'sigil/v1/';
export const RESPONSE_PREFIX = `${TOPIC_PREFIX}resp/`;
export const SHARED_GROUP = 'sigil';
export const REQUEST_FILTER = `${TOPIC_PREFIX}+`;
export const SHARED_REQUEST_FILTER = `$share/${SHARED_GROUP}/${REQUEST_FILTER}`;

/** Every operation has its request topic: the protocol's one list (protocol/messages.ts OPS). */
export type MqttOp = Op;

/** Same limit as the HTTPS body (transport/https/server.ts MAX_BODY_BYTES). */
export const MAX_MQTT_PAYLOAD = 64 * 1024;

export const requestTopic = (op: MqttOp): string => `${TOPIC_PREFIX}${op}`;

/** `sigil/v1/<op>` → op, or undefined for anything else (the responder answers not_found). */
export function opOfTopic(topic: string): string | undefined {
  return topic.startsWith(TOPIC_PREFIX) ? topic.slice(TOPIC_PREFIX.length) : undefined;
}

export const isMqttOp = (op: string | undefined): op is MqttOp => isOp(op);

/**
 * A response topic the issuer will publish to: under sigil/v1/resp/, at most three further
 * levels of [A-Za-z0-9_.-] (an instance id, or bootstrap/<random>), no wildcards, no empty
 * levels. Anything else is dropped unanswered: the issuer must never be steered into publishing
 * elsewhere (the broker's ACL is the second line: the issuer may write only sigil/v1/resp/#).
 */
const RESPONSE_TOPIC_RE = /^sigil\/v1\/resp\/[A-Za-z0-9_.-]{1,128}(\/[A-Za-z0-9_.-]{1,128}){0,2}$/;

export function isValidResponseTopic(t: unknown): t is string {
  return typeof t === 'string' && RESPONSE_TOPIC_RE.test(t);
}

/** Response id of a bootstrap (not yet joined) agent: `bootstrap/<random>`. */
export const bootstrapResponseId = (random: string): string => `bootstrap/${random}`;

/** Whose topic a (valid) response topic is: a joined instance's, or a bootstrap agent's. */
export type ResponseTarget = { kind: 'instance'; id: string } | { kind: 'bootstrap'; id: string };

/**
 * `sigil/v1/resp/<id>` (one level, not "bootstrap") → instance; `sigil/v1/resp/bootstrap/<id>`
 * → bootstrap; anything else (other depths) → undefined: no agent listens there.
 */
export function responseTarget(topic: string): ResponseTarget | undefined {
  if (!isValidResponseTopic(topic)) return undefined;
  const levels = topic.slice(RESPONSE_PREFIX.length).split('/');
  if (levels.length === 1 && levels[0] !== 'bootstrap') return { kind: 'instance', id: levels[0]! };
  if (levels.length === 2 && levels[0] === 'bootstrap') return { kind: 'bootstrap', id: levels[1]! };
  return undefined;
}
