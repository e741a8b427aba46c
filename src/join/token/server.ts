import { verify } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import type { JoinAttestPort } from '../port.js';
import type { ServerJoinMethodEntry } from '../registry.js';
import type { AttestInput, Attested, JoinMethodServer } from '../types.js';
import { tokenDescriptor } from './descriptor.js';
import { proofMessage, tokenEvidenceSchema, tokenId, tokenPublicKey } from './wire.js';

/**
 * Verify possession of the token (wire.ts explains the scheme), then let `commit` — inside the
 * issuing transaction — consume it with one conditional UPDATE: of N concurrent joins with one
 * token exactly one wins, and a join refused later (bad CSR, locked bot) burns nothing.
 */
export class TokenJoinServer implements JoinMethodServer {
  readonly name = 'token';

  async attest(input: AttestInput, port: JoinAttestPort): Promise<Attested> {
    const ev = parseWith(tokenEvidenceSchema, input.evidence, 'token_invalid', 'token evidence');
    const raw = Buffer.from(ev.token_key, 'base64url');
    const id = tokenId(raw);
    const rec = await port.token(id);
    if (!rec) throw new SigilError('token_invalid', 'the join token is not known to this issuer');
    const ok = verify(
      null,
      proofMessage(input.requestId, input.spkiDer),
      tokenPublicKey(raw),
      Buffer.from(ev.proof, 'base64url'),
    );
    if (!ok)
      throw new SigilError('token_invalid', 'the proof of token possession does not verify for this request and key');
    if (rec.usedAt !== null)
      throw new SigilError(
        'token_reused',
        `the join token was already used at ${new Date(rec.usedAt).toISOString()}; create a new one with: sigil ctl --data-dir <issuer-data-dir> token create --bot ${rec.bot}`,
      );
    if (rec.expiresAt <= input.now)
      throw new SigilError(
        'token_expired',
        `the join token expired at ${new Date(rec.expiresAt).toISOString()}; create a new one with: sigil ctl --data-dir <issuer-data-dir> token create --bot ${rec.bot}`,
      );
    return {
      bot: rec.bot,
      facts: { token_id_prefix: id.slice(0, 12) },
      canReattest: false,
      async commit(tx) {
        const r = await tx.consumeToken(id);
        if (!r.ok)
          throw new SigilError(
            r.reason,
            r.reason === 'token_reused' ? 'the join token was already used (a concurrent join won)' : undefined,
          );
      },
    };
  }
}

export const tokenServerMethod: ServerJoinMethodEntry = {
  descriptor: tokenDescriptor,
  create: () => new TokenJoinServer(),
};
