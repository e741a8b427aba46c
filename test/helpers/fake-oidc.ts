/**
 * A token issuer for the JWT-based join tests (gcp, oidc, azure managed identity): RSA and EC
 * keys made with node:crypto, tokens signed with jose in the providers' real shapes, its JWKS
 * (or Google's PEM map) served over HTTPS on loopback by a server with its own CA, and the
 * broken tokens the verifiers must refuse: `alg: none`, HS256 keyed with the RSA public key
 * (the key-confusion attack), unknown kid.
 */
import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { exportJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
import { startHttpsServer, type HttpsLoopback, type Reply } from './loopback-servers.js';

export interface IssuerKey {
  kid: string;
  alg: 'RS256' | 'ES256';
  privateKey: KeyObject;
  publicKey: KeyObject;
}

const b64u = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

export function newKey(kid: string, alg: 'RS256' | 'ES256' = 'RS256'): IssuerKey {
  const pair =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, alg, ...pair };
}

export class TestTokenIssuer {
  /** Keys published in the JWKS. */
  published: IssuerKey[];
  /** Extra Cache-Control header for the JWKS answer. */
  cacheControl: string | undefined = 'max-age=3600';
  /** Serve Google's PEM map ({kid: certificate PEM}) instead of a JWKS. */
  pemCerts: Record<string, string> | undefined;
  server!: HttpsLoopback;

  constructor(readonly keys: IssuerKey[]) {
    this.published = [...keys];
  }

  async jwks(): Promise<{ keys: JWK[] }> {
    return {
      keys: await Promise.all(
        this.published.map(async (k) => ({ ...(await exportJWK(k.publicKey)), kid: k.kid, alg: k.alg, use: 'sig' })),
      ),
    };
  }

  /**
   * Serve the key set at every path in `paths`; with `discovery`, also an OIDC discovery
   * document at <prefix>/.well-known/openid-configuration naming issuer <base><prefix> and
   * jwks_uri <base><prefix>/jwks, for any prefix.
   */
  async start(dir: string, paths: string[], discovery = false): Promise<HttpsLoopback> {
    this.server = await startHttpsServer(dir, async (_req, url): Promise<Reply> => {
      const p = url.pathname;
      if (discovery && p.endsWith('/.well-known/openid-configuration')) {
        const prefix = p.slice(0, -'/.well-known/openid-configuration'.length);
        return { body: { issuer: `${this.server.url}${prefix}`, jwks_uri: `${this.server.url}${prefix}/jwks` } };
      }
      if (!paths.includes(p) && !(discovery && p.endsWith('/jwks'))) return { status: 404 };
      return {
        headers: this.cacheControl ? { 'cache-control': this.cacheControl } : {},
        body: this.pemCerts ?? (await this.jwks()),
      };
    });
    return this.server;
  }

  /** A token signed by `key` (default the first), with `claims` (iat/exp default to now/+5 min). */
  sign(
    claims: JWTPayload,
    opts: { key?: IssuerKey; kid?: string | null; now?: number; header?: Record<string, unknown> } = {},
  ): Promise<string> {
    const key = opts.key ?? this.keys[0]!;
    const now = Math.floor((opts.now ?? Date.now()) / 1000);
    const header = {
      alg: key.alg,
      typ: 'JWT',
      ...(opts.kid === null ? {} : { kid: opts.kid ?? key.kid }),
      ...opts.header,
    };
    return new SignJWT({ iat: now, nbf: now, exp: now + 300, ...claims })
      .setProtectedHeader(header as { alg: string })
      .sign(key.privateKey);
  }
}

/** `alg: none` with an empty signature (RFC 7519 §6 "unsecured JWT"). */
export function unsignedToken(claims: JWTPayload): string {
  return `${b64u({ alg: 'none', typ: 'JWT' })}.${b64u(claims)}.`;
}

/** HS256 keyed with the issuer's RSA public key (PEM): the classic key-confusion forgery. */
export function hmacWithPublicKey(claims: JWTPayload, key: IssuerKey): string {
  const head = `${b64u({ alg: 'HS256', typ: 'JWT', kid: key.kid })}.${b64u(claims)}`;
  const secret = key.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}
