/**
 * The behaviour every issuer store backend must show (SPIRE's habit: one suite, every backend),
 * written against the async contract (src/server/store/types.ts) only, so a second backend
 * (PostgreSQL, issue #15) runs it unchanged. A backend's test file calls
 * `storeConformance(name, open)`; `open` returns fresh, empty stores.
 */
import { afterEach, beforeEach, describe } from 'vitest';
import type { Stores } from '../../../../src/server/store/types.js';
import { bindingSuites } from './bindings.js';
import { concurrencySuite } from './concurrency.js';
import { fleetSuite } from './fleet.js';
import { identitySuites } from './identity.js';
import { issuerRegistrySuite } from './issuers.js';
import { mergeFactsSuite } from './merge-facts.js';
import { recordSuites } from './records.js';
import { txSuite } from './tx.js';
import { uiSessionSuite } from './ui-sessions.js';

export interface Backend {
  stores: Stores;
  dispose(): Promise<void>;
}

export function storeConformance(name: string, open: () => Backend | Promise<Backend>): void {
  describe(`store conformance: ${name}`, () => {
    let b: Backend;
    beforeEach(async () => {
      b = await open();
    });
    afterEach(() => b.dispose());
    const stores = (): Stores => b.stores;

    recordSuites(stores);
    identitySuites(stores);
    txSuite(stores);
    concurrencySuite(stores);
    bindingSuites(stores);
    fleetSuite(stores);
    issuerRegistrySuite(stores);
    mergeFactsSuite(stores);
    uiSessionSuite(() => b.stores.uiSessions);
  });
}
