/**
 * The `jti` replay cache (RFC 7519 §4.1.7): a token that carries a jti joins once. The early
 * check in `attest` gives a precise refusal; the decision is `recordJti` in `Attested.commit`,
 * one conditional INSERT inside the issuing transaction, so of two concurrent joins with one
 * token exactly one wins, and a join refused later (locked bot, bad CSR) burns nothing.
 *
 * Rows are kept until the token's `exp` plus the LARGEST skew any rule may allow
 * ({@link MAX_JWT_SKEW_S}) — after that every rule refuses the token as expired — and pruned as
 * joins go by. Not the accepting rule's own skew: two rules may trust one issuer with different
 * skews, and a token spent under the stricter one was then forgotten while the laxer one still
 * took it (review of issue #16).
 */
import { SigilError } from '../errors.js';
import type { JoinAttestPort, JoinCommitPort } from './port.js';

export const MAX_JTI_LENGTH = 256;

/** The largest clock skew a join rule may allow for exp/nbf/iat (oidc `skew`: at most 5 min). */
export const MAX_JWT_SKEW_S = 300;

export function jtiOf(claims: { jti?: unknown }): string | undefined {
  const j = claims.jti;
  if (j === undefined) return undefined;
  if (typeof j !== 'string' || j.length === 0 || j.length > MAX_JTI_LENGTH)
    throw new SigilError('jwt_invalid', `the jti claim must be a string of 1-${MAX_JTI_LENGTH} characters`);
  return j;
}

export async function checkNotReplayed(
  port: Pick<JoinAttestPort, 'jtiSeen'>,
  issuer: string,
  jti: string | undefined,
): Promise<void> {
  if (jti !== undefined && (await port.jtiSeen(issuer, jti))) throw replayed(issuer, jti);
}

/** Inside the issuing transaction: record the use, or refuse the replay. */
export async function recordJti(
  tx: Pick<JoinCommitPort, 'recordJti'>,
  issuer: string,
  jti: string | undefined,
  expSeconds: number,
  skewS: number,
): Promise<void> {
  if (jti === undefined) return;
  const keepS = Math.max(skewS, MAX_JWT_SKEW_S);
  if (!(await tx.recordJti(issuer, jti, expSeconds * 1000 + keepS * 1000))) throw replayed(issuer, jti);
}

function replayed(issuer: string, jti: string): SigilError {
  return new SigilError(
    'jwt_replayed',
    `the token ${JSON.stringify(jti.slice(0, 64))} from ${issuer} was already used for a join; fetch a fresh token`,
  );
}
