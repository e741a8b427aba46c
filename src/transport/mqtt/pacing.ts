/**
 * How an agent paces its connections to an MQTT broker (issue #14, reconnect storms).
 *
 * A broker listens with a fixed accept queue (mosquitto 2.0: 100 connections, hard-coded). When
 * a whole fleet loses the broker at once — a broker restart — and reconnects at once, the queue
 * overflows, the kernel drops the SYNs and retransmits them after 1, 3, 7, 15, 31, 63 s; a
 * device can sit a minute in that backoff before it has even connected (measured: 5,000 agents,
 * 33–63 s, up to 1,021 resends). Two rules keep a fleet out of it:
 *
 *  - **spread**: after losing a connection it had, an agent waits a random time, uniform in
 *    [0, spread), before it connects again. Spread in proportion to the fleet, the reconnects
 *    arrive at fleet/spread per second instead of all at once.
 *  - **short attempts**: each attempt (TCP + TLS + CONNACK + SUBACK) has its own timeout, and a
 *    failure that says "busy" (no answer in time, reset, CONNACK 0x88/0x89/0x97/0x9F) is retried
 *    after a jittered, doubling pause, inside the request's own timeout — instead of waiting on
 *    the kernel's SYN backoff. At most CONNECT_ATTEMPTS_MAX attempts per request: a hostile or
 *    broken broker cannot make agents hammer it (docs/mqtt.md, "Reconnect storms").
 *
 * Pure functions of an injected random source, so tests can pin them. The source is per agent
 * and unseeded (a CSPRNG draw), so no two devices share a schedule.
 */
import { randomInt } from 'node:crypto';

/** Default per-attempt connect timeout. Long enough for TLS over a slow uplink; short next to the kernel's SYN backoff. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const CONNECT_TIMEOUT_MIN_MS = 1_000;
export const CONNECT_TIMEOUT_MAX_MS = 60_000;

/** Default reconnect spread: a 5,000-agent fleet at DEFAULT_RECONNECT_RATE connects per second. */
export const DEFAULT_RECONNECT_SPREAD_MS = 10_000;
export const RECONNECT_SPREAD_MIN_MS = 0;
export const RECONNECT_SPREAD_MAX_MS = 3_600_000;
/**
 * Connections per second one broker takes from a reconnecting fleet without overflowing its
 * accept queue, and one issuer core renews (mosquitto 2.0.11, backlog 100; bench renew-mqtt).
 * Used to turn `reconnect.fleet_size` into a spread.
 */
export const DEFAULT_RECONNECT_RATE = 500;

/** Connection attempts per request, whatever the broker answers. */
export const CONNECT_ATTEMPTS_MAX = 5;
/** First pause between two attempts; it doubles per failed attempt (full jitter, floored). */
export const CONNECT_RETRY_BASE_MS = 500;
export const CONNECT_RETRY_FLOOR_MS = 100;
/** Never pause longer than this between attempts of one request. */
export const CONNECT_RETRY_CAP_MS = 8_000;

/** A uniform draw in [0, 1) from the CSPRNG: every agent its own, no shared seed. */
export const secureRandom = (): number => randomInt(0, 2 ** 47) / 2 ** 47;

/** The spread for a fleet of `fleetSize` agents reconnecting at `ratePerS` connects per second, in ms. */
export function spreadForFleet(fleetSize: number, ratePerS = DEFAULT_RECONNECT_RATE): number {
  const ms = Math.round((fleetSize / ratePerS) * 1000);
  return Math.min(RECONNECT_SPREAD_MAX_MS, Math.max(RECONNECT_SPREAD_MIN_MS, ms));
}

/** Wait before reconnecting after a lost connection: uniform in [0, spread). */
export function reconnectDelay(spreadMs: number, rand: () => number = secureRandom): number {
  return Math.floor(rand() * Math.max(0, spreadMs));
}

/**
 * Pause after failed attempt number `failed` (1 = the first failed): full jitter over a doubling
 * window, floored so that a draw near 0 is no busy loop, capped.
 */
export function connectRetryDelay(failed: number, rand: () => number = secureRandom): number {
  const window = Math.min(CONNECT_RETRY_CAP_MS, CONNECT_RETRY_BASE_MS * 2 ** Math.max(0, Math.min(failed - 1, 20)));
  return CONNECT_RETRY_FLOOR_MS + Math.floor(rand() * Math.max(0, window - CONNECT_RETRY_FLOOR_MS));
}

/** CONNACK reason codes that mean "not now" (MQTT v5 §3.2.2.2): worth another attempt. */
const BUSY_CONNACK = new Set([0x88, 0x89, 0x97, 0x9f]);
/** Socket errors of an overloaded or restarting broker that accepted, then dropped us. */
const BUSY_ERRNO = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

/**
 * Whether a failed attempt is worth retrying within the same request: the broker is there but
 * busy. Anything else — refused (nobody listening: fail over now), name not found, TLS or
 * authorization failures — ends the request at once, as before, so failover is not delayed.
 */
export function isBusyFailure(e: unknown): boolean {
  if (e === undefined) return true; // closed before CONNACK without an error: dropped
  const err = e as { code?: unknown; message?: unknown };
  if (typeof err.code === 'number') return BUSY_CONNACK.has(err.code);
  if (typeof err.code === 'string') return BUSY_ERRNO.has(err.code);
  return typeof err.message === 'string' && /connack timeout|connect timeout/i.test(err.message);
}
