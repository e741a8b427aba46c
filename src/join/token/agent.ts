import { SigilError } from '../../errors.js';
import type { JoinMethodAgent } from '../types.js';
import { TOKEN_RE } from './wire.js';

export class TokenJoinAgent implements JoinMethodAgent {
  readonly name = 'token';
  /** A token is single use: once the identity expires, a person must issue a new token. */
  readonly canReattest = false;

  constructor(private readonly token: string) {
    if (!TOKEN_RE.test(token)) throw new SigilError('config_invalid', 'join.token must be the 43-character token printed by `sigil ctl token create`');
  }

  async evidence(): Promise<Record<string, unknown>> {
    return { token: this.token };
  }
}
