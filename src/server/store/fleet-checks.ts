/**
 * The checks on the values of a fleet view query (store/fleet-query.ts, fleet-audit-query.ts):
 * each refusal is SigilError('bad_request') naming the field and what was wrong with it, before
 * anything reaches the database.
 */
import { SigilError } from '../../errors.js';

/** Longest exact-match filter value (bot, join method, actor, …). */
export const MAX_FILTER = 512;

export function badQuery(field: string, why: string): SigilError {
  return new SigilError('bad_request', `fleet query: ${field} ${why}`);
}

export function checkInt(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw badQuery(field, `must be an integer from ${min} to ${max} (got ${describeValue(v)})`);
  return v;
}

export function checkTime(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v))
    throw badQuery(field, `must be a time in unix ms (got ${describeValue(v)})`);
  return v;
}

/** An exact-match filter value: a string, not too long, no NUL (PostgreSQL text cannot hold one). */
export function checkText(field: string, v: unknown, max = MAX_FILTER): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw badQuery(field, `must be a string (got ${describeValue(v)})`);
  if (v.length > max) throw badQuery(field, `is longer than ${max} characters (${v.length})`);
  if (v.includes('\u0000')) throw badQuery(field, 'contains a NUL character');
  return v;
}

export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return typeof v;
}
