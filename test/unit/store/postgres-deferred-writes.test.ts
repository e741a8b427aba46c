/**
 * The instance update of a renewal, sent without waiting for its round trip inside withWriteTx
 * (store/postgres/instances.ts recordIssue): it must still fail the whole transaction when the
 * instance does not exist, with the store's own "no instance" error (not the SQL trick that
 * signals it), leaving nothing of the transaction behind; and it must be in place for the
 * transaction's later statements.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresStores, type PostgresStores } from '../../../src/server/store/postgres/index.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';
import { instance } from './conformance/fixtures.js';

let pg: Postgres;
let stores: PostgresStores;
const T0 = 1_700_000_000_000;
const issue = {
  generation: 2,
  serial: '0a',
  notAfter: T0 + 3600_000,
  keyStorage: 'software' as const,
  exportable: true,
  now: T0,
};

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  stores = openPostgresStores(pg.url(pg.createDatabase('deferred')));
  await stores.ready;
}, 60_000);

afterAll(async () => {
  await stores?.close();
  await pg?.stop();
});

describe('recordIssue inside a transaction, sent without waiting', () => {
  it('an unknown instance fails the transaction with "no instance", and nothing of it is written', async () => {
    await expect(
      stores.withWriteTx(async (tx) => {
        await tx.resources.put('role', 'left-behind', {}, T0);
        await tx.instances.recordIssue('nope', issue);
        await tx.audit.append({ action: 'renew', outcome: 'ok' }, T0);
      }),
    ).rejects.toThrow(/recordIssue: no instance with id "nope"/);
    expect(await stores.resources.get('role', 'left-behind')).toBeUndefined();
    expect(await stores.audit.head()).toBeUndefined();
  });

  it('a known instance is updated, and later statements of the transaction see it', async () => {
    await stores.instances.create(instance('i-1'));
    const seen = await stores.withWriteTx(async (tx) => {
      await tx.instances.recordIssue('i-1', issue);
      return (await tx.instances.get('i-1'))?.generation;
    });
    expect(seen).toBe(2);
    expect((await stores.instances.get('i-1'))?.generation).toBe(2);
  });
});
