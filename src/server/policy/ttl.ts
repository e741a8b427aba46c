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
  // The role's bound wins over the floor: a role may grant less than MIN_TTL_S only if the
  // schema allowed it (it does not), never more than it says.
  const ttlS = Math.min(Math.max(MIN_TTL_S, want), max);
  return { ttlS, requestedS: want, clamped: requestedS !== undefined && ttlS !== requestedS };
}
