/**
 * How an answer is kept for idempotent replays (issue #14): without the CA certificates every
 * identity answer repeats. The intermediate and root PEMs are 2 KB of each 3.3 KB answer; stored
 * whole, every renewal wrote them again (a page of WAL per renewal). Stored here, each occurrence
 * of one of them, as JSON encodes it (quotes included), is replaced by a two-character marker that
 * starts with U+0001, a character JSON.stringify never writes raw (it escapes every control
 * character), so a marker cannot collide with anything the answer says. A replay expands it back
 * to the byte-identical JSON text that was answered first.
 *
 * The stored form starts with U+0001 and a tag of the constants it stands for (the first 16 hex
 * digits of their SHA-256): an answer stored whole (before this change, or one that contains
 * neither PEM) starts with "{" and is replayed as it is. A compact answer whose tag does not match
 * the issuer's CA certificates any more (the CA was replaced) cannot be rebuilt byte for byte and
 * is refused rather than answered with different certificates.
 */
import { createHash } from 'node:crypto';
import { SigilError } from '../../errors.js';

const MARK = '\u0001';
const TAG_LEN = 16;

export class StoredAnswerCodec {
  /** [marker, the constant as it appears inside the JSON text]. */
  private readonly constants: Array<readonly [string, string]>;
  private readonly tag: string;

  /** `constants`: the exact strings the answers carry (CA PEMs as issue.ts puts them), at most 26. */
  constructor(constants: readonly string[]) {
    if (constants.length > 26) throw new RangeError('at most 26 constants');
    this.constants = constants.map((c, i) => [MARK + String.fromCharCode(0x61 + i), JSON.stringify(c)] as const);
    this.tag = createHash('sha256')
      .update(this.constants.map(([, json]) => json).join('\u0000'))
      .digest('hex')
      .slice(0, TAG_LEN);
  }

  /** The form to store for the answer `json` (JSON.stringify output). */
  compact(json: string): string {
    let out = json;
    for (const [marker, text] of this.constants) out = out.replaceAll(text, marker);
    return out === json ? json : MARK + this.tag + out;
  }

  /** The answer's JSON text, byte for byte as first answered, from its stored form. */
  expand(stored: string): string {
    if (!stored.startsWith(MARK)) return stored;
    if (stored.slice(1, 1 + TAG_LEN) !== this.tag) {
      throw new SigilError(
        'internal',
        'a stored answer refers to CA certificates this issuer no longer has (was the CA replaced?); it cannot be replayed byte for byte',
      );
    }
    let out = stored.slice(1 + TAG_LEN);
    for (const [marker, text] of this.constants) out = out.replaceAll(marker, text);
    return out;
  }
}
