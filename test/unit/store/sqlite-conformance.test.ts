/** The store conformance suite on the async SQLite stores: on a file (separate read connection) and in memory (reads queued). */
import { openAsyncSqliteStores } from '../../../src/server/store/sqlite/async.js';
import { storeConformance } from './conformance/index.js';
import { tempDir } from './helpers.js';

storeConformance('sqlite file', () => {
  const t = tempDir();
  const stores = openAsyncSqliteStores(t.dbPath);
  return {
    stores,
    async dispose() {
      await stores.close();
      t.remove();
    },
  };
});

storeConformance('sqlite :memory:', () => {
  const stores = openAsyncSqliteStores(':memory:');
  return { stores, dispose: () => stores.close() };
});
