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
import type { Stores } from '../../../src/server/store/types.js';
import { silentLogger } from '../../../src/util/log.js';

const T0 = 1_800_000_000_000;
let stores: Stores;
let methods: JoinMethods;

beforeEach(() => {
  stores = openSqliteStores(':memory:');
  methods = createJoinMethods({ log: silentLogger() });
});
afterEach(() => stores.close());

const tx = (method: string, instanceId = 'i-1') => commitPort(stores, methods.get(method)!, T0, instanceId);

describe('commit port: single-use decisions', () => {
  it('a jti is recorded once; the second join with it is jwt_replayed', () => {
    expect(tx('oidc').recordJti('https://idp', 'j-1', T0 + 60_000)).toBe(true);
    expect(tx('oidc').recordJti('https://idp', 'j-1', T0 + 60_000)).toBe(false);
    expect(() => recordJti(tx('oidc'), 'https://idp', 'j-1', T0 / 1000 + 60, 60)).toThrow(
      expect.objectContaining({ code: 'jwt_replayed' }),
    );
    // Another issuer's jti of the same value is another token.
    expect(tx('oidc').recordJti('https://other', 'j-1', T0 + 60_000)).toBe(true);
  });

  it('a join token is used once', () => {
    stores.tokens.create({ hash: 'h1', bot: 'gw', createdAt: T0 - 1000, expiresAt: T0 + 60_000 });
    expect(tx('token', 'a').consumeToken('h1')).toEqual({ ok: true });
    expect(tx('token', 'b').consumeToken('h1')).toEqual({ ok: false, reason: 'token_reused' });
  });

  it('a first-join binding binds once, for the method the port belongs to', async () => {
    const first = tx('aws_iid').bindKey({ subject: 'i-0abc', keyHash: 'sha256:aa', rule: 'r', facts: {} });
    const second = tx('aws_iid').bindKey({ subject: 'i-0abc', keyHash: 'sha256:bb', rule: 'r', facts: {} });
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
    stores.resources.put(
      'join_rule',
      'b',
      { method: 'gcp', bot: 'gw', gcp: { audience: 'a', allow: [{ project_id: 'p' }] } },
      T0,
    );
    stores.resources.put(
      'join_rule',
      'a',
      { method: 'gcp', bot: 'gw', gcp: { audience: 'a', allow: [{ project_id: 'q' }] } },
      T0,
    );
    stores.resources.put(
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
