/** The token join (wire.ts): a single-use secret printed by `sigil ctl token create` names the bot. */
import type { JoinMethodDescriptor } from '../registry.js';

export const tokenDescriptor: JoinMethodDescriptor = {
  name: 'token',
  pathKeys: ['token_file'],
  errorCodes: ['token_invalid', 'token_expired', 'token_reused'],
  // Once used, a token is spent: after an expiry a person must issue a new one.
  capabilities: { canReattest: false, singleUseCredential: true },
};
