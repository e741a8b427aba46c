/**
 * The ports the host builds for a join method (server/ops/join-port.ts, join/port.ts): reads
 * scoped to the method, and the single-use decisions of `commit` — each one conditional write,
 * so the second use of a token, a jti or a first-join binding loses even when both joins passed
 * their early checks (two racing joins).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { recordJti } from '../../../src/join/jwt-replay.js';
import { createJoinMethods, type JoinMethods } from '../../../src/join/server-methods.js';
import { attestPort, commitPort } from '../../../src/server/ops/join-port.js';
import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import type { Stores, TxStores } from '../../../src/server/store/types.js';
import { silentLogger } from '../../../src/util/log.js';

const T0 = 1_800_000_000_000;
let stores: Stores;
let methods: JoinMethods;

beforeEach(() => {
  stores = openSqliteStores(':memory:');
  methods = createJoinMethods({ log: silentLogger() });
});
afterEach(() => stores.close());

/** One join's issuing transaction, with the commit port the host hands the method inside it. */
const join = <T>(
  method: string,
  fn: (port: ReturnType<typeof commitPort>) => Promise<T>,
  instanceId = 'i-1',
): Promise<T> => stores.withWriteTx((tx: TxStores) => fn(commitPort(tx, methods.get(method)!, T0, instanceId)));

describe('commit port: single-use decisions', () => {
  it('a jti is recorded once; the second join with it is jwt_replayed', async () => {
    expect(await join('oidc', (tx) => tx.recordJti('https://idp', 'j-1', T0 + 60_000))).toBe(true);
    expect(await join('oidc', (tx) => tx.recordJti('https://idp', 'j-1', T0 + 60_000))).toBe(false);
    await expect(join('oidc', (tx) => recordJti(tx, 'https://idp', 'j-1', T0 / 1000 + 60, 60))).rejects.toMatchObject({
      code: 'jwt_replayed',
    });
    // Another issuer's jti of the same value is another token.
    expect(await join('oidc', (tx) => tx.recordJti('https://other', 'j-1', T0 + 60_000))).toBe(true);
  });

  it('a join token is used once', async () => {
    await stores.tokens.create({ hash: 'h1', bot: 'gw', createdAt: T0 - 1000, expiresAt: T0 + 60_000 });
    expect(await join('token', (tx) => tx.consumeToken('h1'), 'a')).toEqual({ ok: true });
    expect(await join('token', (tx) => tx.consumeToken('h1'), 'b')).toEqual({ ok: false, reason: 'token_reused' });
  });

  it('a use inside a transaction that is rolled back is not spent (a join refused later burns nothing)', async () => {
    await stores.tokens.create({ hash: 'h2', bot: 'gw', createdAt: T0 - 1000, expiresAt: T0 + 60_000 });
    const refused = join('token', async (tx) => {
      expect(await tx.consumeToken('h2')).toEqual({ ok: true });
      throw new Error('refused after the commit');
    });
    await expect(refused).rejects.toThrow('refused after the commit');
    expect(await join('token', (tx) => tx.consumeToken('h2'))).toEqual({ ok: true });
  });

  it('a first-join binding binds once, for the method the port belongs to', async () => {
    const first = await join('aws_iid', (tx) =>
      tx.bindKey({ subject: 'i-0abc', keyHash: 'sha256:aa', rule: 'r', facts: {} }),
    );
    const second = await join('aws_iid', (tx) =>
      tx.bindKey({ subject: 'i-0abc', keyHash: 'sha256:bb', rule: 'r', facts: {} }),
    );
    expect(first).toMatchObject({ method: 'aws_iid', keyHash: 'sha256:aa' });
    expect(second.keyHash).toBe('sha256:aa');
    const port = attestPort(stores, methods.get('aws_iid')!, () => T0, silentLogger());
    expect(await port.keyBinding('i-0abc')).toMatchObject({ keyHash: 'sha256:aa' });
    expect(
      await attestPort(stores, methods.get('x509')!, () => T0, silentLogger()).keyBinding('i-0abc'),
    ).toBeUndefined();
  });
});

describe('attest port: reads scoped to the method', () => {
  it('rules() returns only this method’s rules, parsed with its schema, in name order', async () => {
    await stores.resources.put(
      'join_rule',
      'b',
      { method: 'gcp', bot: 'gw', gcp: { audience: 'a', allow: [{ project_id: 'p' }] } },
      T0,
    );
    await stores.resources.put(
      'join_rule',
      'a',
      { method: 'gcp', bot: 'gw', gcp: { audience: 'a', allow: [{ project_id: 'q' }] } },
      T0,
    );
    await stores.resources.put(
      'join_rule',
      'c',
      { method: 'aws_iid', bot: 'gw', aws_iid: { allow: [{ account_id: '123456789012' }] } },
      T0,
    );
    const rules = await attestPort(stores, methods.get('gcp')!, () => T0, silentLogger()).rules<{ audience: string }>();
    expect(rules.map((r) => r.name)).toEqual(['a', 'b']);
    expect(rules[0]!.config.audience).toBe('a');
  });
});
