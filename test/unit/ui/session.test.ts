import { describe, expect, it } from 'vitest';
import { SessionStore } from '../../../src/server/ui/session.js';
import { MemorySessionStore } from '../../../src/server/ui/session-memory.js';
import { SessionSeal } from '../../../src/server/ui/session-seal.js';
import type { UiSessionRow, UiSessionStore } from '../../../src/server/store/ui-session-types.js';
import { sha256Hex } from '../../../src/util/secret.js';
import { uiSessionSuite } from '../store/conformance/ui-sessions.js';

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

/** A memory store whose rows a test can read and rewrite, as a database writer would. */
class WritableStore extends MemorySessionStore {
  readonly rows = new Map<string, UiSessionRow>();
  override async insert(row: UiSessionRow, l: Parameters<UiSessionStore['insert']>[1]): Promise<void> {
    await super.insert(row, l);
    this.rows.set(row.idHash, { ...row });
  }
  override async touch(idHash: string, now: number, idle: number, abs: number): Promise<UiSessionRow | undefined> {
    const kept = await super.touch(idHash, now, idle, abs);
    const planted = this.rows.get(idHash);
    return kept && planted ? { ...planted, lastSeenAt: kept.lastSeenAt } : planted && !kept ? undefined : kept;
  }
}

describe('fleet view sessions', () => {
  it('gives a random 256-bit id and a per-session CSRF token', async () => {
    const s = new SessionStore();
    const a = await s.create('admin', 'admin', '127.0.0.1', 'cred');
    const b = await s.create('admin', 'admin', '127.0.0.1', 'cred');
    expect(Buffer.from(a.id, 'base64url')).toHaveLength(32);
    expect(a.id).not.toBe(b.id);
    expect(a.session.csrf).not.toBe(b.session.csrf);
    expect((await s.touch(a.id))?.user).toBe('admin');
    expect(await s.touch('not-a-session')).toBeUndefined();
    expect(await s.touch(undefined)).toBeUndefined();
    expect(await s.touch('x'.repeat(101))).toBeUndefined();
  });

  it('stores the id only as its SHA-256', async () => {
    const store = new WritableStore();
    const s = new SessionStore({ store });
    const { id } = await s.create('alice', 'viewer', 'x', 'cred');
    expect([...store.rows.keys()]).toEqual([sha256Hex(id)]);
    expect(JSON.stringify([...store.rows.values()])).not.toContain(id);
  });

  it('expires after the idle timeout, and activity keeps it alive', async () => {
    const c = clock();
    const s = new SessionStore({ idleMs: 1000, absoluteMs: 10_000, now: c.now });
    const { id } = await s.create('alice', 'viewer', '10.0.0.1', 'cred');
    c.t += 999;
    expect((await s.touch(id))?.role).toBe('viewer');
    c.t += 999;
    expect(await s.touch(id)).toBeDefined();
    c.t += 1000;
    expect(await s.touch(id)).toBeUndefined();
    // Gone for good: going back in time does not revive it.
    c.t -= 5000;
    expect(await s.touch(id)).toBeUndefined();
  });

  it('expires at the absolute lifetime however active it is', async () => {
    const c = clock();
    const s = new SessionStore({ idleMs: 1000, absoluteMs: 3000, now: c.now });
    const { id } = await s.create('admin', 'admin', 'x', 'cred');
    for (let i = 0; i < 5; i++) {
      c.t += 500;
      expect(await s.touch(id)).toBeDefined();
    }
    c.t += 500;
    expect(await s.touch(id)).toBeUndefined();
  });

  it('sign-out destroys the session', async () => {
    const s = new SessionStore();
    const { id } = await s.create('admin', 'admin', 'x', 'cred');
    expect(await s.destroy(id)).toBe(true);
    expect(await s.touch(id)).toBeUndefined();
    expect(await s.destroy(undefined)).toBe(false);
  });

  it('is bounded: the least recently used session goes first', async () => {
    const s = new SessionStore({ maxSessions: 2 });
    const a = await s.create('a', 'viewer', 'x', 'cred');
    const b = await s.create('b', 'viewer', 'x', 'cred');
    await s.touch(a.id);
    await s.create('c', 'viewer', 'x', 'cred');
    expect(await s.size()).toBe(2);
    expect(await s.touch(b.id)).toBeUndefined();
    expect(await s.touch(a.id)).toBeDefined();
  });

  it('one user signing in over and over drops only its own sessions, never another user’s (an admin’s)', async () => {
    // Review of issue #16: a viewer signing in 1,000 times evicted every admin session.
    const s = new SessionStore({ maxSessions: 20, maxPerUser: 3 });
    const admin = await s.create('admin', 'admin', 'x', 'cred');
    const first = await s.create('viewer', 'viewer', 'x', 'cred');
    let last = first;
    for (let i = 0; i < 1000; i++) last = await s.create('viewer', 'viewer', 'x', 'cred');
    expect((await s.touch(admin.id))?.role).toBe('admin');
    expect(await s.touch(first.id)).toBeUndefined();
    expect(await s.touch(last.id)).toBeDefined();
    expect(await s.size()).toBe(4);
  });

  it('refuses a lifetime shorter than the idle timeout', () => {
    expect(() => new SessionStore({ idleMs: 2000, absoluteMs: 1000 })).toThrow(TypeError);
  });

  it('another issuer of the store (same audit.key) knows the session; one with another key does not', async () => {
    const store = new MemorySessionStore();
    const key = Buffer.alloc(32, 7);
    const a = new SessionStore({ store, seal: new SessionSeal(key) });
    const b = new SessionStore({ store, seal: new SessionSeal(Buffer.from(key)) });
    const stranger = new SessionStore({ store, seal: new SessionSeal(Buffer.alloc(32, 8)) });
    const { id } = await a.create('noc', 'viewer', 'x', 'cred');
    expect((await b.touch(id))?.user).toBe('noc');
    // A seal that fails deletes the row: it is no session for anybody after that.
    expect(await stranger.touch(id)).toBeUndefined();
    expect(await a.touch(id)).toBeUndefined();
  });
});

