/** Roles decide credentials (server/policy/credentials.ts): first role that allows all of it, never merged, never widened. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { decideCredential, expandTraits, type CredentialAsk } from '../../../src/server/policy/credentials.js';
import { applyResources, parseResources } from '../../../src/server/policy/resources.js';
import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import type { Stores } from '../../../src/server/store/types.js';

let stores: Stores;
beforeEach(async () => {
  stores = openSqliteStores(':memory:');
  await applyResources(
    stores,
    parseResources(`
kind: role
name: literal
spec: { max_ttl: 30m, allowed_outputs: [ssh_user, database], ssh_logins: [backup], db_users: [app, report] }
---
kind: role
name: templated
spec: { max_ttl: 4h, allowed_outputs: [ssh_user, jwt], ssh_logins: ["{{internal.logins}}"], ssh_extensions: [permit-pty, permit-agent-forwarding], jwt_audiences: [vault] }
---
kind: role
name: nothing
spec: {}
---
kind: bot
name: ops
spec: { roles: [literal, templated], traits: { logins: [ops, deploy] } }
---
kind: bot
name: bare
spec: { roles: [nothing] }
`),
    Date.now(),
  );
});
afterEach(() => stores.close());

async function denied(bot: string, ask: CredentialAsk): Promise<SigilError> {
  try {
    await decideCredential(stores, bot, ask);
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('decideCredential', () => {
  it('the first role (bot order) that allows the whole request decides, with its TTL bound and extensions', async () => {
    const a = await decideCredential(stores, 'ops', { kind: 'ssh_user', logins: ['backup'], ttlS: 7200 });
    expect(a).toMatchObject({
      role: 'literal',
      principals: ['backup'],
      extensions: ['permit-pty'],
      ttl: { ttlS: 1800, clamped: true },
    });
    const b = await decideCredential(stores, 'ops', { kind: 'ssh_user', logins: ['ops'], ttlS: 7200 });
    expect(b).toMatchObject({
      role: 'templated',
      principals: ['ops'],
      extensions: ['permit-pty', 'permit-agent-forwarding'],
      ttl: { ttlS: 7200, clamped: false },
    });
  });

  it('never merges roles: logins from two roles in one certificate are refused', async () => {
    const e = await denied('ops', { kind: 'ssh_user', logins: ['backup', 'ops'] });
    expect(e.code).toBe('role_denied');
    expect(e.message).toBe(
      'role literal does not allow login ops (ssh_logins); role templated does not allow login backup (ssh_logins)',
    );
  });

  it('an omitted list means everything the deciding role grants; an omitted single user needs exactly one', async () => {
    expect(await decideCredential(stores, 'ops', { kind: 'ssh_user' })).toMatchObject({
      role: 'literal',
      principals: ['backup'],
    });
    expect((await denied('ops', { kind: 'database' })).message).toBe(
      'role literal grants several database users (app, report); the request must name one (db_users)',
    );
    expect(await decideCredential(stores, 'ops', { kind: 'database', dbUser: 'report' })).toMatchObject({
      dbUser: 'report',
    });
  });

  it('names allowed_outputs when no role allows the kind', async () => {
    expect((await denied('bare', { kind: 'jwt', audiences: ['vault'] })).message).toBe(
      'role nothing does not allow output jwt (allowed_outputs)',
    );
    expect((await denied('ops', { kind: 'kubernetes' })).message).toBe(
      'no role of bot ops (literal, templated) allows output kubernetes (allowed_outputs)',
    );
  });

  it('JWT: default TTL is short (5 min), audiences are required', async () => {
    expect((await decideCredential(stores, 'ops', { kind: 'jwt', audiences: ['vault'] })).ttl.ttlS).toBe(300);
    expect((await denied('ops', { kind: 'jwt' })).code).toBe('bad_request');
  });
});

describe('trait templates', () => {
  it('expands whole-value templates and drops values unusable as names', () => {
    expect(
      expandTraits(['{{internal.logins}}', 'root', '{{ internal.missing }}'], { logins: ['a', 'b c', 'd,e', 'a'] }),
    ).toEqual(['a', 'root']);
  });

  it('a partial template in a role is refused at apply time', () => {
    expect(() => parseResources('kind: role\nname: r\nspec: { ssh_logins: ["user-{{internal.logins}}"] }\n')).toThrow(
      /a template must be the whole value/,
    );
    expect(() => parseResources('kind: role\nname: r\nspec: { ssh_extensions: [permit-everything] }\n')).toThrow();
  });
});
