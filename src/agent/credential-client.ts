/**
 * How the agent sends `credential` requests: over the agent's own issuer link — every configured
 * transport, HTTPS or MQTT, in the same order and with the same failover as its renewals
 * (./transports.ts IssuerLink) — each answer verified against the pinned root like every other
 * issuer answer (a signed refusal over MQTT is thrown as its error). A sealed secret in the
 * answer (`token_jwe`: protocol/answer-key.ts) is opened here with the request's answer key.
 */
import { SigilError } from '../errors.js';
import { openWithAnswerKey } from '../protocol/answer-key.js';
import { SECRET_KINDS, type CredentialResult } from '../protocol/credential-messages.js';
import type { BuiltCredentialRequest } from './credential-request.js';
import type { IssuerLink } from './transports.js';

export interface CredentialClient {
  request(built: BuiltCredentialRequest, now: () => number): Promise<CredentialResult>;
  close(): void;
}

/**
 * Open the secret of a verified answer. A request that named an answer key accepts the secret
 * only sealed to it: an issuer that answered in clear anyway has put it on the carrier.
 */
export async function openCredentialResult(
  result: CredentialResult,
  built: BuiltCredentialRequest,
): Promise<CredentialResult> {
  if (result.token_jwe !== undefined) {
    if (!built.answerKey)
      throw new SigilError(
        'response_invalid',
        'the answer carries a sealed token, but this request named no answer key',
      );
    const { token_jwe: sealed, ...rest } = result;
    return { ...rest, token: await openWithAnswerKey(sealed, built.answerKey) };
  }
  if (built.answerKey && SECRET_KINDS.has(result.kind)) {
    throw new SigilError(
      'response_invalid',
      `the issuer answered the ${result.kind} credential unsealed although this request named an answer key; not using it`,
    );
  }
  return result;
}

export class LinkCredentialClient implements CredentialClient {
  /**
   * `link`: the agent's (it owns and closes it; an MQTT session is one per client id, so the
   * credential requests must share the identity loop's connection). `rootPem`: the root pinned
   * in the agent state, if any.
   */
  constructor(
    private readonly link: IssuerLink,
    private readonly rootPem: () => string | undefined,
  ) {}

  async request(built: BuiltCredentialRequest, now: () => number): Promise<CredentialResult> {
    const root = this.rootPem() ?? (await this.link.root());
    const result = await this.link.credential(built.envelope, built.requestId, root, now);
    return openCredentialResult(result, built);
  }

  close(): void {
    // The link belongs to the agent, which closes it.
  }
}
