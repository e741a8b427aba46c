import { SigilError } from '../errors.js';

/** Hard cap for every credential Sigil issues (ARCHITECTURE principle 3). */
export const MAX_TTL_S = 24 * 3600;
/** Shortest lifetime we issue; shorter requests are clamped up, like longer ones are clamped down. */
export const MIN_TTL_S = 30;
export const DEFAULT_TTL_S = 3600;

const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * Parse a duration such as `90s`, `15m`, `1h`, `1h30m`, `2d`, or a bare number of seconds.
 * Throws `ttl_invalid` (or `code` if given) on anything else.
 */
export function parseDuration(
  input: string | number,
  code: 'ttl_invalid' | 'config_invalid' | 'policy_invalid' = 'ttl_invalid',
): number {
  if (typeof input === 'number') {
    if (input > 0 && Number.isSafeInteger(input)) return input;
    throw new SigilError(code, `invalid duration ${String(input)}: expected a positive whole number of seconds`);
  }
  const s = String(input).trim();
  if (/^\d+$/.test(s)) return parseDuration(Number(s), code);
  const re = /(\d+)([smhd])/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * UNIT_S[m[2]!]!;
    consumed = re.lastIndex;
  }
  if (s.length === 0 || consumed !== s.length || total <= 0 || !Number.isSafeInteger(total)) {
    throw new SigilError(code, `invalid duration "${s.slice(0, 40)}": use forms like 90s, 15m, 1h, 1h30m`);
  }
  return total;
}

export function formatDuration(seconds: number): string {
  const r = Math.round(seconds);
  const sign = r < 0 ? '-' : '';
  let s = Math.abs(r);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const parts: string[] = [];
  if (h) parts.push(`${h}h`);
  if (m) parts.push(`${m}m`);
  if (s || parts.length === 0) parts.push(`${s}s`);
  return sign + parts.join('');
}
