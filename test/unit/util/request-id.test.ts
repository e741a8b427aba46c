import { describe, expect, it } from 'vitest';
import { requestIdSchema } from '../../../src/protocol/requests.js';
import { newRequestId } from '../../../src/util/secret.js';

const octets = (id: string): Buffer => Buffer.from(id, 'base64url');

describe('newRequestId', () => {
  it('is 22 base64url characters the protocol accepts, beginning with the millisecond it was made', () => {
    const now = Date.UTC(2026, 11, 5, 13, 0, 0, 123);
    const id = newRequestId(now);
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(requestIdSchema.safeParse(id).success).toBe(true);
    expect(octets(id).readUIntBE(0, 6)).toBe(now);
  });

  it('ids made within one 4.096 s window share their first 6 characters (the issuer index stays local)', () => {
    // 6 base64url characters are the top 36 of the 48 time bits: they change every 2^12 ms.
    const t = Math.floor(Date.UTC(2026, 11, 5, 13, 0, 0, 0) / 4096) * 4096;
    const a = newRequestId(t);
    const b = newRequestId(t + 900);
    expect(a.slice(0, 6)).toBe(b.slice(0, 6));
  });

  it('carries 80 random bits after the time: 2,000 ids of one millisecond are all different', () => {
    const t = Date.now();
    const ids = Array.from({ length: 2000 }, () => newRequestId(t));
    expect(new Set(ids).size).toBe(2000);
    // The random part varies in every one of its 10 octets across the sample.
    for (let i = 6; i < 16; i++) expect(new Set(ids.map((id) => octets(id)[i])).size).toBeGreaterThan(100);
  });

  it('a clock outside 0 … 2^48 ms (a test clock) gets 128 random bits', () => {
    const ids = [-1, 2 ** 48, Number.NaN, 1.5].map((t) => newRequestId(t));
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(new Set(ids.map((id) => id.slice(0, 8))).size).toBe(4);
  });
});
