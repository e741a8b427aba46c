/**
 * The seal of a stored fleet-view session (docs/fleet-ui.md "Who can sign in"). Sessions live in the
 * database so that every issuer on it knows them; whoever can write the database could otherwise
 * insert a row for a cookie id of their own choosing with role admin, or turn a viewer's session
 * into an admin's, and sign in to lock and unlock machines under a name the audit log believes.
 * Each row carries an HMAC-SHA256 under a key derived (HKDF-SHA256, RFC 5869) from audit.key,
 * which lives in the data directory outside the database, over every field that says who the
 * session is: the id's hash, user, role, creation time, address and credential. The idle clock
 * (lastSeenAt) is not sealed: the issuer moves it on every page, and moving it only keeps alive a
 * session whose cookie one already holds, which the absolute lifetime (sealed) still ends.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import type { UiSessionRow } from '../store/ui-session-types.js';
import { hmacSha256Hex } from '../../util/hmac-sha256.js';
import { constantTimeEqual } from '../../util/secret.js';

const HKDF_INFO = 'sigil fleet-view session seal v1';

export class SessionSeal {
  readonly #key: Buffer;

  /** `auditSecret`: the audit chain key; the seal key is derived from it, never the same key. */
  constructor(auditSecret: Buffer) {
    this.#key = Buffer.from(hkdfSync('sha256', auditSecret, Buffer.alloc(0), HKDF_INFO, 32));
  }

  /** A seal under a fresh random key: for a fleet view without a data directory (tests, embedding). */
  static ephemeral(): SessionSeal {
    return new SessionSeal(randomBytes(32));
  }

  mac(row: Omit<UiSessionRow, 'seal' | 'lastSeenAt'>): string {
    // Each field prefixed by its length, so no two different rows feed the MAC the same text.
    let m = '';
    for (const field of [row.idHash, row.user, row.role, String(row.createdAt), row.remote, row.credential])
      m += `${field.length}:${field}`;
    return hmacSha256Hex(this.#key, m);
  }

  /**
   * The CSRF synchronizer token of the session whose cookie holds `id`: derived, never stored, so
   * a reader of the table (a backup, a replica) learns no session's token, and every issuer that
   * shares audit.key derives the same one. 256 bits, base64url, like the id.
   */
  csrfFor(id: string): string {
    return Buffer.from(hmacSha256Hex(this.#key, `csrf\n${id}`), 'hex').toString('base64url');
  }

  /** True when `row` is as the issuer stored it (its identity fields unchanged). */
  holds(row: UiSessionRow): boolean {
    return typeof row.seal === 'string' && constantTimeEqual(row.seal, this.mac(row));
  }
}
