import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import { storeConformance } from './conformance/index.js';
import { tempDir } from './helpers.js';

storeConformance('sqlite', () => {
  const t = tempDir();
  const stores = openSqliteStores(t.dbPath);
  return {
    stores,
    dispose() {
      stores.close();
      t.remove();
    },
  };
});
