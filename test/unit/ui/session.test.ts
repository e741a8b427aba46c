import { describe, expect, it } from 'vitest';
import { SessionStore } from '../../../src/server/ui/session.js';

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

describe('fleet view sessions', () => {
  it('gives a random 256-bit id and a per-session CSRF token', () => {
    const s = new SessionStore();
    const a = s.create('admin', 'admin', '127.0.0.1');
    const b = s.create('admin', 'admin', '127.0.0.1');
    expect(Buffer.from(a.id, 'base64url')).toHaveLength(32);
    expect(a.id).not.toBe(b.id);
    expect(a.session.csrf).not.toBe(b.session.csrf);
    expect(s.touch(a.id)?.user).toBe('admin');
    expect(s.touch('not-a-session')).toBeUndefined();
    expect(s.touch(undefined)).toBeUndefined();
  });

  it('expires after the idle timeout, and activity keeps it alive', () => {
    const c = clock();
    const s = new SessionStore({ idleMs: 1000, absoluteMs: 10_000, now: c.now });
    const { id } = s.create('alice', 'viewer', '10.0.0.1');
    c.t += 999;
    expect(s.touch(id)?.role).toBe('viewer');
    c.t += 999;
    expect(s.touch(id)).toBeDefined();
    c.t += 1000;
    expect(s.touch(id)).toBeUndefined();
    // Gone for good: going back in time does not revive it.
    c.t -= 5000;
    expect(s.touch(id)).toBeUndefined();
  });

  it('expires at the absolute lifetime however active it is', () => {
    const c = clock();
    const s = new SessionStore({ idleMs: 1000, absoluteMs: 3000, now: c.now });
    const { id } = s.create('admin', 'admin', 'x');
    for (let i = 0; i < 5; i++) {
      c.t += 500;
      expect(s.touch(id)).toBeDefined();
    }
    c.t += 500;
    expect(s.touch(id)).toBeUndefined();
  });

  it('sign-out destroys the session', () => {
    const s = new SessionStore();
    const { id } = s.create('admin', 'admin', 'x');
    expect(s.destroy(id)).toBe(true);
    expect(s.touch(id)).toBeUndefined();
  });

  it('is bounded: the least recently used session goes first', () => {
    const s = new SessionStore({ maxSessions: 2 });
    const a = s.create('a', 'viewer', 'x');
    const b = s.create('b', 'viewer', 'x');
    s.touch(a.id);
    s.create('c', 'viewer', 'x');
    expect(s.size).toBe(2);
    expect(s.touch(b.id)).toBeUndefined();
    expect(s.touch(a.id)).toBeDefined();
  });

  it('one user signing in over and over drops only its own sessions, never another user’s (an admin’s)', () => {
    // Review of issue #16: a viewer signing in 1,000 times evicted every admin session.
    const s = new SessionStore({ maxSessions: 20, maxPerUser: 3 });
    const admin = s.create('admin', 'admin', 'x');
    const first = s.create('viewer', 'viewer', 'x');
    let last = first;
    for (let i = 0; i < 1000; i++) last = s.create('viewer', 'viewer', 'x');
    expect(s.touch(admin.id)?.role).toBe('admin');
    expect(s.touch(first.id)).toBeUndefined();
    expect(s.touch(last.id)).toBeDefined();
    expect(s.size).toBe(4);
  });

  it('refuses a lifetime shorter than the idle timeout', () => {
    expect(() => new SessionStore({ idleMs: 2000, absoluteMs: 1000 })).toThrow(TypeError);
  });
});
