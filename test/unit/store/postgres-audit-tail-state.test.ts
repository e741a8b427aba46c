/**
 * The bookkeeping behind appends on a known audit chain head (store/postgres/audit-tail.ts), without
 * a database: when an issuer may guess the head, and when it must read it.
 */
import { describe, expect, it } from 'vitest';
import { AuditTail, COOLDOWN } from '../../../src/server/store/postgres/audit-tail.js';

const row = (seq: number) => ({ seq, hash: `h${seq}` });

describe('AuditTail', () => {
  it('guesses only a head learnt from a committed row, and only with nothing of its own in flight', () => {
    const t = new AuditTail();
    expect(t.guess()).toBeUndefined(); // nothing known yet: read
    t.start();
    t.settle(row(1), 'failed');
    expect(t.guess()).toBeUndefined(); // a failed append teaches nothing
    t.start();
    t.settle(row(1), 'committed');
    expect(t.guess()).toEqual(row(1));
    t.start();
    expect(t.guess()).toBeUndefined(); // an append in flight: the next one reads
    t.start();
    t.settle(row(3), 'committed'); // committed out of order: the highest row is the head
    t.settle(row(2), 'committed');
    expect(t.guess()).toEqual(row(3));
  });

  it('other transactions wait for a guessed append in flight; the guessing one does not wait for itself', async () => {
    const t = new AuditTail();
    const tx = {};
    t.start(tx);
    expect(t.guessInFlight(tx)).toBeUndefined();
    const waiting = t.guessInFlight({});
    expect(waiting).toBeInstanceOf(Promise);
    t.settle(row(1), 'committed', true);
    await waiting;
    expect(t.guessInFlight({})).toBeUndefined();
  });

  it('a wrong guess forgets the head and reads it for the next COOLDOWN committed appends', () => {
    const t = new AuditTail();
    t.start();
    t.settle(row(1), 'committed');
    t.start(t);
    t.settle(row(2), 'moved', true);
    expect(t.guess()).toBeUndefined();
    for (let i = 0; i < COOLDOWN; i++) {
      t.start();
      t.settle(row(10 + i), 'committed');
      if (i < COOLDOWN - 1) expect(t.guess()).toBeUndefined();
    }
    expect(t.guess()).toEqual(row(10 + COOLDOWN - 1));
  });

  it("a head read that shows another issuer's row starts the cooldown; its own last row does not", () => {
    const t = new AuditTail();
    t.start();
    t.settle(row(5), 'committed');
    t.start();
    t.observed(row(5)); // the head is still its own row
    t.settle(row(6), 'committed');
    expect(t.guess()).toEqual(row(6));
    t.start();
    t.observed(row(9)); // someone else appended 7–9
    t.settle(row(10), 'committed');
    expect(t.guess()).toBeUndefined();
  });
});
