/**
 * The behaviour every issuer store backend must show (SPIRE's habit: one suite, every backend).
 * A backend's test file calls `storeConformance(name, open)`; `open` returns fresh, empty stores.
 */
import { afterEach, beforeEach, describe } from 'vitest';
import type { Stores } from '../../../../src/server/store/types.js';
import { bindingSuites } from './bindings.js';
import { identitySuites } from './identity.js';
import { recordSuites } from './records.js';
import { txSuite } from './tx.js';

export interface Backend {
  stores: Stores;
  dispose(): void;
}

export function storeConformance(name: string, open: () => Backend): void {
  describe(`store conformance: ${name}`, () => {
    let b: Backend;
    beforeEach(() => {
      b = open();
    });
    afterEach(() => b.dispose());
    const stores = (): Stores => b.stores;

    recordSuites(stores);
    identitySuites(stores);
    txSuite(stores);
    bindingSuites(stores);
  });
}
