/**
 * How the agent sends `credential` requests: over the configured HTTPS transports, in order,
 * failing over on retryable errors, each answer verified against the pinned root like every
 * other issuer answer (protocol/verify-response.ts). MQTT does not carry `credential` yet (the
 * responder answers join, renew and bundle), so MQTT-only agents cannot have credential outputs
 * (agent/credentials.ts says so at start).
 */
import { SigilError, toSigilError } from '../errors.js';
import type { CredentialResult } from '../protocol/credential-messages.js';
import type { Jws } from '../protocol/jws.js';
import { verifyResponse } from '../protocol/verify-response.js';
import { HttpsIssuerClient } from '../transport/https/client.js';

export interface CredentialClient {
  request(envelope: Jws, requestId: string, now: () => number): Promise<CredentialResult>;
  close(): void;
}

export class HttpsCredentialClient implements CredentialClient {
  readonly #clients: HttpsIssuerClient[];

  constructor(
    urls: Array<{ url: string; timeoutMs?: number }>,
    pin: string,
    private readonly rootPem: () => string | undefined,
  ) {
    if (urls.length === 0) throw new SigilError('config_invalid', 'credential outputs need an https transport to the issuer (MQTT does not carry credential requests)');
    this.#clients = urls.map((u) => new HttpsIssuerClient({ url: u.url, pin, ...(u.timeoutMs !== undefined ? { timeoutMs: u.timeoutMs } : {}) }));
  }

  async request(envelope: Jws, requestId: string, now: () => number): Promise<CredentialResult> {
    const failures: string[] = [];
    let last: SigilError | undefined;
    for (const c of this.#clients) {
      try {
        const body = await c.credential(envelope);
        const root = this.rootPem() ?? (await c.ensureRoot());
        return verifyResponse(body, 'credential', requestId, root, new Date(now())).result;
      } catch (err) {
        const e = toSigilError(err);
        if (!e.retryable) throw e;
        last = e;
        failures.push(`${c.url}: ${e.message}`);
      }
    }
    if (failures.length === 1) throw last!;
    throw new SigilError(last!.code, `no transport reached the issuer — ${failures.join('; ')}`, { cause: last });
  }

  close(): void {
    for (const c of this.#clients) c.close();
  }
}
