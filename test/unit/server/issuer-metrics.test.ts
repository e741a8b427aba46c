/**
 * The store-backed gauge (server/metrics/issuer-metrics.ts): the store is async, rendering is
 * not, so `registry.scrape()` (what GET /metrics serves) samples the store first — a scrape shows
 * the certificates as of that scrape, never a stale or empty cache.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createIssuerMetrics } from '../../../src/server/metrics/issuer-metrics.js';
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
  it('each scrape reads the store as it is then', async () => {
    const metrics = createIssuerMetrics(stores, () => T0);
    const line = (text: string): string | undefined =>
      text.split('\n').find((l) => l.startsWith('sigil_certificates_expiring_soon{'));
    expect(line(await metrics.registry.scrape())).toBeUndefined();
    await issue('i-1', 'aa01', T0 + 5 * 60_000);
    await issue('i-2', 'aa02', T0 + 3600_000);
    expect(line(await metrics.registry.scrape())).toBe('sigil_certificates_expiring_soon{bot="gw"} 1');
  });
});
