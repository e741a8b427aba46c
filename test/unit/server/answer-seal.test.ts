/**
 * Stored answers are sealed against a database writer (server/ops/answer-seal.ts) and the time
 * sealing began is kept in the data directory (server/answer-seal-file.ts).
 */
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { ANSWER_SEAL_FILE, ensureAnswerSeal } from '../../../src/server/answer-seal-file.js';
import type { AuditKey } from '../../../src/server/audit/audit-key.js';
import { AnswerSeal, IDEMPOTENCY_KEEP_MS } from '../../../src/server/ops/answer-seal.js';
import type { IdempotencyRecord } from '../../../src/server/store/types.js';

const secret = Buffer.alloc(32, 7);
const T0 = 1_800_000_000_000;
const text = '\u0001' + '0'.repeat(16) + '{"v":1,"op":"renew","result":{"renew_after":1}}';
const fields = {
  requestId: 'r'.repeat(22),
  requestHash: 'aa'.repeat(32),
  signer: 'i-1 sha256:k1',
  op: 'renew',
  createdAt: T0,
};
const row = (over: Partial<IdempotencyRecord> = {}, seal = new AnswerSeal(secret, 0)): IdempotencyRecord => ({
  ...fields,
  response: seal.seal(fields, text),
  ...over,
});

const codeAndMessage = (fn: () => unknown): [string, string] | 'opened' => {
  try {
    fn();
    return 'opened';
  } catch (e) {
    if (!(e instanceof SigilError)) throw e;
    return [e.code, e.message];
  }
};

describe('AnswerSeal', () => {
  it('opens what it sealed, at any later time, to the stored text', () => {
    const seal = new AnswerSeal(secret, 0);
    const r = row();
    expect(r.response.startsWith('\u0002')).toBe(true);
    expect(seal.open(r, T0)).toBe(text);
    expect(seal.open(r, T0 + 400 * 86_400_000)).toBe(text);
    // Another issuer with the same audit.key (PostgreSQL: every issuer has a copy) opens it too.
    expect(new AnswerSeal(Buffer.from(secret), T0).open(r, T0)).toBe(text);
  });

  it('refuses a row with any column changed, naming the seal', () => {
    const seal = new AnswerSeal(secret, 0);
    const sealed = row().response;
    const changed: Array<Partial<IdempotencyRecord>> = [
      { requestId: 's'.repeat(22) },
      { requestHash: 'ab'.repeat(32) },
      { signer: 'i-2 sha256:k1' },
      { op: 'credential' },
      { createdAt: T0 - 1 },
      { response: sealed.replace('"renew_after":1', '"renew_after":9') },
      // A MAC one character short, or of another key.
      { response: sealed.slice(0, 64) + sealed.slice(65) },
      { response: new AnswerSeal(Buffer.alloc(32, 8), 0).seal(fields, text) },
    ];
    for (const over of changed) {
      const r = codeAndMessage(() => seal.open(row(over), T0));
      expect(r, JSON.stringify(over)).not.toBe('opened');
      expect(r[0]).toBe('stored_answer_invalid');
      expect(r[1]).toMatch(/seal of the answer stored for request id .* does not match its row/);
    }
  });

  it('fields cannot run into each other: moving a character between two columns changes the seal', () => {
    const seal = new AnswerSeal(secret, 0);
    const a = { ...fields, requestId: 'abc', requestHash: 'def' };
    const sealed = seal.seal(a, text);
    expect(
      codeAndMessage(() => seal.open({ ...a, requestId: 'ab', requestHash: 'cdef', response: sealed }, T0)),
    ).not.toBe('opened');
  });

  it('accepts an unsealed row only from before sealing began and within the retention', () => {
    const since = T0 + 1000;
    const seal = new AnswerSeal(secret, since);
    const unsealed = (createdAt: number): IdempotencyRecord => ({ ...fields, createdAt, response: text });
    // Stored before sealing began, replayed within the retention: the lost answer of an upgrade.
    expect(seal.open(unsealed(T0), T0 + 2000)).toBe(text);
    expect(seal.open(unsealed(T0), T0 + IDEMPOTENCY_KEEP_MS)).toBe(text);
    // Dated at or after the start of sealing: planted.
    const at = codeAndMessage(() => seal.open(unsealed(since), since + 1));
    expect(at).not.toBe('opened');
    expect(at[0]).toBe('stored_answer_invalid');
    expect(at[1]).toMatch(/carries no seal, and unsealed answers are accepted only when stored before/);
    // Older than the retention (the pruning removed every genuine one by now).
    expect(codeAndMessage(() => seal.open(unsealed(T0), T0 + IDEMPOTENCY_KEEP_MS + 1))).not.toBe('opened');
    // A seal that began at 0 (a new data directory) accepts no unsealed row at all.
    expect(codeAndMessage(() => new AnswerSeal(secret, 0).open(unsealed(T0), T0))).not.toBe('opened');
  });

  it('an ephemeral seal opens only its own rows', () => {
    const a = AnswerSeal.ephemeral();
    const sealed = { ...fields, response: a.seal(fields, text) };
    expect(a.open(sealed, T0)).toBe(text);
    expect(codeAndMessage(() => AnswerSeal.ephemeral().open(sealed, T0))).not.toBe('opened');
  });
});

describe('answer-seal.json', () => {
  let dir: string;
  const key: AuditKey = { secret, fromSeq: 1, id: 'x' };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sigil-seal-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is written once (0600) and read back on every later start: the legacy window does not move', () => {
    const first = ensureAnswerSeal(dir, key, T0);
    expect(first.legacyBefore).toBe(T0);
    expect(statSync(join(dir, ANSWER_SEAL_FILE)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(join(dir, ANSWER_SEAL_FILE), 'utf8'))).toEqual({
      v: 1,
      since: new Date(T0).toISOString(),
    });
    const later = ensureAnswerSeal(dir, key, T0 + 86_400_000);
    expect(later.legacyBefore).toBe(T0);
    // Same key: a restarted issuer opens what it sealed before.
    const sealed = { ...fields, response: first.seal(fields, text) };
    expect(later.open(sealed, T0)).toBe(text);
  });

  it('takes a since later than now as now (a clock that ran fast must not hold the window open)', () => {
    writeFileSync(
      join(dir, ANSWER_SEAL_FILE),
      JSON.stringify({ v: 1, since: new Date(T0 + 86_400_000).toISOString() }),
    );
    expect(ensureAnswerSeal(dir, key, T0).legacyBefore).toBe(T0);
  });

  it('refuses a malformed file or a symlink, naming the file', () => {
    const path = join(dir, ANSWER_SEAL_FILE);
    writeFileSync(path, '{"v":1,"since":"yesterday"}');
    expect(() => ensureAnswerSeal(dir, key, T0)).toThrow(/is not a Sigil answer-seal file/);
    rmSync(path);
    symlinkSync('/etc/hostname', path);
    expect(() => ensureAnswerSeal(dir, key, T0)).toThrow(/is not a regular file/);
  });
});
