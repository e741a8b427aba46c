import { sign } from 'node:crypto';
import { SigilError } from '../../errors.js';
import type { EvidenceContext, JoinMethodAgent } from '../types.js';
import { proofMessage, TOKEN_RE, tokenKey } from './wire.js';

export class TokenJoinAgent implements JoinMethodAgent {
  readonly name = 'token';
  /** A token is single use: once the identity expires, a person must issue a new token. */
  readonly canReattest = false;
  private readonly key: ReturnType<typeof tokenKey>;

  constructor(token: string) {
    if (!TOKEN_RE.test(token)) throw new SigilError('config_invalid', 'join.token must be the 43-character token printed by `sigil ctl token create`');
    this.key = tokenKey(token);
  }

  async evidence(ctx: EvidenceContext): Promise<Record<string, unknown>> {
    const proof = sign(null, proofMessage(ctx.requestId, ctx.spkiDer), this.key.privateKey);
    return { token_key: this.key.publicRaw.toString('base64url'), proof: proof.toString('base64url') };
  }
}
