/**
 * What one client may hold of the issuer's HTTPS listener: how long a connection may stay
 * idle, trickle its headers or take over a request, how many connections one source address
 * may keep open, and how fast it may call `join` (server/rate-limit.ts).
 *
 * Why: fastify's defaults are connectionTimeout 0 and requestTimeout 0, so a client that
 * completes a TLS handshake and then says nothing (or one header byte a second: slowloris)
 * held ~26 KB of server memory and a file descriptor for as long as it liked (issue #11 item 8,
 * measured 330 s and counting). All values are `sigil server start` flags (docs/configuration.md).
 */
import type { Server } from 'node:net';
import type { Logger } from '../../util/log.js';

export interface HttpLimits {
  /** A connection with no request yet, or idle on its socket, is closed after this (ms). */
  idleTimeoutMs: number;
  /** Headers of a request (and the TLS handshake) must be complete within this (ms). */
  headersTimeoutMs: number;
  /** A whole request, body included, must arrive within this (ms); ≥ headersTimeoutMs. */
  requestTimeoutMs: number;
  /** A kept-alive connection is closed this long after its last response (ms). */
  keepAliveTimeoutMs: number;
  /** Open connections per remote address; more are closed at once. 0: no cap. */
  maxConnsPerSource: number;
  /** `POST /v1/join` per remote address: sustained per second (0: no limit) and burst. */
  joinRatePerS: number;
  joinBurst: number;
}

/**
 * Agents make a request every ~30 minutes and are done in well under a second; 10 s to send
 * headers is generous on a slow cellular link (RFC 9112 gives no number; nginx uses 60 s for
 * client_header_timeout, but it multiplexes for browsers). A TPM join does several rounds of
 * POST /v1/join (challenge answers), and many devices may sit behind one NAT address (a
 * factory line, a site coming back after a power cut: a test fleet of 20 re-joining x509+tpm
 * devices tripped 10/s): 50/s sustained with a burst of 200 stays out of a fleet's way and still
 * caps a single source at a small share of the issuer (a join costs ~2-5 ms of CPU).
 */
export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  idleTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 10_000,
  maxConnsPerSource: 64,
  joinRatePerS: 50,
  joinBurst: 200,
};

/**
 * Count open TCP connections per remote address and close the ones over `max` as soon as they
 * are accepted, before the TLS handshake costs us anything. Prepended so it runs before the TLS
 * server wraps the socket.
 */
export function trackConnectionsPerSource(server: Server, max: number, log: Logger): void {
  if (max <= 0) return;
  const open = new Map<string, number>();
  server.prependListener('connection', (socket) => {
    const addr = socket.remoteAddress;
    if (addr === undefined) {
      socket.destroy(); // already gone
      return;
    }
    const n = open.get(addr) ?? 0;
    if (n >= max) {
      log.debug({ remote: addr, open: n }, 'connection over the per-source cap closed');
      socket.destroy();
      return;
    }
    open.set(addr, n + 1);
    socket.once('close', () => {
      const left = (open.get(addr) ?? 1) - 1;
      if (left <= 0) open.delete(addr);
      else open.set(addr, left);
    });
  });
}
