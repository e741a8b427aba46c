/**
 * Stored answers are sealed (the adversarial review of 2026-12-06, docs/security.md). The
 * issuer signs a replayed answer with its serving key, so whoever can write the database (a
 * PostgreSQL role, a backup restored by hand, a peer issuer's host) could otherwise rewrite a
 * stored answer — renew_after, ttl, key_storage, a credential — and have the issuer sign it for
 * the agent. Each stored answer carries an HMAC-SHA256 under a key derived from audit.key, which
 * lives in the data directory outside the database (server/audit/audit-key.ts), over every
 * column the replay decision reads: request id, request hash, signer, operation, time and the
 * stored text. A row that fails it is never replayed (`stored_answer_invalid`).
 *
 * Stored form: U+0002, the 64-hex-digit MAC, then the text as ./stored-answer.ts
 * compacted it (which starts with U+0001 or "{"; JSON.stringify never writes a raw control
 * character, so the marker cannot be part of an answer).
 *
 * Rows stored before sealing existed have no MAC. They are replayed only if they are older than
 * `legacyBefore` (when this data directory first served sealed answers:
 * ./answer-seal-file.ts) and younger than the idempotency retention: a lost answer from just
 * before the upgrade is still found, and from one retention after the upgrade no unsealed row is
 * accepted at all — by then the pruning has removed every genuine one.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { SigilError } from '../../errors.js';
import type { IdempotencyRecord } from '../store/types.js';
import { hmacSha256Hex } from '../../util/hmac-sha256.js';
import { constantTimeEqual } from '../../util/secret.js';

/**
 * How long stored answers are kept (and replayable); service.ts prunes older ones. Longer than the
 * longest certificate (24 h), so any retry finds its answer.
 */
export const IDEMPOTENCY_KEEP_MS = 48 * 3600_000;

const SEAL = '\u0002';
const MAC_CHARS = 64; // hex of 32 bytes
const HKDF_INFO = 'sigil stored-answer seal v1';

export class AnswerSeal {
  readonly #key: Buffer;

  /**
   * `auditSecret`: the audit chain key (32 bytes); the seal key is derived from it (HKDF-SHA256,
   * RFC 5869), so the audit chain and the answers never share a key. `legacyBefore`: unix ms
   * before which unsealed rows may exist; 0 accepts none.
   */
  constructor(
    auditSecret: Buffer,
    readonly legacyBefore: number,
  ) {
    this.#key = Buffer.from(hkdfSync('sha256', auditSecret, Buffer.alloc(0), HKDF_INFO, 32));
  }

  /** A seal under a fresh random key, accepting no unsealed row: for an issuer context without a data directory (tests, embedding). */
  static ephemeral(): AnswerSeal {
    return new AnswerSeal(randomBytes(32), 0);
  }

  /** The form to store for `rec` whose stored text (./stored-answer.ts compact) is `text`. */
  seal(rec: Omit<IdempotencyRecord, 'response'>, text: string): string {
    return SEAL + this.#mac(rec, text) + text;
  }

  /**
   * The stored text of a row read back, after its seal is checked; throws `stored_answer_invalid`
   * naming the failed check. `now`: the issuer's clock, for the legacy window.
   */
  open(rec: IdempotencyRecord, now: number): string {
    const stored = rec.response;
    if (!stored.startsWith(SEAL)) {
      if (rec.createdAt < this.legacyBefore && now - rec.createdAt <= IDEMPOTENCY_KEEP_MS) return stored;
      throw new SigilError(
        'stored_answer_invalid',
        `the answer stored for request id ${rec.requestId} carries no seal, and unsealed answers are accepted only when stored before ${new Date(this.legacyBefore).toISOString()} and within the retention`,
      );
    }
    const text = stored.slice(1 + MAC_CHARS);
    if (!constantTimeEqual(stored.slice(1, 1 + MAC_CHARS), this.#mac(rec, text))) {
      throw new SigilError(
        'stored_answer_invalid',
        `the seal of the answer stored for request id ${rec.requestId} does not match its row (changed outside the issuer, or sealed with another audit.key)`,
      );
    }
    return text;
  }

  #mac(rec: Omit<IdempotencyRecord, 'response'>, text: string): string {
    // Each field prefixed by its length, so no two different rows feed the MAC the same text.
    // One-shot HMAC (util/hmac-sha256.ts): no native Hmac object per renewal for the GC to reap.
    let m = '';
    for (const field of [rec.requestId, rec.requestHash, rec.signer, rec.op, String(rec.createdAt), text])
      m += `${field.length}:${field}`;
    return hmacSha256Hex(this.#key, m);
  }
}
