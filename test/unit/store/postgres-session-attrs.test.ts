/**
 * Which servers of a multi-host URL an issuer may settle on (store/postgres/connection.ts
 * issuerSessionAttrs): never a standby. The driver's own `read-write` accepts a hot standby (it
 * checks only default_transaction_read_only), so read-write and "unset" become `primary`; the
 * end-to-end proof with a real standby listed first is test/e2e/postgres-standby-promote.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { issuerSessionAttrs } from '../../../src/server/store/postgres/connection.js';

const base = 'postgres://sigil@db1:5432,db2:5432/sigil';

describe('issuerSessionAttrs', () => {
  it('read-write, primary and unset all mean: a server that is not in recovery', () => {
    expect(issuerSessionAttrs(`${base}?target_session_attrs=read-write`, {})).toBe('primary');
    expect(issuerSessionAttrs(`${base}?sslmode=require&target_session_attrs=primary`, {})).toBe('primary');
    expect(issuerSessionAttrs(base, {})).toBe('primary');
    expect(issuerSessionAttrs(base, { PGTARGETSESSIONATTRS: 'read-write' })).toBe('primary');
  });

  it('any is kept when asked for explicitly (the URL wins over the environment)', () => {
    expect(issuerSessionAttrs(`${base}?target_session_attrs=any`, { PGTARGETSESSIONATTRS: 'standby' })).toBe(null);
  });

  it('refuses the kinds an issuer could not write on, naming the setting', () => {
    for (const kind of ['read-only', 'standby', 'prefer-standby']) {
      let err: unknown;
      try {
        issuerSessionAttrs(`${base}?target_session_attrs=${kind}`, {});
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SigilError);
      expect(err).toMatchObject({
        code: 'config_invalid',
        message: expect.stringContaining(`target_session_attrs=${kind}`),
      });
    }
    expect(() => issuerSessionAttrs(base, { PGTARGETSESSIONATTRS: 'standby' })).toThrow(/read-write/);
  });
});