describe('fleet view sessions: a database writer', () => {
  const key = Buffer.alloc(32, 3);
  for (const [what, change] of [
    ['turns a viewer into an admin', (r: UiSessionRow) => ({ ...r, role: 'admin' as const })],
    ['gives the session to another user', (r: UiSessionRow) => ({ ...r, user: 'admin' })],
    ['extends the absolute lifetime', (r: UiSessionRow) => ({ ...r, createdAt: r.createdAt + 3600_000 })],
    ['changes the recorded address', (r: UiSessionRow) => ({ ...r, remote: '203.0.113.9' })],
    ['swaps the credential it was opened with', (r: UiSessionRow) => ({ ...r, credential: 'other' })],
    ['drops the seal', (r: UiSessionRow) => ({ ...r, seal: '' })],
  ] as const) {
    it(`${what}: the session is refused and deleted`, async () => {
      const store = new WritableStore();
      const s = new SessionStore({ store, seal: new SessionSeal(key) });
      const { id } = await s.create('noc', 'viewer', '192.0.2.1', 'cred');
      expect((await s.touch(id))?.role).toBe('viewer');
      const h = sha256Hex(id);
      store.rows.set(h, change(store.rows.get(h)!));
      expect(await s.touch(id)).toBeUndefined();
      expect(await store.count()).toBe(0);
    });
  }

  it('inserts an admin session for an id of its choosing: refused (it cannot seal it)', async () => {
    const store = new WritableStore();
    const s = new SessionStore({ store, seal: new SessionSeal(key) });
    const id = 'attacker-chosen-id';
    const forged: UiSessionRow = {
      idHash: sha256Hex(id),
      user: 'admin',
      role: 'admin',
      createdAt: Date.now(),
      lastSeenAt: Date.now(),
      remote: 'x',
      credential: 'cred',
      seal: new SessionSeal(Buffer.alloc(32, 9)).mac({
        idHash: sha256Hex(id),
        user: 'admin',
        role: 'admin',
        createdAt: Date.now(),
        remote: 'x',
        credential: 'cred',
      }),
    };
    await store.insert(forged, { now: Date.now(), idleMs: 1e6, absoluteMs: 1e7, maxSessions: 10, maxPerUser: 10 });
    expect(await s.touch(id)).toBeUndefined();
  });

  it('copies a live row under another id hash: refused (the hash is sealed)', async () => {
    const store = new WritableStore();
    const s = new SessionStore({ store, seal: new SessionSeal(key) });
    const { id } = await s.create('admin', 'admin', 'x', 'cred');
    const mine = 'attacker-chosen-id';
    const copy = { ...store.rows.get(sha256Hex(id))!, idHash: sha256Hex(mine) };
    await store.insert(copy, { now: Date.now(), idleMs: 1e6, absoluteMs: 1e7, maxSessions: 10, maxPerUser: 10 });
    expect(await s.touch(mine)).toBeUndefined();
    expect((await s.touch(id))?.role).toBe('admin');
  });
});

