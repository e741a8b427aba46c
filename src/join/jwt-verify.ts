/**
 * Verifying a signed JWT (RFC 7519) from a cloud or CI token issuer, with jose, every failed
 * check mapped to its own code:
 *
 *   not a compact JWS / JWT, bad JSON           jwt_invalid
 *   alg not in the rule's list (none, HS256…)   jwt_alg_refused   — checked before any key is
 *                                                                    looked at: the classic
 *                                                                    "RSA public key as HMAC
 *                                                                    secret" confusion never
 *                                                                    reaches a verifier
 *   kid not in the key set (after one refetch)  jwt_kid_unknown
 *   signature                                   jwt_signature_invalid
 *   exp ≤ now − skew (or too old by iat)        jwt_expired
 *   nbf or iat > now + skew                     jwt_not_yet_valid
 *
 * `iss` decides which key set applies, so callers compare it (from {@link peekJwt}) before
 * verifying; `aud` differs per join rule, so callers compare it after, with {@link audienceOf}.
 */
import { decodeJwt, decodeProtectedHeader, jwtVerify, type JWTHeaderParameters, type JWTPayload } from 'jose';
import { SigilError } from '../errors.js';
import {
  keySetFor,
  refetchForUnknownKid,
  type KeyResolver,
  type KeySetCache,
  type KeySetSource,
} from './jwt-keyset.js';

/** Asymmetric JWS algorithms (RFC 7518 §3.1) a rule may accept. */
export const ASYMMETRIC_ALGS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;
export type JwsAlg = (typeof ASYMMETRIC_ALGS)[number];

export const MAX_TOKEN_BYTES = 16 * 1024;

export interface JwtCheck {
  keys: KeySetSource;
  /** The issuer's key-set cache (join/caches.ts). */
  cache: KeySetCache;
  algorithms: readonly JwsAlg[];
  /** The issuer's clock, unix ms. */
  now: number;
  /** Allowed clock difference for exp/nbf/iat, seconds. */
  skewS: number;
  /** When set, `iat` is required and the token may be at most this old (seconds). */
  maxAgeS?: number;
}

export interface PeekedJwt {
  header: JWTHeaderParameters;
  claims: JWTPayload;
}

export interface VerifiedJwt extends PeekedJwt {
  /** Where the verifying key came from (key set URL or file). */
  keyOrigin: string;
}

/** Header and claims, unverified: only to route the token (by `iss`) to the rules that trust it. */
export function peekJwt(token: string): PeekedJwt {
  if (token.length > MAX_TOKEN_BYTES)
    throw new SigilError('jwt_invalid', `the token is ${token.length} bytes (at most ${MAX_TOKEN_BYTES})`);
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token))
    throw new SigilError('jwt_invalid', 'the token is not a compact JWS (three base64url parts separated by dots)');
  try {
    return { header: decodeProtectedHeader(token) as JWTHeaderParameters, claims: decodeJwt(token) };
  } catch (e) {
    throw new SigilError('jwt_invalid', `the token does not decode: ${(e as Error).message}`);
  }
}

/** The token's `aud` as a list (RFC 7519 §4.1.3: a string or an array of strings). */
export function audienceOf(claims: JWTPayload): string[] {
  const aud = claims.aud;
  return typeof aud === 'string'
    ? [aud]
    : Array.isArray(aud)
      ? aud.filter((a): a is string => typeof a === 'string')
      : [];
}

