/**
 * A webhook receiver: each event is POSTed as `application/jose` (RFC 7515 §9.2.1: the compact
 * JWS is the body) to an https:// URL. The receiver's certificate is checked against the CA file
 * given for webhooks, else the system's CAs. A 2xx is delivered; a network error, a timeout, a
 * 408, 429 or 5xx is retried (./delivery.ts); any other status is the receiver refusing the event
 * for good (a dead letter, not retried). The answer's body is discarded. The whole exchange has
 * one deadline, so a receiver that trickles bytes cannot hold the queue longer than a dead one.
 */
import { request } from 'node:https';
import { SigilError } from '../../errors.js';
import { DeliveryError, type EventSink } from './delivery.js';
import type { SigilEvent } from './event.js';

export const WEBHOOK_TIMEOUT_MS = 10_000;

export interface WebhookConfig {
  url: string;
  /** PEM CA certificates for the receiver's TLS certificate; default the system's. */
  ca?: string;
  timeoutMs?: number;
}

/** `--event-webhook URL`: https only, no credentials in the URL (they would be logged and in metrics). */
export function parseWebhookUrl(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new SigilError('config_invalid', `--event-webhook ${raw}: not a URL`);
  }
  if (u.protocol !== 'https:')
    throw new SigilError('config_invalid', `--event-webhook ${u.origin}: only https:// webhooks are supported`);
  if (u.username || u.password)
    throw new SigilError(
      'config_invalid',
      '--event-webhook: no credentials in the URL (receivers authenticate the issuer by the event signature)',
    );
  return u;
}

export class WebhookSink implements EventSink {
  readonly name: string;
  readonly #url: URL;

  constructor(private readonly cfg: WebhookConfig) {
    this.#url = parseWebhookUrl(cfg.url);
    // The origin and path only: a query string may carry a receiver's token.
    this.name = `${this.#url.origin}${this.#url.pathname}`;
  }

  send(jws: string, event: SigilEvent): Promise<void> {
    const body = Buffer.from(jws, 'ascii');
    return new Promise<void>((resolve, reject) => {
      const deadline = this.cfg.timeoutMs ?? WEBHOOK_TIMEOUT_MS;
      const req = request(
        this.#url,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/jose',
            'content-length': body.length,
            'x-sigil-event-id': event.id,
            'x-sigil-event-type': event.type,
          },
          ...(this.cfg.ca !== undefined ? { ca: this.cfg.ca } : {}),
          timeout: deadline,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            const s = res.statusCode ?? 0;
            if (s >= 200 && s < 300) resolve();
            else reject(new DeliveryError(`HTTP ${s}`, !(s === 408 || s === 429 || s >= 500)));
          });
          res.on('error', (e) => reject(new DeliveryError(e.message)));
        },
      );
      const timer = setTimeout(() => req.destroy(new Error(`no complete answer within ${deadline} ms`)), deadline);
      timer.unref();
      req.on('close', () => clearTimeout(timer));
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (e) => reject(new DeliveryError((e as NodeJS.ErrnoException).code ?? e.message)));
      req.end(body);
    });
  }
}
