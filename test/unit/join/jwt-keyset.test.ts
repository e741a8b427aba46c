/**
 * Key sets for the JWT join methods (join/jwt-keyset.ts, jwt-verify.ts, jwt-discovery.ts), served over
 * HTTPS on loopback by a server with its own CA: caching by Cache-Control / Expires, one
 * refetch for an unknown kid (key rotation) and no more than one per 30 s, stale keys while the
 * issuer is unreachable, the operator's fallback file, Google's PEM-map format, what a key set
 * may hold, and the checks that need no key at all (alg none, HS256).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { createDiscoveryCache, discoverJwksUri, type DiscoveryCache } from '../../../src/join/jwt-discovery.js';
import {
  createKeySetCache,
  keySetFetches as fetchesIn,
  normalizeKeySet,
  ttlFromHeaders,
  type KeySetCache,
  type KeySetSource,
} from '../../../src/join/jwt-keyset.js';
import { verifyJwt, type JwtCheck } from '../../../src/join/jwt-verify.js';
import { tempDir } from '../../helpers/cli.js';
import { hmacWithPublicKey, newKey, TestTokenIssuer, unsignedToken } from '../../helpers/fake-oidc.js';
import { startHttpsServer, type HttpsLoopback } from '../../helpers/loopback-servers.js';

const tmp = tempDir('sigil-jwks-');
let idp: TestTokenIssuer;
let src: KeySetSource;
const T0 = Date.UTC(2030, 0, 1);
const claims = (now: number): Record<string, unknown> => ({
  iss: 'https://idp.test',
  aud: 'sigil',
  sub: 'x',
  iat: Math.floor(now / 1000),
  exp: Math.floor(now / 1000) + 600,
});
const check = (now: number, over: Partial<JwtCheck> = {}): JwtCheck => ({
  keys: src,
  cache: keySets,
  algorithms: ['RS256', 'ES256'],
  now,
  skewS: 60,
  ...over,
});

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    if (!(e instanceof SigilError)) throw e;
    return e.code;
  }
}

beforeAll(async () => {
  idp = new TestTokenIssuer([newKey('k1')]);
  await idp.start(tmp.path, ['/keys']);
  src = { url: `${idp.server.url}/keys`, ca: idp.server.caPem };
}, 60_000);

afterAll(async () => {
  await idp?.server.close();
  tmp.cleanup();
});

// A fresh issuer's caches for every test (they are per issuer, join/caches.ts).
let keySets: KeySetCache = createKeySetCache();
let discovery: DiscoveryCache = createDiscoveryCache();
const keySetFetches = (s: KeySetSource): number => fetchesIn(keySets, s);

beforeEach(() => {
  keySets = createKeySetCache();
  discovery = createDiscoveryCache();
  idp.published = [...idp.keys];
  idp.cacheControl = 'max-age=3600';
  idp.pemCerts = undefined;
});

describe('key set caching and refetching', () => {
  it('caches for max-age, then fetches again', async () => {
    await verifyJwt(await idp.sign(claims(T0), { now: T0 }), check(T0));
    await verifyJwt(await idp.sign(claims(T0 + 60_000), { now: T0 + 60_000 }), check(T0 + 60_000));
    expect(keySetFetches(src)).toBe(1);
    const later = T0 + 3601_000;
    await verifyJwt(await idp.sign(claims(later), { now: later }), check(later));
    expect(keySetFetches(src)).toBe(2);
  });

  it('reads Cache-Control and Expires, clamped to 1 min … 24 h', () => {
    expect(ttlFromHeaders({ 'cache-control': 'public, max-age=19845, must-revalidate' })).toBe(19845_000);
    expect(ttlFromHeaders({ 'cache-control': 'max-age=5' })).toBe(60_000);
    expect(ttlFromHeaders({ 'cache-control': 'max-age=999999' })).toBe(24 * 3600_000);
    expect(ttlFromHeaders({ 'cache-control': 'no-store' })).toBe(60_000);
    expect(ttlFromHeaders({ expires: 'Wed, 01 Jan 2030 01:00:00 GMT', date: 'Wed, 01 Jan 2030 00:00:00 GMT' })).toBe(
      3600_000,
    );
    expect(ttlFromHeaders({})).toBe(15 * 60_000);
  });

  it('a token with a new kid (key rotation) makes one refetch — but at most one per 30 s', async () => {
    await verifyJwt(await idp.sign(claims(T0), { now: T0 }), check(T0));
    const k2 = newKey('k2');
    idp.published = [...idp.keys, k2];
    // 10 s after the last fetch: not yet; the agent is told to come back (retryable).
    const early = await verifyJwt(
      await idp.sign(claims(T0 + 10_000), { key: k2, now: T0 + 10_000 }),
      check(T0 + 10_000),
    ).catch((e: unknown) => e);
    expect(early).toMatchObject({ code: 'jwt_kid_unknown', retryable: true, retryAfterMs: 30_000 });
    expect(keySetFetches(src)).toBe(1);
    // 31 s after: refetched, accepted.
    const v = await verifyJwt(await idp.sign(claims(T0 + 31_000), { key: k2, now: T0 + 31_000 }), check(T0 + 31_000));
    expect(v.header.kid).toBe('k2');
    expect(keySetFetches(src)).toBe(2);
    // A burst of made-up kids right after: no further fetches.
    for (let i = 0; i < 20; i++)
      expect(
        await code(
          verifyJwt(
            await idp.sign(claims(T0 + 32_000), { key: newKey(`junk-${i}`, 'ES256'), now: T0 + 32_000 }),
            check(T0 + 32_000 + i),
          ),
        ),
      ).toBe('jwt_kid_unknown');
    expect(keySetFetches(src)).toBe(2);
  });

  it('keeps using the last good key set while the issuer is unreachable, within 24 h', async () => {
    await verifyJwt(await idp.sign(claims(T0), { now: T0 }), check(T0));
    const gone: KeySetSource = { ...src };
    idp.server.handle(() => ({ status: 503 }));
    try {
      const later = T0 + 2 * 3600_000;
      await verifyJwt(await idp.sign(claims(later), { now: later }), check(later, { keys: gone }));
      expect(keySetFetches(src)).toBe(2); // it tried
      const muchLater = T0 + 26 * 3600_000;
      const e = await verifyJwt(await idp.sign(claims(muchLater), { now: muchLater }), check(muchLater)).catch(
        (x: unknown) => x,
      );
      expect(e).toMatchObject({ code: 'jwks_unavailable', retryable: true });
      expect((e as SigilError).message).toContain('HTTP 503');
    } finally {
      await idp.server.close();
      await idp.start(join(tmp.path, 'again'), ['/keys']);
      src = { url: `${idp.server.url}/keys`, ca: idp.server.caPem };
    }
  });

  it('uses the fallback file when the key set was never fetched; without one it is jwks_unavailable', async () => {
    const fallback = join(tmp.path, 'fallback.json');
    writeFileSync(fallback, JSON.stringify(await idp.jwks()));
    const down: KeySetSource = { url: 'https://127.0.0.1:1/keys', fallbackFile: fallback };
    const v = await verifyJwt(await idp.sign(claims(T0), { now: T0 }), check(T0, { keys: down }));
    expect(v.keyOrigin).toBe(fallback);
    expect(
      await code(
        verifyJwt(await idp.sign(claims(T0), { now: T0 }), check(T0, { keys: { url: 'https://127.0.0.1:1/other' } })),
      ),
    ).toBe('jwks_unavailable');
  });

  it('refuses a key set served with a certificate the rule does not trust', async () => {
    expect(await code(verifyJwt(await idp.sign(claims(T0), { now: T0 }), check(T0, { keys: { url: src.url } })))).toBe(
      'jwks_unavailable',
    );
  });
});

describe('key set contents', () => {
  it("reads Google's PEM map ({kid: certificate}) as well as a JWKS", async () => {
    const k = idp.keys[0]!;
    const keyFile = join(tmp.path, 'k1.pem');
    writeFileSync(keyFile, k.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const cert = execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-new',
        '-key',
        keyFile,
        '-subj',
        '/CN=securetoken.system.gserviceaccount.com',
        '-days',
        '2',
        '-config',
        writeReqConfig(),
      ],
      { encoding: 'utf8' },
    );
    idp.pemCerts = { k1: cert };
    const v = await verifyJwt(await idp.sign(claims(T0), { now: T0 }), check(T0));
    expect(v.header.kid).toBe('k1');
  });

  it('drops symmetric and private keys: a key set of only those is unusable', () => {
    expect(() => normalizeKeySet({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'h' }] })).toThrow(
      /no public signature key/,
    );
    expect(() => normalizeKeySet({ keys: [{ kty: 'RSA', n: 'AQAB', e: 'AQAB', d: 'AQAB', kid: 'p' }] })).toThrow(
      /no public signature key/,
    );
    expect(
      normalizeKeySet({
        keys: [
          { kty: 'oct', k: 'c2VjcmV0' },
          { kty: 'EC', crv: 'P-256', x: 'x', y: 'y', use: 'sig' },
          { kty: 'RSA', n: 'n', e: 'AQAB', use: 'enc' },
        ],
      }).keys,
    ).toHaveLength(1);
    expect(() => normalizeKeySet([1, 2])).toThrow();
  });
});

describe('checks before any key is looked at', () => {
  it('alg none and HS256 (keyed with the RSA public key) are jwt_alg_refused without fetching keys', async () => {
    expect(await code(verifyJwt(unsignedToken(claims(T0)), check(T0)))).toBe('jwt_alg_refused');
    expect(await code(verifyJwt(hmacWithPublicKey(claims(T0), idp.keys[0]!), check(T0)))).toBe('jwt_alg_refused');
    // ES256 where the rule allows only RS256:
    expect(
      await code(
        verifyJwt(
          await idp.sign(claims(T0), { key: newKey('e', 'ES256'), now: T0 }),
          check(T0, { algorithms: ['RS256'] }),
        ),
      ),
    ).toBe('jwt_alg_refused');
    expect(keySetFetches(src)).toBe(0);
    expect(await code(verifyJwt('a.b', check(T0)))).toBe('jwt_invalid');
    expect(await code(verifyJwt(`${'x'.repeat(20_000)}.y.z`, check(T0)))).toBe('jwt_invalid');
  });

  it('exp, nbf and iat are checked with the skew', async () => {
    const t = Math.floor(T0 / 1000);
    expect(
      await code(verifyJwt(await idp.sign({ ...claims(T0), exp: t - 30 }, { now: T0 }), check(T0))),
    ).toBeUndefined(); // within 60 s skew
    expect(await code(verifyJwt(await idp.sign({ ...claims(T0), exp: t - 61 }, { now: T0 }), check(T0)))).toBe(
      'jwt_expired',
    );
    expect(await code(verifyJwt(await idp.sign({ ...claims(T0), nbf: t + 120 }, { now: T0 }), check(T0)))).toBe(
      'jwt_not_yet_valid',
    );
    expect(await code(verifyJwt(await idp.sign({ ...claims(T0), iat: t + 120, nbf: t }, { now: T0 }), check(T0)))).toBe(
      'jwt_not_yet_valid',
    );
    const noExp = claims(T0);
    delete noExp.exp;
    // A token that never expires is not accepted at all.
    expect(await code(verifyJwt(await idp.sign({ ...noExp, exp: undefined }, { now: T0 }), check(T0)))).toBe(
      'jwt_invalid',
    );
  });
});

describe('OIDC discovery', () => {
  let disc: HttpsLoopback;
  beforeAll(async () => {
    disc = await startHttpsServer(
      join(tmp.path, 'disc'),
      (_req, url) => {
        if (url.pathname === '/good/.well-known/openid-configuration')
          return { body: { issuer: `${disc.url}/good`, jwks_uri: `${disc.url}/good/jwks` } };
        if (url.pathname === '/liar/.well-known/openid-configuration')
          return { body: { issuer: 'https://elsewhere.test', jwks_uri: `${disc.url}/good/jwks` } };
        return { status: 404 };
      },
      'disc',
    );
  }, 60_000);
  afterAll(() => disc?.close());

  it('takes jwks_uri only from a document naming exactly the configured issuer', async () => {
    expect(await discoverJwksUri(discovery, `${disc.url}/good`, disc.caPem, T0)).toBe(`${disc.url}/good/jwks`);
    const e = await discoverJwksUri(discovery, `${disc.url}/liar`, disc.caPem, T0).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'jwks_unavailable' });
    expect((e as SigilError).message).toContain('elsewhere.test');
  });
});

function writeReqConfig(): string {
  const f = join(tmp.path, 'req.cnf');
  writeFileSync(f, '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n');
  return f;
}
