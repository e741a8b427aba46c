/**
 * Stored answers across issuers with different intermediates (ops/stored-answer.ts). An issuer
 * stores its answers compacted against ITS intermediate and the root; a request id retried at
 * another issuer (an agent failing over between A and B) must still be replayed byte for byte
 * there. So an issuer expands a stored answer with its own constants first, then with those of
 * every other live intermediate of the root (a compact answer's tag names the constants it used;
 * a mismatch is a refusal the next codec may not make).
 */
import { SigilError } from '../../errors.js';
import { StoredAnswerCodec } from '../ops/stored-answer.js';

export class RegistryAnswerCodec extends StoredAnswerCodec {
  readonly #others: StoredAnswerCodec[];

  /** `own`: [own intermediate PEM, root PEM] (issuer.ts's order); `others`: the other live intermediates' PEMs. */
  constructor(own: readonly string[], rootPem: string, others: readonly string[]) {
    super(own);
    this.#others = others.map((pem) => new StoredAnswerCodec([pem, rootPem]));
  }

  override expand(stored: string): string {
    try {
      return super.expand(stored);
    } catch (err) {
      if (!(err instanceof SigilError) || err.code !== 'internal') throw err;
      for (const codec of this.#others) {
        try {
          return codec.expand(stored);
        } catch {
          // not this one's constants either
        }
      }
      throw err;
    }
  }
}
