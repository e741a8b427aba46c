/**
 * The `jti` replay cache (RFC 7519 §4.1.7): a token that carries a jti joins once. The early
 * check in `attest` gives a precise refusal; the decision is `recordJti` in `Attested.commit`,
 * one conditional INSERT inside the issuing transaction, so of two concurrent joins with one
 * token exactly one wins, and a join refused later (locked bot, bad CSR) burns nothing.
 *
 * Rows are kept until the token's `exp` plus the clock skew — after that the token is refused
 * as expired anyway — and pruned as joins go by.
 */
import { SigilError } from '../errors.js';
import type { JoinAttestPort, JoinCommitPort } from './port.js';

export const MAX_JTI_LENGTH = 256;

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
  if (!(await tx.recordJti(issuer, jti, expSeconds * 1000 + skewS * 1000))) throw replayed(issuer, jti);
}

function replayed(issuer: string, jti: string): SigilError {
  return new SigilError(
    'jwt_replayed',
    `the token ${JSON.stringify(jti.slice(0, 64))} from ${issuer} was already used for a join; fetch a fresh token`,
  );
}
