/** The store conformance suite on the async SQLite stores: on a file (separate read connection) and in memory (reads queued). */
import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import { storeConformance } from './conformance/index.js';
import { tempDir } from './helpers.js';

storeConformance('sqlite file', () => {
  const t = tempDir();
  const stores = openSqliteStores(t.dbPath);
  return {
    stores,
    async dispose() {
      await stores.close();
      t.remove();
    },
  };
});

storeConformance('sqlite :memory:', () => {
  const stores = openSqliteStores(':memory:');
  return { stores, dispose: () => stores.close() };
});
