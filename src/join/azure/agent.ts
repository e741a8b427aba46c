/**
 * The agent half of the azure join: answer the issuer's challenge with an attested document
 * IMDS signs for the nonce derived from it (wire.ts), and, when configured, a managed identity
 * token. The endpoint is configurable so tests can point the agent at a local fake IMDS.
 *
 * IMDS may serve a cached document with an earlier nonce (Azure's docs warn about this), so the
 * agent reads the nonce back and asks again, a few times, before sending what it has.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SigilError } from '../../errors.js';
import type { JoinChallenge } from '../../protocol/messages.js';
import { describeHttpError, httpRequest } from '../http.js';
import type { EvidenceContext, JoinMethodAgent } from '../types.js';
import {
  ATTESTED_API_VERSION,
  ATTESTED_PATH,
  DEFAULT_MI_RESOURCE,
  IDENTITY_API_VERSION,
  IDENTITY_PATH,
  imdsNonce,
} from './wire.js';

export const DEFAULT_AZURE_IMDS = 'http://169.254.169.254';

export interface AzureJoinAgentOptions {
  endpoint?: string;
  /** Send a managed identity token too (the issuer's rule decides whether it needs one). */
  managedIdentity?: boolean | { resource?: string; clientId?: string };
  /** Intermediates to send along (Azure's TLS issuing CA), base64 DER. */
  intermediates?: readonly string[];
  timeoutMs?: number;
  /** Attempts at getting a document with the right nonce (default 3), and the pause between them. */
  attempts?: number;
  retryDelayMs?: number;
}

export class AzureJoinAgent implements JoinMethodAgent {
  readonly name = 'azure';
  /** IMDS signs a fresh document whenever asked: the VM re-joins by itself. */
  readonly canReattest = true;
  readonly #endpoint: string;
  readonly #o: AzureJoinAgentOptions;

  constructor(o: AzureJoinAgentOptions = {}) {
    this.#endpoint = (o.endpoint ?? DEFAULT_AZURE_IMDS).replace(/\/+$/, '');
    this.#o = o;
  }

  async #get(path: string, what: string): Promise<unknown> {
    let res;
    try {
      res = await httpRequest({
        url: `${this.#endpoint}${path}`,
        headers: { metadata: 'true' },
        timeoutMs: this.#o.timeoutMs ?? 5_000,
        maxBytes: 256 * 1024,
      });
    } catch (e) {
      throw new SigilError(
        'cloud_metadata_unavailable',
        `Azure IMDS at ${this.#endpoint} cannot be reached (${describeHttpError(e)}); is this an Azure VM?`,
      );
    }
    if (res.status !== 200)
      throw new SigilError(
        'cloud_metadata_unavailable',
        `Azure IMDS answered the ${what} request with HTTP ${res.status}${res.status === 400 && what === 'managed identity token' ? ' (does the VM have a managed identity?)' : ''}`,
      );
    try {
      return JSON.parse(res.body.toString('utf8'));
    } catch {
      throw new SigilError(
        'cloud_metadata_unavailable',
        `Azure IMDS answered the ${what} request with something that is not JSON`,
      );
    }
  }

  /** The attested document (base64 DER PKCS#7) for `nonce`. */
  async attestedDocument(nonce: string): Promise<string> {
    const q = new URLSearchParams({ 'api-version': ATTESTED_API_VERSION, nonce });
    const attempts = this.#o.attempts ?? 3;
    let last = '';
    for (let i = 0; i < attempts; i++) {
      if (i > 0) await sleep(this.#o.retryDelayMs ?? 1_000);
      const body = (await this.#get(`${ATTESTED_PATH}?${q.toString()}`, 'attested document')) as {
        encoding?: unknown;
        signature?: unknown;
      };
      if (body.encoding !== 'pkcs7' || typeof body.signature !== 'string')
        throw new SigilError(
          'cloud_metadata_unavailable',
          'Azure IMDS answered the attested document request without a pkcs7 signature',
        );
      last = body.signature.replace(/\s+/g, '');
      if ((await nonceOf(last)) === nonce) return last;
    }
    return last; // the issuer will say azure_nonce_mismatch
  }

  async identityToken(): Promise<string> {
    const mi = typeof this.#o.managedIdentity === 'object' ? this.#o.managedIdentity : {};
    const q = new URLSearchParams({
      'api-version': IDENTITY_API_VERSION,
      resource: mi.resource ?? DEFAULT_MI_RESOURCE,
      ...(mi.clientId ? { client_id: mi.clientId } : {}),
    });
    const body = (await this.#get(`${IDENTITY_PATH}?${q.toString()}`, 'managed identity token')) as {
      access_token?: unknown;
    };
    if (typeof body.access_token !== 'string')
      throw new SigilError(
        'cloud_metadata_unavailable',
        'Azure IMDS answered the managed identity token request without an access_token',
      );
    return body.access_token;
  }

  evidence(_ctx: EvidenceContext): Promise<Record<string, unknown>> {
    return Promise.resolve({});
  }

  async respond(challenge: JoinChallenge, _ctx: EvidenceContext): Promise<Record<string, unknown>> {
    if (challenge.method !== this.name)
      throw new SigilError('response_invalid', `the issuer sent a ${challenge.method} challenge to an azure join`);
    const document = await this.attestedDocument(imdsNonce(Buffer.from(challenge.nonce, 'base64url')));
    return {
      challenge_id: challenge.challenge_id,
      document,
      ...(this.#o.intermediates?.length ? { intermediates: [...this.#o.intermediates] } : {}),
      ...(this.#o.managedIdentity ? { identity_token: await this.identityToken() } : {}),
    };
  }
}

/**
 * The nonce inside a document (unverified: only to decide whether to ask IMDS again). PKCS#7
 * parsing (pkijs, asn1js, @noble: ~6 MB, ~150 ms) is imported here, at the first join, so an
 * agent that never joins through Azure never loads it (issue #19).
 */
async function nonceOf(b64: string): Promise<string | undefined> {
  const { parseSignedData } = await import('../../pki/pkcs7.js');
  try {
    const p7 = parseSignedData(Buffer.from(b64, 'base64'), {
      malformed: 'response_invalid',
      invalid: 'response_invalid',
    });
    const n = (JSON.parse(p7.content.toString('utf8')) as { nonce?: unknown }).nonce;
    return typeof n === 'string' ? n : undefined;
  } catch {
    return undefined;
  }
}
