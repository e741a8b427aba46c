/**
 * Conformance: fleet-view sessions (src/server/store/ui-session-types.ts) — what every store that
 * keeps them must do, so that the issuers sharing one database agree on who is signed in: expiry
 * that no clock undoes, an idle clock that only moves forward, and the bounds applied in one step.
 * Run on SQLite and PostgreSQL (the conformance index) and on the in-memory store (test/unit/ui).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { UiSessionLimits, UiSessionRow, UiSessionStore } from '../../../../src/server/store/ui-session-types.js';

const T0 = 1_700_000_000_000;
const IDLE = 1000;
const ABS = 5000;

function row(n: number, user: string, at: number, role: 'admin' | 'viewer' = 'viewer'): UiSessionRow {
  return {
    idHash: n.toString(16).padStart(64, '0'),
    user,
    role,
    createdAt: at,
    lastSeenAt: at,
    remote: '192.0.2.1',
    credential: `cred-${user}`,
    seal: `seal-${n}`,
  };
}

const limits = (now: number, o: Partial<UiSessionLimits> = {}): UiSessionLimits => ({
  now,
  idleMs: IDLE,
  absoluteMs: ABS,
  maxSessions: 100,
  maxPerUser: 10,
  ...o,
});

export function uiSessionSuite(open: () => UiSessionStore): void {
  describe('fleet-view sessions', () => {
    let s: UiSessionStore;
    beforeEach(() => {
      s = open();
    });

    it('stores a row as given and moves its idle clock on touch; an unknown id is undefined', async () => {
      await s.insert(row(1, 'alice', T0, 'admin'), limits(T0));
      expect(await s.touch(row(1, 'alice', T0).idHash, T0 + 400, IDLE, ABS)).toEqual({
        ...row(1, 'alice', T0, 'admin'),
        lastSeenAt: T0 + 400,
      });
      expect(await s.touch(row(2, 'alice', T0).idHash, T0 + 400, IDLE, ABS)).toBeUndefined();
      expect(await s.count()).toBe(1);
    });

    it('an idle session is gone for good: touched late it is deleted, and an earlier clock does not revive it', async () => {
      await s.insert(row(1, 'alice', T0), limits(T0));
      expect(await s.touch(row(1, '', 0).idHash, T0 + 999, IDLE, ABS)).toBeDefined();
      expect(await s.touch(row(1, '', 0).idHash, T0 + 999 + IDLE, IDLE, ABS)).toBeUndefined();
      expect(await s.count()).toBe(0);
      expect(await s.touch(row(1, '', 0).idHash, T0 + 1000, IDLE, ABS)).toBeUndefined();
    });

    it('the absolute lifetime ends a session however active', async () => {
      await s.insert(row(1, 'alice', T0), limits(T0));
      for (let t = T0 + 900; t < T0 + ABS; t += 900)
        expect(await s.touch(row(1, '', 0).idHash, t, IDLE, ABS)).toBeDefined();
      expect(await s.touch(row(1, '', 0).idHash, T0 + ABS, IDLE, ABS)).toBeUndefined();
      expect(await s.count()).toBe(0);
    });

    it('the idle clock never moves backwards (an issuer whose clock is behind)', async () => {
      await s.insert(row(1, 'alice', T0), limits(T0));
      await s.touch(row(1, '', 0).idHash, T0 + 800, IDLE, ABS);
      expect((await s.touch(row(1, '', 0).idHash, T0 + 100, IDLE, ABS))?.lastSeenAt).toBe(T0 + 800);
      // Still measured from T0 + 800: live at T0 + 1700, gone at T0 + 1800.
      expect(await s.touch(row(1, '', 0).idHash, T0 + 1700, IDLE, ABS)).toBeDefined();
      expect(await s.touch(row(1, '', 0).idHash, T0 + 2700, IDLE, ABS)).toBeUndefined();
    });

    it("a user's new session drops only that user's least recently used ones beyond the bound", async () => {
      await s.insert(row(100, 'admin', T0, 'admin'), limits(T0, { maxPerUser: 3 }));
      for (let i = 1; i <= 3; i++) await s.insert(row(i, 'viewer', T0 + i), limits(T0 + i, { maxPerUser: 3 }));
      // Touching the first makes the second the least recently used.
      await s.touch(row(1, '', 0).idHash, T0 + 10, IDLE, ABS);
      await s.insert(row(4, 'viewer', T0 + 11), limits(T0 + 11, { maxPerUser: 3 }));
      expect(await s.touch(row(2, '', 0).idHash, T0 + 12, IDLE, ABS)).toBeUndefined();
      for (const n of [1, 3, 4]) expect(await s.touch(row(n, '', 0).idHash, T0 + 12, IDLE, ABS)).toBeDefined();
      expect((await s.touch(row(100, '', 0).idHash, T0 + 12, IDLE, ABS))?.role).toBe('admin');
      expect(await s.count()).toBe(4);
    });

    it('at the bound of all sessions the least recently used goes first', async () => {
      await s.insert(row(1, 'a', T0), limits(T0, { maxSessions: 2 }));
      await s.insert(row(2, 'b', T0 + 1), limits(T0 + 1, { maxSessions: 2 }));
      await s.touch(row(1, '', 0).idHash, T0 + 2, IDLE, ABS);
      await s.insert(row(3, 'c', T0 + 3), limits(T0 + 3, { maxSessions: 2 }));
      expect(await s.count()).toBe(2);
      expect(await s.touch(row(2, '', 0).idHash, T0 + 4, IDLE, ABS)).toBeUndefined();
      expect(await s.touch(row(1, '', 0).idHash, T0 + 4, IDLE, ABS)).toBeDefined();
    });

    it('an insertion sweeps expired sessions', async () => {
      await s.insert(row(1, 'a', T0), limits(T0));
      await s.insert(row(2, 'b', T0 + 500), limits(T0 + 500));
      await s.insert(row(3, 'c', T0 + 1200), limits(T0 + 1200));
      expect(await s.count()).toBe(2);
    });

    it('delete says whether there was a session', async () => {
      await s.insert(row(1, 'a', T0), limits(T0));
      expect(await s.delete(row(1, '', 0).idHash)).toBe(true);
      expect(await s.delete(row(1, '', 0).idHash)).toBe(false);
      expect(await s.touch(row(1, '', 0).idHash, T0 + 1, IDLE, ABS)).toBeUndefined();
    });

    it("concurrent sign-ins of one user keep that user's bound (sign-ins take turns)", async () => {
      await Promise.all(
        Array.from({ length: 24 }, (_, i) => s.insert(row(i + 1, 'busy', T0 + i), limits(T0 + i, { maxPerUser: 5 }))),
      );
      expect(await s.count()).toBe(5);
    });

    it('concurrent sign-ins of different users all stay, within the bounds', async () => {
      await Promise.all(Array.from({ length: 20 }, (_, i) => s.insert(row(i + 1, `u${i}`, T0), limits(T0))));
      expect(await s.count()).toBe(20);
    });
  });
}
