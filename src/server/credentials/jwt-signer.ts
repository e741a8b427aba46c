/**
 * The issuer's JWT-SVID signing key (ES256, RFC 7518 §3.4) and its public JWK.
 *
 * `kid` is the key's JWK thumbprint (RFC 7638: SHA-256 over the required members crv, kty, x, y
 * in lexical order, no whitespace), so it is stable, derived from the key alone, and a verifier
 * can tell a rotated key apart without any registry.
 */
import { createHash, createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { b64u } from '../../protocol/jws.js';

export interface PublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  alg: 'ES256';
  use: 'sig';
}

/** JWT-SVID claims (SPIFFE JWT-SVID §3) plus the OIDC `iss`/`iat`/`nbf` verifiers expect. */
export interface JwtSvidClaims {
  iss: string;
  /** The SPIFFE ID. */
  sub: string;
  /** One audience as a string, several as an array (RFC 7519 §4.1.3). */
  aud: string | string[];
  iat: number;
  nbf: number;
  exp: number;
  jti: string;
  /**
   * Private claims (JWT-SVID §3 allows them) so relying parties can scope per bot and per
   * machine without parsing the SPIFFE ID, e.g. Vault claim_mappings → templated policies.
   */
  sigil_bot: string;
  sigil_instance: string;
}

export function jwkThumbprint(jwk: { crv: string; kty: string; x: string; y: string }): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

/** The public JWK (with its thumbprint `kid`) of a P-256 key, private or public. */
export function publicJwk(key: KeyObject): PublicJwk {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new TypeError('the JWT signing key must be ECDSA P-256');
  const pub = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'jwk' });
  const base = { kty: 'EC' as const, crv: 'P-256' as const, x: pub.x!, y: pub.y! };
  return { ...base, kid: jwkThumbprint(base), alg: 'ES256', use: 'sig' };
}

export class JwtSigner {
  readonly jwk: PublicJwk;
  readonly publicKey: KeyObject;

  constructor(private readonly key: KeyObject) {
    this.jwk = publicJwk(key);
    this.publicKey = createPublicKey(key);
  }

  get kid(): string {
    return this.jwk.kid;
  }

  /** A compact JWS (RFC 7515 §7.1) over the claims; header {alg: ES256, kid, typ: JWT}. */
  sign(claims: JwtSvidClaims): string {
    const header = b64u.encode(JSON.stringify({ alg: 'ES256', kid: this.kid, typ: 'JWT' }));
    const payload = b64u.encode(JSON.stringify(claims));
    const sig = cryptoSign('sha256', Buffer.from(`${header}.${payload}`, 'ascii'), {
      key: this.key,
      dsaEncoding: 'ieee-p1363',
    });
    return `${header}.${payload}.${b64u.encode(sig)}`;
  }
}
