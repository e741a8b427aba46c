/**
 * The store-backed gauge (server/metrics/issuer-metrics.ts): the store is async, rendering is
 * not, so `registry.scrape()` (what GET /metrics serves) samples the store first — a scrape shows
 * the certificates as of that scrape, never a stale or empty cache.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createIssuerMetrics, STORE_SAMPLE_MS } from '../../../src/server/metrics/issuer-metrics.js';
import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import type { Stores } from '../../../src/server/store/types.js';

const T0 = 1_800_000_000_000;
let stores: Stores;

beforeEach(() => {
  stores = openSqliteStores(':memory:');
});
afterEach(() => stores.close());

async function issue(id: string, serial: string, notAfter: number): Promise<void> {
  await stores.withWriteTx(async (tx) => {
    await tx.instances.create({
      id,
      bot: 'gw',
      joinMethod: 'token',
      spiffeId: `spiffe://example.org/bot/gw/${id}`,
      generation: 0,
      facts: {},
      keyStorage: 'software',
      exportable: true,
      createdAt: T0,
    });
    await tx.certificates.insert({
      serial,
      instanceId: id,
      bot: 'gw',
      generation: 1,
      notBefore: T0,
      notAfter,
      kind: 'x509-svid',
      keyStorage: 'software',
      exportable: true,
      spkiHash: 'sha256:00',
      requestId: `r-${id}`,
      issuedAt: T0,
    });
    await tx.instances.recordIssue(id, {
      generation: 1,
      serial,
      notAfter,
      keyStorage: 'software',
      exportable: true,
      now: T0,
    });
  });
}

describe('sigil_certificates_expiring_soon', () => {
  it('a scrape reads the store at most once per STORE_SAMPLE_MS; concurrent scrapes share one read', async () => {
    // GET /metrics is open: a store query per scrape let anyone hold the event loop (review of issue #16).
    let t = T0;
    const metrics = createIssuerMetrics(stores, () => t);
    const line = (text: string): string | undefined =>
      text.split('\n').find((l) => l.startsWith('sigil_certificates_expiring_soon{'));
    expect(line(await metrics.registry.scrape())).toBeUndefined();
    await issue('i-1', 'aa01', T0 + 5 * 60_000);
    await issue('i-2', 'aa02', T0 + 3600_000);
    // Within the interval: the earlier sample.
    t = T0 + STORE_SAMPLE_MS - 1;
    expect(line(await metrics.registry.scrape())).toBeUndefined();
    t = T0 + STORE_SAMPLE_MS;
    const reads = { n: 0 };
    const real = stores.certificates.expiringBefore.bind(stores.certificates);
    stores.certificates.expiringBefore = async (...a) => (reads.n++, real(...a));
    try {
      const texts = await Promise.all([1, 2, 3, 4].map(() => metrics.registry.scrape()));
      for (const text of texts) expect(line(text)).toBe('sigil_certificates_expiring_soon{bot="gw"} 1');
      expect(reads.n).toBe(1);
    } finally {
      stores.certificates.expiringBefore = real;
    }
  });
});
