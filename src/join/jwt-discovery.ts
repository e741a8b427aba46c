/**
 * OpenID Connect Discovery 1.0 (§4): where an issuer publishes its key set, for join rules that
 * name an issuer but no `jwks_url` or `jwks_file` (a Kubernetes cluster's service-account
 * issuer, Terraform Cloud, …). The document's `issuer` must be exactly the configured issuer
 * (§4.3 — otherwise a compromised or confused discovery endpoint could point at any keys), and
 * `jwks_uri` must be https. Cached like key sets (Cache-Control / Expires, keyset.ts).
 */
import { createHash } from 'node:crypto';
import { SigilError } from '../errors.js';
import { describeHttpError, httpRequest } from './http.js';
import { KEYSET_LIMITS, ttlFromHeaders } from './jwt-keyset.js';

interface DiscoveryEntry {
  jwksUri: string | undefined;
  freshUntil: number;
  lastAttempt: number;
  lastError: string | undefined;
}
/** One issuer's discovered `jwks_uri`s, by issuer and CA (join/caches.ts). */
export type DiscoveryCache = Map<string, DiscoveryEntry>;

export function createDiscoveryCache(): DiscoveryCache {
  return new Map();
}

export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

export async function discoverJwksUri(
  cache: DiscoveryCache,
  issuer: string,
  ca: string | undefined,
  now: number,
): Promise<string> {
  const key = `${issuer}\n${ca === undefined ? '' : createHash('sha256').update(ca).digest('hex')}`;
  let e = cache.get(key);
  if (e === undefined) {
    if (cache.size >= 256) cache.delete(cache.keys().next().value!);
    e = { jwksUri: undefined, freshUntil: 0, lastAttempt: -Infinity, lastError: undefined };
    cache.set(key, e);
  }
  const due = e.jwksUri === undefined || now > e.freshUntil;
  if (due && now - e.lastAttempt >= KEYSET_LIMITS.refetchIntervalMs) {
    e.lastAttempt = now;
    try {
      const res = await httpRequest({
        url: discoveryUrl(issuer),
        headers: { accept: 'application/json' },
        ...(ca !== undefined ? { ca } : {}),
      });
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      const doc = JSON.parse(res.body.toString('utf8')) as { issuer?: unknown; jwks_uri?: unknown };
      if (doc.issuer !== issuer) throw new Error(`it names issuer ${JSON.stringify(doc.issuer)}, not ${issuer}`);
      if (typeof doc.jwks_uri !== 'string' || !doc.jwks_uri.startsWith('https://'))
        throw new Error('its jwks_uri is not an https URL');
      e.jwksUri = doc.jwks_uri;
      e.freshUntil = now + ttlFromHeaders(res.headers);
      e.lastError = undefined;
    } catch (err) {
      e.lastError = err instanceof SyntaxError ? 'not JSON' : describeHttpError(err);
    }
  }
  if (e.jwksUri !== undefined && now <= e.freshUntil + KEYSET_LIMITS.maxStaleMs) return e.jwksUri;
  throw new SigilError(
    'jwks_unavailable',
    `the discovery document ${discoveryUrl(issuer)} cannot be used (${e.lastError ?? 'no answer yet'}); set jwks_url or jwks_file in the join rule`,
    { retryAfterMs: 30_000 },
  );
}
