import { describe, expect, it } from 'vitest';
import { decideTtl } from '../../../src/server/policy/ttl.js';
import { MAX_TTL_S, MIN_TTL_S } from '../../../src/util/duration.js';

const DAY = 86400;

describe('decideTtl', () => {
  it('defaults to 1 h when nothing is requested (not clamped)', () => {
    expect(decideTtl(undefined, DAY)).toEqual({ ttlS: 3600, requestedS: 3600, clamped: false });
  });

  it('grants a request within bounds as is', () => {
    expect(decideTtl(7200, DAY)).toEqual({ ttlS: 7200, requestedS: 7200, clamped: false });
    expect(decideTtl(MIN_TTL_S, DAY)).toEqual({ ttlS: MIN_TTL_S, requestedS: MIN_TTL_S, clamped: false });
    expect(decideTtl(DAY, DAY)).toEqual({ ttlS: DAY, requestedS: DAY, clamped: false });
  });

  it('48 h → 24 h, clamped (never an error)', () => {
    expect(decideTtl(48 * 3600, DAY)).toEqual({ ttlS: DAY, requestedS: 48 * 3600, clamped: true });
  });

  it('a role max above 24 h is still capped at 24 h', () => {
    expect(decideTtl(48 * 3600, 7 * DAY)).toEqual({ ttlS: MAX_TTL_S, requestedS: 48 * 3600, clamped: true });
    expect(decideTtl(undefined, 7 * DAY).ttlS).toBe(3600);
  });

  it('role max 30 m bounds both an explicit request and the default', () => {
    expect(decideTtl(3600, 1800)).toEqual({ ttlS: 1800, requestedS: 3600, clamped: true });
    expect(decideTtl(900, 1800)).toEqual({ ttlS: 900, requestedS: 900, clamped: false });
    const d = decideTtl(undefined, 1800);
    expect(d.ttlS).toBe(1800);
    expect(d.requestedS).toBe(3600);
  });

  it('below the minimum → raised to 30 s, clamped', () => {
    expect(decideTtl(5, DAY)).toEqual({ ttlS: MIN_TTL_S, requestedS: 5, clamped: true });
    expect(decideTtl(1, 1800)).toEqual({ ttlS: MIN_TTL_S, requestedS: 1, clamped: true });
  });

  it('the granted TTL never exceeds the role maximum', () => {
    expect(decideTtl(undefined, 10).ttlS).toBeLessThanOrEqual(10);
  });
});
