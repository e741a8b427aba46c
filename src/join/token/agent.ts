import { sign } from 'node:crypto';
import * as z from '../../util/zod-mini.js';
import { SigilError } from '../../errors.js';
import type { AgentJoinMethodCode, AgentJoinMethodEntry } from '../registry.js';
import type { EvidenceContext, JoinMethodAgent } from '../types.js';
import { tokenDescriptor } from './descriptor.js';
import { proofMessage, TOKEN_RE, tokenId, tokenKey } from './wire.js';

export class TokenJoinAgent implements JoinMethodAgent {
  readonly name = 'token';
  /** A token is single use: once the identity expires, a person must issue a new token. */
  readonly canReattest = false;
  private readonly key: ReturnType<typeof tokenKey>;

  constructor(token: string) {
    if (!TOKEN_RE.test(token))
      throw new SigilError(
        'config_invalid',
        'join.token must be the 43-character token printed by `sigil ctl token create`',
      );
    this.key = tokenKey(token);
  }

  async evidence(ctx: EvidenceContext): Promise<Record<string, unknown>> {
    const proof = sign(null, proofMessage(ctx.requestId, ctx.spkiDer), this.key.privateKey);
    return { token_key: this.key.publicRaw.toString('base64url'), proof: proof.toString('base64url') };
  }
}

/**
 * The agent side of the token join (join/agent-methods.ts). agent.yaml keeps the token flat
 * (`join: { method: token, token | token_file }`); agent/config.ts reads token_file and hands
 * the token here.
 */
export const tokenAgentMethod: AgentJoinMethodEntry<{ token: string }> = {
  descriptor: tokenDescriptor,
  configSchema: () => z.strictObject({ token: z.string() }),
  // Nothing heavy to defer: the token join is this file.
  load: () => Promise.resolve(tokenAgentCode),
};

const tokenAgentCode: AgentJoinMethodCode<{ token: string }> = {
  create: (settings) => {
    const method = new TokenJoinAgent(settings.token);
    return { method, singleUseCredential: `token:${tokenId(tokenKey(settings.token).publicRaw)}` };
  },
};
