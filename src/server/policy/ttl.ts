import { DEFAULT_TTL_S, MAX_TTL_S, MIN_TTL_S } from '../../util/duration.js';

export interface TtlDecision {
  ttlS: number;
  requestedS: number;
  /** True when the agent asked for more (or less) than allowed and got the bound instead. */
  clamped: boolean;
}

/**
 * Clamp a requested TTL into [MIN_TTL_S, min(role max, 24 h)]. Clamping is never an error
 * (ARCHITECTURE principle 3): the response says what was granted and that it was clamped.
 */
export function decideTtl(requestedS: number | undefined, roleMaxS: number): TtlDecision {
  const max = Math.min(roleMaxS, MAX_TTL_S);
  const want = requestedS ?? DEFAULT_TTL_S;
  const ttlS = Math.max(MIN_TTL_S, Math.min(want, max));
  return { ttlS, requestedS: want, clamped: requestedS !== undefined && ttlS !== requestedS };
}