export async function verifyJwt(token: string, check: JwtCheck): Promise<VerifiedJwt> {
  const { header } = peekJwt(token);
  const alg = String(header.alg ?? '');
  if (!(check.algorithms as readonly string[]).includes(alg)) {
    throw new SigilError(
      'jwt_alg_refused',
      `the token is signed with alg "${alg || '(none)'}"; this rule accepts ${check.algorithms.join(', ')}`,
    );
  }
  const kid = typeof header.kid === 'string' ? header.kid : undefined;
  let set = await keySetFor(check.cache, check.keys, check.now);
  let origin = set.origin;
  const getKey = async (h: JWTHeaderParameters): Promise<Awaited<ReturnType<KeyResolver>>> => {
    try {
      return await set.resolver(h);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS')
        throw new SigilError(
          'jwt_kid_unknown',
          `the token names no key id (kid) and ${set.origin} holds several ${alg} keys`,
        );
      if (code !== 'ERR_JWKS_NO_MATCHING_KEY') throw e;
      const again = await refetchForUnknownKid(check.cache, check.keys, check.now);
      const what = kid === undefined ? `no ${alg} key` : `no ${alg} key with kid "${kid.slice(0, 80)}"`;
      if (again === undefined)
        throw new SigilError('jwt_kid_unknown', `${what} in ${set.origin} (fetched again at most every 30 s)`, {
          retryAfterMs: 30_000,
        });
      set = again;
      origin = again.origin;
      try {
        return await again.resolver(h);
      } catch {
        throw new SigilError('jwt_kid_unknown', `${what} in ${again.origin}, even after fetching it again`);
      }
    }
  };
  try {
    const r = await jwtVerify(token, getKey, {
      algorithms: [alg],
      currentDate: new Date(check.now),
      clockTolerance: check.skewS,
      requiredClaims: ['exp', 'iss'],
      ...(check.maxAgeS !== undefined ? { maxTokenAge: check.maxAgeS } : {}),
    });
    const claims = r.payload;
    // jose checks iat only with maxTokenAge; a token "issued" in the future is not valid yet either.
    if (typeof claims.iat === 'number' && claims.iat > check.now / 1000 + check.skewS) {
      throw new SigilError(
        'jwt_not_yet_valid',
        `the token was issued (iat) at ${iso(claims.iat)}, after the issuer's time ${new Date(check.now).toISOString()} (skew ${check.skewS} s)`,
      );
    }
    return { header: r.protectedHeader, claims, keyOrigin: origin };
  } catch (e) {
    throw mapJoseError(e, token);
  }
}

const iso = (s: number): string => new Date(s * 1000).toISOString();

function mapJoseError(e: unknown, token: string): SigilError {
  if (e instanceof SigilError) return e;
  const err = e as { code?: string; claim?: string; reason?: string; message?: string };
  const claims = (() => {
    try {
      return decodeJwt(token);
    } catch {
      return {} as JWTPayload;
    }
  })();
  switch (err.code) {
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new SigilError('jwt_signature_invalid', 'the token signature does not verify with the key its kid names');
    case 'ERR_JWT_EXPIRED':
      return new SigilError(
        'jwt_expired',
        err.claim === 'iat'
          ? `the token was issued at ${iso(Number(claims.iat))}, longer ago than its allowed age`
          : `the token expired at ${iso(Number(claims.exp))}`,
      );
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (err.claim === 'nbf')
        return new SigilError('jwt_not_yet_valid', `the token is not valid before ${iso(Number(claims.nbf))}`);
      if (err.claim === 'iat' && err.reason === 'check_failed')
        return new SigilError(
          'jwt_not_yet_valid',
          `the token was issued (iat) at ${iso(Number(claims.iat))}, in the future`,
        );
      return new SigilError('jwt_invalid', `claim "${err.claim ?? '?'}": ${err.message ?? 'invalid'}`);
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return new SigilError('jwt_alg_refused', err.message ?? 'algorithm not accepted');
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JWK_INVALID':
    case 'ERR_JWKS_INVALID':
      return new SigilError('jwt_invalid', err.message ?? 'malformed token');
    default:
      // jose refuses keys unfit for the algorithm (RSA under 2048 bits…) with a TypeError.
      if (e instanceof TypeError)
        return new SigilError('jwt_signature_invalid', `the key cannot verify this token: ${e.message}`);
      return new SigilError('internal', undefined, { cause: e });
  }
}
