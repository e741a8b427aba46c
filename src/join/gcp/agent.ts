/**
 * The agent half of the gcp join: ask the VM's metadata server for an identity token with the
 * issuer's audience and `format=full` (wire.ts), and send it. The endpoint is configurable so
 * tests can point the agent at a local fake metadata server.
 */
import { SigilError } from '../../errors.js';
import { describeHttpError, httpRequest } from '../http.js';
import type { EvidenceContext, JoinMethodAgent } from '../types.js';
import { METADATA_IDENTITY_PATH } from './wire.js';

export const DEFAULT_METADATA_ENDPOINT = 'http://metadata.google.internal';

export interface GcpJoinAgentOptions {
  /** The audience the issuer's gcp join rule expects. */
  audience: string;
  /** Metadata server base URL (default http://metadata.google.internal). */
  endpoint?: string;
  /** Service account whose identity token to request (default: the VM's default one). */
  serviceAccount?: string;
  timeoutMs?: number;
}

export class GcpJoinAgent implements JoinMethodAgent {
  readonly name = 'gcp';
  /** The VM can mint a fresh token at any time: it re-joins by itself. */
  readonly canReattest = true;
  readonly #o: Required<Omit<GcpJoinAgentOptions, 'timeoutMs'>> & { timeoutMs: number };

  constructor(o: GcpJoinAgentOptions) {
    if (o.audience.length === 0)
      throw new SigilError(
        'config_invalid',
        "join.gcp.audience is required (the audience of the issuer's gcp join rule)",
      );
    this.#o = {
      endpoint: (o.endpoint ?? DEFAULT_METADATA_ENDPOINT).replace(/\/+$/, ''),
      serviceAccount: o.serviceAccount ?? 'default',
      audience: o.audience,
      timeoutMs: o.timeoutMs ?? 5_000,
    };
  }

  /** The identity token, as the metadata server returns it. */
  async fetchToken(): Promise<string> {
    const q = new URLSearchParams({ audience: this.#o.audience, format: 'full' });
    const url = `${this.#o.endpoint}${METADATA_IDENTITY_PATH}/${encodeURIComponent(this.#o.serviceAccount)}/identity?${q.toString()}`;
    let res;
    try {
      res = await httpRequest({
        url,
        headers: { 'metadata-flavor': 'Google' },
        timeoutMs: this.#o.timeoutMs,
        maxBytes: 64 * 1024,
      });
    } catch (e) {
      throw new SigilError(
        'cloud_metadata_unavailable',
        `the GCE metadata server at ${this.#o.endpoint} cannot be reached (${describeHttpError(e)}); is this a Compute Engine VM?`,
      );
    }
    if (res.status !== 200)
      throw new SigilError(
        'cloud_metadata_unavailable',
        `the GCE metadata server answered the identity token request with HTTP ${res.status}${res.status === 404 ? ` (no service account "${this.#o.serviceAccount}" on this VM?)` : ''}`,
      );
    return res.body.toString('utf8').trim();
  }

  async evidence(_ctx: EvidenceContext): Promise<Record<string, unknown>> {
    return { token: await this.fetchToken() };
  }
}
