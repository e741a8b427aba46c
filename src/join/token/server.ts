import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import { sha256Hex } from '../../util/secret.js';
import type { Stores } from '../../server/store/types.js';
import type { AttestInput, Attested, JoinMethodServer } from '../types.js';
import { tokenEvidenceSchema } from './wire.js';

/**
 * The token is looked up by its SHA-256; comparing digests by index lookup leaks nothing
 * useful about the secret (an attacker would need a preimage). The decisive step is the
 * conditional UPDATE in `commit`, inside the issuing transaction: of N concurrent joins with
 * one token exactly one wins, and a join refused later (bad CSR, locked bot) burns nothing.
 */
export class TokenJoinServer implements JoinMethodServer {
  readonly name = 'token';

  async attest(input: AttestInput, stores: Stores): Promise<Attested> {
    const ev = parseWith(tokenEvidenceSchema, input.evidence, 'token_invalid', 'token evidence');
    const hash = sha256Hex(ev.token);
    const rec = stores.tokens.get(hash);
    if (!rec) throw new SigilError('token_invalid', 'the join token is not known to this issuer');
    if (rec.usedAt !== null) throw new SigilError('token_reused', `the join token was already used at ${new Date(rec.usedAt).toISOString()}; create a new one with: sigil ctl token create --bot ${rec.bot}`);
    if (rec.expiresAt <= input.now) throw new SigilError('token_expired', `the join token expired at ${new Date(rec.expiresAt).toISOString()}; create a new one with: sigil ctl token create --bot ${rec.bot}`);
    return {
      bot: rec.bot,
      facts: { token_hash_prefix: hash.slice(0, 12) },
      canReattest: false,
      commit(s, now, instanceId) {
        const r = s.tokens.consume(hash, now, instanceId);
        if (!r.ok) throw new SigilError(r.reason, r.reason === 'token_reused' ? 'the join token was already used (a concurrent join won)' : undefined);
      },
    };
  }
}
