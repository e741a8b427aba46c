import { describe, expect, it } from 'vitest';
import { checkSerial, serialHex, SERIAL_BYTES, timeOrderedSerial } from '../../../src/pki/serial.js';

// timeOrderedSerial (issue #14): what RFC 5280 §4.1.2.2 and the CA/Browser Forum ask of a serial
// still holds, and the hex form the store keys certificates by grows with the issuing time.
describe('timeOrderedSerial', () => {
  const t0 = Date.UTC(2026, 11, 5, 12, 0, 0);

  it('is 16 octets, positive without a pad octet, and valid for a certificate', () => {
    for (let i = 0; i < 200; i++) {
      const s = timeOrderedSerial(t0 + i);
      expect(s.length).toBe(SERIAL_BYTES);
      expect(s[0]! & 0x80).toBe(0);
      expect(s[0]).not.toBe(0);
      expect(() => checkSerial(s)).not.toThrow();
      expect(serialHex(s)).toHaveLength(2 * SERIAL_BYTES);
    }
  });

  it('carries the issuing millisecond in its first 6 octets', () => {
    expect(timeOrderedSerial(t0).readUIntBE(0, 6)).toBe(t0);
  });

  it('sorts by issuing time in its canonical hex form (the store key)', () => {
    const hex = [t0, t0 + 1, t0 + 1000, t0 + 86_400_000].map((t) => serialHex(timeOrderedSerial(t)));
    expect([...hex].sort()).toEqual(hex);
  });

  it('keeps 80 random bits: serials of one millisecond differ, and no random octet is constant', () => {
    const tails = Array.from({ length: 2000 }, () => timeOrderedSerial(t0).subarray(6).toString('hex'));
    expect(new Set(tails).size).toBe(tails.length);
    // Each of the 10 random octets takes many values over 2000 draws (a constant or a counter would not).
    for (let octet = 0; octet < 10; octet++) {
      const values = new Set(tails.map((t) => t.slice(2 * octet, 2 * octet + 2)));
      expect(values.size).toBeGreaterThan(200);
    }
  });

  it('falls back to a random serial for a clock outside 2004–6429 (a test clock)', () => {
    for (const t of [0, 1000, 2 ** 40 - 1, 2 ** 47, Number.NaN, 1.5e12 + 0.5]) {
      const s = timeOrderedSerial(t);
      expect(s.length).toBe(SERIAL_BYTES);
      expect(() => checkSerial(s)).not.toThrow();
    }
    // Not the clock's octets: two draws at t = 1000 differ from the start.
    expect(timeOrderedSerial(1000).subarray(0, 6)).not.toEqual(timeOrderedSerial(1000).subarray(0, 6));
  });
});
