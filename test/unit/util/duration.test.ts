import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { DEFAULT_TTL_S, formatDuration, MAX_TTL_S, MIN_TTL_S, parseDuration } from '../../../src/util/duration.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof SigilError ? e.code : `not a SigilError: ${String(e)}`;
  }
  return undefined;
}

describe('parseDuration', () => {
  it.each([
    ['90s', 90],
    ['15m', 900],
    ['1h', 3600],
    ['24h', 86400],
    ['1h30m', 5400],
    ['1h30m15s', 5415],
    ['2d', 172800],
    ['1d1s', 86401],
    ['3600', 3600],
    ['  1h\n', 3600],
    ['007m', 420],
    ['0h5m', 300],
  ])('%j → %i s', (input, want) => {
    expect(parseDuration(input)).toBe(want);
  });

  it('accepts positive whole numbers of seconds', () => {
    expect(parseDuration(1)).toBe(1);
    expect(parseDuration(86400)).toBe(86400);
  });

  it.each([
    '',
    '   ',
    '0',
    '0s',
    '0h0m',
    '-1h',
    '+1h',
    '1.5h',
    '1e3',
    '1H',
    '1w',
    '1 h',
    '1h 30m',
    'h',
    '1hh',
    'h1',
    '30m-',
    '1h,30m',
    '１h',
  ])('%j → ttl_invalid', (input) => {
    expect(codeOf(() => parseDuration(input))).toBe('ttl_invalid');
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, -Infinity])('number %d → ttl_invalid', (n) => {
    expect(codeOf(() => parseDuration(n))).toBe('ttl_invalid');
  });

  it('a total that is not a safe integer is refused', () => {
    expect(codeOf(() => parseDuration('99999999999999999999d'))).toBe('ttl_invalid');
    expect(codeOf(() => parseDuration('9007199254740993s'))).toBe('ttl_invalid');
  });

  it('a bare number that is not a safe integer is refused like the unit form', () => {
    expect(codeOf(() => parseDuration('99999999999999999999'))).toBe('ttl_invalid');
  });

  it('throws the requested code and quotes (a bounded prefix of) the input', () => {
    expect(codeOf(() => parseDuration('soon', 'config_invalid'))).toBe('config_invalid');
    expect(codeOf(() => parseDuration(0, 'policy_invalid'))).toBe('policy_invalid');
    let msg = '';
    try {
      parseDuration('x'.repeat(1000));
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/use forms like 90s, 15m, 1h/);
    expect(msg.length).toBeLessThan(200);
  });

  it('the constants are ordered: MIN < DEFAULT < MAX = 24 h', () => {
    expect(MIN_TTL_S).toBeLessThan(DEFAULT_TTL_S);
    expect(DEFAULT_TTL_S).toBe(3600);
    expect(MAX_TTL_S).toBe(86400);
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [1, '1s'],
    [59, '59s'],
    [60, '1m'],
    [61, '1m1s'],
    [3600, '1h'],
    [3661, '1h1m1s'],
    [5400, '1h30m'],
    [86400, '24h'],
    [90000, '25h'],
    [1.4, '1s'],
    [1.6, '2s'],
    [-90, '-1m30s'],
  ])('%d → %s', (n, want) => {
    expect(formatDuration(n)).toBe(want);
  });

  it('round-trips through parseDuration for positive whole seconds', () => {
    for (const n of [1, 30, 59, 60, 61, 899, 3599, 3600, 3601, 5415, 86399, 86400, 172800, 999_999]) {
      expect(parseDuration(formatDuration(n))).toBe(n);
    }
  });

  it('a negative value that rounds to zero prints as "0s"', () => {
    expect(formatDuration(-0.4)).toBe('0s');
  });
});
