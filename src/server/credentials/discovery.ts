/**
 * What relying parties fetch to trust Sigil-issued credentials without talking to Sigil's API:
 *
 *   GET /.well-known/openid-configuration   OIDC Discovery 1.0 §3 metadata: issuer + jwks_uri.
 *                                           Vault's JWT auth (oidc_discovery_url), AWS/GCP
 *                                           workload identity federation and jose fetch this.
 *   GET /v1/jwks                            RFC 7517 JWK Set of the JWT-SVID signing key(s)
 *   GET /v1/bundle/spiffe                   SPIFFE Trust Domain and Bundle §4: one JWK Set with
 *                                           the X.509 root (use x509-svid, x5c) and the JWT keys
 *                                           (use jwt-svid, kid), for SPIFFE-aware verifiers
 *
 * The issuer URL is the one configured with `sigil server start --public-url`; it must be the
 * exact `iss` of every JWT-SVID, and `<issuer>/.well-known/openid-configuration` must reach us.
 */
import { X509Certificate } from 'node:crypto';
import { SigilError } from '../../errors.js';
import type { IssuerContext } from '../issuer.js';
import { keysChangedAt, publishedJwks } from './authorities.js';

/** How long verifiers may cache the key sets (seconds); also the SPIFFE refresh hint. */
export const KEYS_MAX_AGE_S = 300;

function publicUrl(ctx: IssuerContext): string {
  if (!ctx.publicUrl) throw new SigilError('unavailable', 'the issuer public URL is not set yet');
  return ctx.publicUrl;
}

export function openIdConfiguration(ctx: IssuerContext): Record<string, unknown> {
  const issuer = publicUrl(ctx);
  return {
    issuer,
    jwks_uri: `${issuer}/v1/jwks`,
    // Required by OIDC Discovery §3 even though Sigil issues no ID tokens to browsers; AWS IAM
    // and GCP workload identity federation read these when an OIDC provider is registered.
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['ES256'],
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'sigil_bot', 'sigil_instance'],
  };
}

/** The signing key, then a staged one and retired ones still trusted (credentials/authorities.ts publishedJwks). */
export function jwks(ctx: Pick<IssuerContext, 'credentials' | 'now'>): { keys: Array<Record<string, unknown>> } {
  return { keys: publishedJwks(ctx.credentials, ctx.now()).map((k) => ({ ...k })) };
}

export function spiffeBundle(ctx: IssuerContext): Record<string, unknown> {
  const root = new X509Certificate(ctx.ca.rootDer);
  const rootJwk = root.publicKey.export({ format: 'jwk' });
  const now = ctx.now();
  const jwtKeys = publishedJwks(ctx.credentials, now).map(({ alg: _alg, use: _use, ...k }) => ({
    ...k,
    use: 'jwt-svid',
  }));
  return {
    keys: [
      {
        kty: rootJwk.kty,
        crv: rootJwk.crv,
        x: rootJwk.x,
        y: rootJwk.y,
        use: 'x509-svid',
        x5c: [ctx.ca.rootDer.toString('base64')],
      },
      ...jwtKeys,
    ],
    // Monotonic per bundle content: the keys change with a new root, a JWT key rotation, or a
    // retired JWT key's trust ending (credentials/authorities.ts keysChangedAt).
    spiffe_sequence: Math.max(
      Math.floor(new Date(root.validFrom).getTime() / 1000),
      keysChangedAt(ctx.credentials, now),
    ),
    spiffe_refresh_hint: KEYS_MAX_AGE_S,
  };
}
