/**
 * `server add-issuer` gives the new issuer the first issuer's seal window (answer-seal.json),
 * not one of its own: otherwise its first start would accept, for 48 h, unsealed rows a database
 * writer dates just before it — months after the cluster began sealing (review of session 14).
 * A real PostgreSQL (test/helpers/postgres.ts).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSWER_SEAL_FILE, ensureAnswerSeal } from '../../src/server/answer-seal-file.js';
import { readAuditKey } from '../../src/server/audit/audit-key.js';
import { initDataDirWithStore, paths } from '../../src/server/data-dir.js';
import { addIssuer } from '../../src/server/issuers/add-issuer.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';

let pg: Postgres;
let tmp: string;
let url: string;
beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  url = pg.url(pg.createDatabase('sigil'));
  tmp = mkdtempSync(join(tmpdir(), 'sigil-add-seal-'));
}, 120_000);
afterAll(async () => {
  await pg?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('add-issuer and the legacy window', () => {
  it('the added issuer accepts no unsealed row the first issuer would refuse', async () => {
    const aDir = join(tmp, 'a');
    const bDir = join(tmp, 'b');
    await initDataDirWithStore(aDir, 'example.org', url);
    const key = readAuditKey(paths(aDir).auditKey)!;
    // `server init` wrote since = 0; an issuer upgraded to sealing 30 days ago has since = then.
    expect(ensureAnswerSeal(aDir, key, Date.now()).legacyBefore).toBe(0);
    rmSync(join(aDir, ANSWER_SEAL_FILE));
    const monthAgo = Date.now() - 30 * 86_400_000;
    const a = ensureAnswerSeal(aDir, key, monthAgo);
    expect(a.legacyBefore).toBe(monthAgo);
    await addIssuer({ rootDir: aDir, name: 'b', outDir: bDir, store: url });
    const copied = existsSync(join(bDir, ANSWER_SEAL_FILE));
    // B's first `server start` (service.ts).
    const now = Date.now();
    const b = ensureAnswerSeal(bDir, key, now);

    // The database writer's unsealed row, dated 1 ms before B started.
    const planted = {
      requestId: 'r'.repeat(22),
      requestHash: 'aa'.repeat(32),
      signer: 'i-1 sha256:k',
      op: 'renew',
      createdAt: b.legacyBefore - 1,
      response: '{"v":1,"op":"renew","result":{"forged":true}}',
    };
    const opens = (s: typeof a): boolean => {
      try {
        s.open(planted, now + 1);
        return true;
      } catch {
        return false;
      }
    };
    expect(opens(a)).toBe(false); // A, sealing for a month, refuses it
    expect(opens(b)).toBe(false); // B too: its window is A's, not one opened at its own first start
    expect(copied).toBe(true);
    expect(b.legacyBefore).toBe(a.legacyBefore);
  }, 60_000);
});