describe('fleet view sessions: the CSRF token', () => {
  it('is derived from the id, never stored: a reader of the table learns no token; every issuer of the key derives the same', async () => {
    const store = new WritableStore();
    const key = Buffer.alloc(32, 5);
    const a = new SessionStore({ store, seal: new SessionSeal(key) });
    const b = new SessionStore({ store, seal: new SessionSeal(Buffer.from(key)) });
    const { id, session } = await a.create('noc', 'viewer', 'x', 'cred');
    expect(Buffer.from(session.csrf, 'base64url')).toHaveLength(32);
    expect(JSON.stringify([...store.rows.values()])).not.toContain(session.csrf);
    expect((await a.touch(id))?.csrf).toBe(session.csrf);
    expect((await b.touch(id))?.csrf).toBe(session.csrf);
    const other = await a.create('noc', 'viewer', 'x', 'cred');
    expect(other.session.csrf).not.toBe(session.csrf);
    // Another key (another deployment) derives another token for the same id.
    expect(new SessionSeal(Buffer.alloc(32, 6)).csrfFor(id)).not.toBe(session.csrf);
  });

  it('refuses bounds below one', () => {
    expect(() => new SessionStore({ maxPerUser: 0 })).toThrow(TypeError);
    expect(() => new SessionStore({ maxSessions: 0 })).toThrow(TypeError);
  });
});

describe('fleet view sessions: what the policy checks itself', () => {
  /** A store that counts its calls and can hand back a row of the test's choosing. */
  class SpyStore extends MemorySessionStore {
    touches = 0;
    deletes = 0;
    answer: ((r: UiSessionRow | undefined) => UiSessionRow | undefined) | undefined;
    override async touch(h: string, now: number, idle: number, abs: number): Promise<UiSessionRow | undefined> {
      this.touches++;
      const r = await super.touch(h, now, idle, abs);
      return this.answer ? this.answer(r) : r;
    }
    override delete(h: string): Promise<boolean> {
      this.deletes++;
      return super.delete(h);
    }
  }

  it('a cookie longer than any id is never hashed nor looked up; an id of 100 characters is', async () => {
    const store = new SpyStore();
    const s = new SessionStore({ store });
    expect(await s.touch('x'.repeat(101))).toBeUndefined();
    expect(await s.destroy('x'.repeat(101))).toBe(false);
    expect([store.touches, store.deletes]).toEqual([0, 0]);
    await s.touch('x'.repeat(100));
    await s.destroy('x'.repeat(100));
    expect([store.touches, store.deletes]).toEqual([1, 1]);
  });

  it('refuses a row the store returns for another id, or with a role that is neither admin nor viewer, though sealed', async () => {
    const store = new SpyStore();
    const seal = new SessionSeal(Buffer.alloc(32, 1));
    const s = new SessionStore({ store, seal });
    const a = await s.create('alice', 'viewer', 'x', 'c');
    const b = await s.create('bob', 'viewer', 'x', 'c');
    const bobRow = await store.touch(sha256Hex(b.id), Date.now(), 1e9, 1e9);
    store.answer = () => bobRow;
    expect(await s.touch(a.id)).toBeUndefined();
    const root = { ...bobRow!, role: 'root' as unknown as 'admin' };
    store.answer = () => ({ ...root, seal: seal.mac(root) });
    expect(await s.touch(b.id)).toBeUndefined();
  });

  it('defaults: 15 min idle, 8 h lifetime (or the idle timeout when longer); limits at their edges', () => {
    const d = new SessionStore();
    expect([d.idleMs, d.absoluteMs]).toEqual([15 * 60_000, 8 * 3600_000]);
    expect(new SessionStore({ idleMs: 10 * 3600_000 }).absoluteMs).toBe(10 * 3600_000);
    expect(() => new SessionStore({ idleMs: 0 })).toThrow(/idleMs > 0/);
    expect(() => new SessionStore({ idleMs: 5, absoluteMs: 5, maxSessions: 1, maxPerUser: 1 })).not.toThrow();
    expect(() => new SessionStore({ maxSessions: 0 })).toThrow(/at least 1/);
  });
});

uiSessionSuite(() => new MemorySessionStore());
