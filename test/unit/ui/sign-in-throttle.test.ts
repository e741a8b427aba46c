import { describe, expect, it } from 'vitest';
import { SignInThrottle } from '../../../src/server/ui/sign-in-throttle.js';

describe('sign-in throttle', () => {
  it('allows `burst` failures per source, then refuses until one refills', () => {
    const c = { t: 0 };
    const th = new SignInThrottle({ burst: 3, refillMs: 1000, now: () => c.t });
    for (let i = 0; i < 3; i++) {
      expect(th.retryAfterMs('a')).toBe(0);
      th.failed('a');
    }
    expect(th.retryAfterMs('a')).toBe(1000);
    expect(th.retryAfterMs('b')).toBe(0);
    c.t += 400;
    expect(th.retryAfterMs('a')).toBe(600);
    c.t += 600;
    expect(th.retryAfterMs('a')).toBe(0);
    th.failed('a');
    expect(th.retryAfterMs('a')).toBeGreaterThan(0);
    c.t += 10_000;
    expect(th.retryAfterMs('a')).toBe(0);
  });

  it('keeps at most maxKeys sources', () => {
    const th = new SignInThrottle({ burst: 1, maxKeys: 2 });
    th.failed('a');
    th.failed('b');
    th.failed('c');
    expect(th.retryAfterMs('a')).toBe(0);
    expect(th.retryAfterMs('c')).toBeGreaterThan(0);
  });
});
