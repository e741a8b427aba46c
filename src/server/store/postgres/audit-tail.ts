/**
 * What one issuer knows of the audit chain's head, so that a transaction can append without first
 * reading it (issue #15: a renewal in fewer round trips, and the chain lock held for less time).
 *
 * Appending needs the previous row's hash, and the hash is keyed with the audit key, which never
 * reaches the database: the issuer computes it. Read under the chain lock (./audit.ts, the "read"
 * path) that costs a round trip while the lock is held. But an issuer usually knows the head
 * already: its own last row. Then (the "guess" path) it computes the row on that head and sends,
 * without waiting, the lock, a CHECK that the head under the lock is exactly the guessed one
 * (otherwise the statement divides by zero and the transaction aborts), and the row; COMMIT follows
 * in the same network write. The chain rules are the database's, as on the read path: the check
 * runs after the lock is granted and sees the newest committed head; nothing is appended on
 * anything else (and prev_hash UNIQUE refuses a fork anyway).
 *
 * A wrong guess (another issuer appended meanwhile) costs the transaction: it is run again
 * (`AUDIT_HEAD_MOVED`, retried like a serialization failure), on the read path. To keep that rare:
 * - a guess is made only while none of this issuer's appends is in flight, and while a guessed
 *   append is in flight this issuer's other appends wait for it (in the process, not holding the
 *   chain lock) before they send anything: on another connection, one of them could otherwise take
 *   the chain lock first and make the guess wrong;
 * - after a wrong guess, or a read that found another issuer's row at the head, the next
 *   COOLDOWN appends read the head: issuers sharing a busy chain mostly read it, as before.
 * The head is learnt only from this issuer's committed rows.
 */

/** A row of the chain as the next append needs it. */
export interface ChainHead {
  seq: number;
  hash: string;
}

/** Appends that read the head after another issuer was seen appending, before guessing again. */
export const COOLDOWN = 100;

/** The retryable failure of a wrong guess (the code withRetries re-runs on: ./db.ts). */
export const AUDIT_HEAD_MOVED = '40001';

export class AuditTail {
  #head: ChainHead | undefined;
  #inFlight = 0;
  #cooldown = 0;
  /** While a guessed append is in flight: settles with its transaction. */
  #guessed: { done: Promise<void>; release: () => void; owner: object } | undefined;

  /** The head to append onto without reading it, when guessing is worth it now (see the header). */
  guess(): ChainHead | undefined {
    return this.#inFlight === 0 && this.#cooldown === 0 ? this.#head : undefined;
  }

  /**
   * While another transaction's guessed append is in flight, when it has ended (append only after:
   * see the header). `tx`: the asking transaction (its own guess does not make it wait for itself).
   */
  guessInFlight(tx: object | undefined): Promise<void> | undefined {
    return this.#guessed && this.#guessed.owner !== tx ? this.#guessed.done : undefined;
  }

  /** An append is sent (`guessedBy`: on guess()'s head, by that transaction); `settle` follows when it ends. */
  start(guessedBy?: object): void {
    this.#inFlight++;
    if (guessedBy) {
      let release = (): void => undefined;
      const done = new Promise<void>((r) => (release = r));
      this.#guessed = { done, release, owner: guessedBy };
    }
  }

  /**
   * The read path found `head` under the lock. Only this issuer's append in flight and a known
   * head that differs: another issuer appended since, so stop guessing for a while.
   */
  observed(head: ChainHead | undefined): void {
    if (this.#inFlight !== 1 || !this.#head) return;
    if (head?.seq !== this.#head.seq || head.hash !== this.#head.hash) this.#cooldown = COOLDOWN;
  }

  /**
   * The append's transaction ended: `row` committed, or the transaction failed — because the
   * guessed head had moved (forget it, read for a while), or for any other reason (the head known
   * before stays right: nothing of this transaction was appended).
   */
  settle(row: ChainHead, outcome: 'committed' | 'moved' | 'failed', guessed = false): void {
    this.#inFlight--;
    if (outcome === 'committed') {
      if (!this.#head || row.seq > this.#head.seq) this.#head = row;
      if (this.#cooldown > 0) this.#cooldown--;
    } else if (outcome === 'moved') {
      this.#head = undefined;
      this.#cooldown = COOLDOWN;
    }
    if (guessed && this.#guessed) {
      this.#guessed.release();
      this.#guessed = undefined;
    }
  }
}
