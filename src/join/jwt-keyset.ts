/**
 * Where the keys that verify a token issuer's JWTs come from, and how they are cached.
 *
 *  - `url`: a key set fetched over HTTPS — a JWKS (RFC 7517 §5) or the PEM map Google also
 *    publishes (`{"<kid>": "-----BEGIN CERTIFICATE-----…"}`). Cached for as long as the answer's
 *    `Cache-Control: max-age` (or `Expires`) says, clamped to 1 min … 24 h (15 min when it says
 *    nothing). A token whose `kid` is not in the cached set triggers one refetch — issuers
 *    rotate keys by publishing the new one first — but at most once per 30 s per key set, so a
 *    stream of tokens with made-up `kid`s cannot turn the issuer into a request amplifier.
 *    When a refetch fails, the last good set is used for up to 24 h past its freshness; before
 *    any fetch succeeded, the `fallbackFile` (a snapshot the operator keeps) is used.
 *  - `file`: a static key set on disk (a Kubernetes cluster's service-account keys exported
 *    with `kubectl get --raw /openid/v1/jwks`), re-read when the file changes.
 *
 * Only public signature keys are kept: members with private parts (`d`), symmetric keys
 * (`kty: oct`) and keys marked for encryption are dropped, so an HS256 token can never be
 * checked against anything.
 */
import { statSync, readFileSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { createLocalJWKSet, type JSONWebKeySet, type JWK } from 'jose';
import { SigilError } from '../errors.js';
import { describeHttpError, httpRequest } from './http.js';

export interface KeySetSource {
  url?: string | undefined;
  file?: string | undefined;
  fallbackFile?: string | undefined;
  /** Extra trust anchors (PEM text) for `url`. */
  ca?: string | undefined;
}

export type KeyResolver = ReturnType<typeof createLocalJWKSet>;

export interface LoadedKeySet {
  resolver: KeyResolver;
  size: number;
  /** Where these keys came from, for messages: the URL, "fallback FILE" or the file. */
  origin: string;
}

export const KEYSET_LIMITS = {
  minTtlMs: 60_000,
  defaultTtlMs: 15 * 60_000,
  maxTtlMs: 24 * 3600_000,
  /** Unknown-kid refetches: at most one per this interval per key set. */
  refetchIntervalMs: 30_000,
  /** How long past its freshness a set is used when refetching fails. */
  maxStaleMs: 24 * 3600_000,
  maxKeys: 100,
} as const;

/** Turn a fetched or read document into a JWKS of public signature keys; throws a plain Error. */
export function normalizeKeySet(doc: unknown): JSONWebKeySet {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('not a JSON object');
  let keys: JWK[];
  if (Array.isArray((doc as { keys?: unknown }).keys)) {
    keys = (doc as { keys: unknown[] }).keys.filter(
      (k): k is JWK => k !== null && typeof k === 'object' && !Array.isArray(k),
    );
  } else {
    // Google's PEM map: { kid: PEM certificate }.
    keys = Object.entries(doc as Record<string, unknown>).map(([kid, pem]) => {
      if (typeof pem !== 'string' || !pem.includes('-----BEGIN CERTIFICATE-----'))
        throw new Error(`member "${kid.slice(0, 40)}" is neither a JWKS "keys" array nor a PEM certificate`);
      const jwk = new X509Certificate(pem).publicKey.export({ format: 'jwk' }) as JWK;
      return { ...jwk, kid, use: 'sig', ...(jwk.kty === 'RSA' ? { alg: 'RS256' } : {}) };
    });
  }
  const usable = keys.filter(
    (k) =>
      typeof k.kty === 'string' && k.kty !== 'oct' && k.d === undefined && (k.use === undefined || k.use === 'sig'),
  );
  if (usable.length === 0) throw new Error('holds no public signature key');
  if (usable.length > KEYSET_LIMITS.maxKeys)
    throw new Error(`holds ${usable.length} keys (at most ${KEYSET_LIMITS.maxKeys})`);
  return { keys: usable };
}

/** Cache lifetime from the answer's headers (RFC 9111 §5.2.2.1 max-age, §5.3 Expires). */
export function ttlFromHeaders(headers: Record<string, string | string[] | undefined>): number {
  const cc = String(headers['cache-control'] ?? '');
  const clamp = (ms: number): number => Math.min(KEYSET_LIMITS.maxTtlMs, Math.max(KEYSET_LIMITS.minTtlMs, ms));
  if (/\b(no-store|no-cache)\b/i.test(cc)) return KEYSET_LIMITS.minTtlMs;
  const m = /\bmax-age\s*=\s*"?(\d+)"?/i.exec(cc);
  if (m) return clamp(Number(m[1]) * 1000);
  const expires = Date.parse(String(headers.expires ?? ''));
  if (!Number.isNaN(expires)) {
    const date = Date.parse(String(headers.date ?? ''));
    return clamp(expires - (Number.isNaN(date) ? Date.now() : date));
  }
  return KEYSET_LIMITS.defaultTtlMs;
}

export interface Entry {
  set: LoadedKeySet | undefined;
  freshUntil: number;
  lastAttempt: number;
  lastError: string | undefined;
  inflight: Promise<void> | undefined;
  fetches: number;
}

/**
 * One issuer's fetched and read key sets (created with its join methods, join/caches.ts): two
 * issuers in one process, or two tests, never share a cached key set.
 */
export interface KeySetCache {
  readonly remote: Map<string, Entry>;
  readonly files: Map<string, { mtimeMs: number; size: number; set: LoadedKeySet }>;
}

export function createKeySetCache(): KeySetCache {
  return { remote: new Map(), files: new Map() };
}

const MAX_ENTRIES = 256;

function loadFile({ files }: KeySetCache, path: string, what: string): LoadedKeySet {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new SigilError(
      'join_rule_unusable',
      `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  const hit = files.get(path);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.set;
  let jwks: JSONWebKeySet;
  try {
    jwks = normalizeKeySet(JSON.parse(readFileSync(path, 'utf8')));
  } catch (e) {
    throw new SigilError('join_rule_unusable', `${what} ${path}: ${(e as Error).message}`);
  }
  const set = { resolver: createLocalJWKSet(jwks), size: jwks.keys.length, origin: path };
  if (files.size >= MAX_ENTRIES) files.delete(files.keys().next().value!);
  files.set(path, { mtimeMs: st.mtimeMs, size: st.size, set });
  return set;
}

function cacheKey(src: KeySetSource): string {
  return `${src.url}\n${src.ca === undefined ? '' : createHash('sha256').update(src.ca).digest('hex')}`;
}

async function fetchInto(e: Entry, src: KeySetSource, now: number): Promise<void> {
  e.lastAttempt = now;
  e.fetches++;
  try {
    const res = await httpRequest({
      url: src.url!,
      headers: { accept: 'application/json' },
      ...(src.ca !== undefined ? { ca: src.ca } : {}),
    });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    const jwks = normalizeKeySet(JSON.parse(res.body.toString('utf8')));
    e.set = { resolver: createLocalJWKSet(jwks), size: jwks.keys.length, origin: src.url! };
    e.freshUntil = now + ttlFromHeaders(res.headers);
    e.lastError = undefined;
  } catch (err) {
    e.lastError = err instanceof SyntaxError ? 'not JSON' : describeHttpError(err);
  }
}

async function refresh(e: Entry, src: KeySetSource, now: number): Promise<void> {
  if (e.inflight === undefined) e.inflight = fetchInto(e, src, now).finally(() => (e.inflight = undefined));
  await e.inflight;
}

function usable(c: KeySetCache, e: Entry, src: KeySetSource, now: number): LoadedKeySet {
  if (e.set !== undefined && now <= e.freshUntil + KEYSET_LIMITS.maxStaleMs) return e.set;
  if (src.fallbackFile !== undefined) return loadFile(c, src.fallbackFile, 'fallback key set');
  throw new SigilError(
    'jwks_unavailable',
    `the key set at ${src.url} cannot be fetched (${e.lastError ?? 'no answer yet'}) and no earlier copy is usable`,
    { retryAfterMs: 30_000 },
  );
}

/** The current key set of `src` (fetching or re-reading it when due). */
export async function keySetFor(c: KeySetCache, src: KeySetSource, now: number): Promise<LoadedKeySet> {
  if (src.url === undefined) {
    if (src.file === undefined) throw new TypeError('keySetFor: a key set needs a url or a file');
    return loadFile(c, src.file, 'key set file');
  }
  const { remote } = c;
  const key = cacheKey(src);
  let e = remote.get(key);
  if (e === undefined) {
    if (remote.size >= MAX_ENTRIES) remote.delete(remote.keys().next().value!);
    e = {
      set: undefined,
      freshUntil: 0,
      lastAttempt: -Infinity,
      lastError: undefined,
      inflight: undefined,
      fetches: 0,
    };
    remote.set(key, e);
  }
  if (e.set === undefined || now > e.freshUntil) {
    // Due (or never fetched). Failed attempts are retried no more often than unknown kids are.
    if (e.set === undefined || now - e.lastAttempt >= KEYSET_LIMITS.refetchIntervalMs) await refresh(e, src, now);
  }
  return usable(c, e, src, now);
}

/**
 * After a token named a `kid` the cached set lacks: refetch unless one was done within the
 * last 30 s. Returns the (possibly new) set, or undefined when no refetch was allowed.
 */
export async function refetchForUnknownKid(
  c: KeySetCache,
  src: KeySetSource,
  now: number,
): Promise<LoadedKeySet | undefined> {
  if (src.url === undefined) return undefined;
  const e = c.remote.get(cacheKey(src));
  if (e === undefined) return keySetFor(c, src, now);
  if (now - e.lastAttempt < KEYSET_LIMITS.refetchIntervalMs) return undefined;
  await refresh(e, src, now);
  return usable(c, e, src, now);
}

/** How many times `src` was fetched (tests, metrics). */
export function keySetFetches(c: KeySetCache, src: KeySetSource): number {
  return c.remote.get(cacheKey(src))?.fetches ?? 0;
}
