/**
 * `sigil server rotate-key` (src/server/rotate-key.ts) and what the issuer publishes during a
 * rotation (src/server/rotating-keys.ts, credentials/authorities.ts), on a real data directory:
 * stage → publish beside → activate → retired key published until its overlap ends; the
 * compromise case (overlap 0); the admin token; and refusals that change nothing on disk.
 */
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { credentialKeyPaths } from '../../../src/server/credential-keys.js';
import {
  createCredentialAuthorities,
  keysChangedAt,
  publishedJwks,
  publishedSshCaLines,
} from '../../../src/server/credentials/authorities.js';
import { initDataDir, loadCaMaterial, openIssuerStores, paths } from '../../../src/server/data-dir.js';
import { exportCaMaterial } from '../../../src/server/ca-export.js';
import { DEFAULT_OVERLAP_S, rotateKey } from '../../../src/server/rotate-key.js';
import {
  formatRotatingKeys,
  MAX_BESIDE,
  readRotatingKeys,
  readRotatingState,
  rotatingKeysPath,
  spkiBase64,
} from '../../../src/server/rotating-keys.js';
import { sshFingerprint, sshPublicKeyFromKeyObject } from '../../../src/ssh/public-key.js';

const H = 3600_000;
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-rotate-'));
  initDataDir(dir, 'example.org');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** What an issuer started at `now` would publish. */
function issuerAt(now: number) {
  const ca = loadCaMaterial(dir);
  const cas = createCredentialAuthorities(ca.credentials, 'example.org');
  return {
    cas,
    kids: publishedJwks(cas, now).map((k) => k.kid),
    sshUser: publishedSshCaLines(cas, 'user', now),
    sshHost: publishedSshCaLines(cas, 'host', now),
  };
}

async function auditRows() {
  const stores = openIssuerStores(dir);
  try {
    return (await stores.audit.list()).filter((r) => r.action.startsWith('key_'));
  } finally {
    await stores.close();
  }
}

const bytesOf = (files: string[]) => files.map((f) => (existsSync(f) ? readFileSync(f, 'hex') : null));

describe('stage, then activate (the JWT-SVID key)', () => {
  it('publishes the staged key before it signs, then keeps the old one until the overlap ends', async () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    const before = issuerAt(t0);
    const oldKid = before.cas.jwt.kid;
    expect(before.kids).toEqual([oldKid]);

    const staged = await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage', now: t0 });
    const nextFile = `${credentialKeyPaths(dir).jwtSigning}.next`;
    expect(statSync(nextFile).mode & 0o777).toBe(0o600);
    const afterStage = issuerAt(t0 + 1000);
    expect(afterStage.cas.jwt.kid).toBe(oldKid); // staged: it signs nothing yet
    expect(afterStage.kids).toHaveLength(2);
    const newKid = afterStage.kids[1]!;
    expect(staged.current).toBe(`kid ${newKid}`);

    const t1 = t0 + DEFAULT_OVERLAP_S * 1000;
    const act = await rotateKey({ dataDir: dir, key: 'jwt', now: t1 });
    expect(act).toMatchObject({
      step: 'activate',
      previous: `kid ${oldKid}`,
      current: `kid ${newKid}`,
      stagedForS: DEFAULT_OVERLAP_S,
      warning: null,
      reloadWithinS: 10,
      trustedUntil: new Date(t1 + DEFAULT_OVERLAP_S * 1000).toISOString(),
    });
    expect(existsSync(nextFile)).toBe(false);
    const afterAct = issuerAt(t1 + 1000);
    expect(afterAct.cas.jwt.kid).toBe(newKid);
    expect(afterAct.kids).toEqual([newKid, oldKid]);
    // The retired key drops out by the clock, with no restart and no command.
    expect(publishedJwks(afterAct.cas, t1 + DEFAULT_OVERLAP_S * 1000 - 1).map((k) => k.kid)).toEqual([newKid, oldKid]);
    expect(publishedJwks(afterAct.cas, t1 + DEFAULT_OVERLAP_S * 1000).map((k) => k.kid)).toEqual([newKid]);

    const rows = await auditRows();
    expect(rows.map((r) => r.action)).toEqual(['key_staged', 'key_rotated']);
    expect(rows[1]!.details).toMatchObject({
      key: 'jwt',
      previous: `kid ${oldKid}`,
      current: `kid ${newKid}`,
      staged_for_s: DEFAULT_OVERLAP_S,
      overlap_s: DEFAULT_OVERLAP_S,
    });
    expect(JSON.stringify(rows)).not.toMatch(/PRIVATE KEY|"d":/);
  });

  it('the SPIFFE sequence grows with each change of the published key set', async () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    const seq = (now: number) => keysChangedAt(issuerAt(now).cas, now);
    expect(seq(t0)).toBe(0);
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage', now: t0 });
    expect(seq(t0 + 1)).toBe(t0 / 1000);
    await rotateKey({ dataDir: dir, key: 'jwt', now: t0 + 30 * H });
    expect(seq(t0 + 30 * H + 1)).toBe((t0 + 30 * H) / 1000);
    const end = t0 + 30 * H + DEFAULT_OVERLAP_S * 1000;
    expect(seq(end)).toBe(end / 1000);
  });

  it('an activation sooner than advised says what relying parties may see', async () => {
    const t0 = Date.now();
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage', now: t0 });
    const r = await rotateKey({ dataDir: dir, key: 'jwt', now: t0 + 2 * H });
    expect(r.stagedForS).toBe(7200);
    expect(r.warning).toMatch(/staged 2\.0h ago \(25h advised\): relying parties that have not refreshed/);
  });

  it('cancel drops the staged key: no longer published, no file left', async () => {
    const t0 = Date.now();
    await rotateKey({ dataDir: dir, key: 'ssh-user', step: 'stage', now: t0 });
    expect(issuerAt(t0).sshUser).toHaveLength(2);
    expect(issuerAt(t0).sshUser[1]).toMatch(/ next-sigil-user-ca@example\.org$/);
    await rotateKey({ dataDir: dir, key: 'ssh-user', step: 'cancel', now: t0 + 1 });
    expect(issuerAt(t0 + 2).sshUser).toHaveLength(1);
    expect(existsSync(`${credentialKeyPaths(dir).sshUserCa}.next`)).toBe(false);
    expect((await auditRows()).map((r) => r.action)).toEqual(['key_staged', 'key_stage_cancelled']);
  });
});

describe('unstaged activation and the compromise case', () => {
  it('overlap 0: the old SSH user CA is published by nothing; the algorithm is kept', async () => {
    const t0 = Date.now();
    const oldLine = issuerAt(t0).sshUser[0]!;
    const r = await rotateKey({ dataDir: dir, key: 'ssh-user', overlapS: 0, now: t0 });
    expect(r.trustedUntil).toBeNull();
    expect(r.warning).toMatch(/expected after a compromise/);
    const after = issuerAt(t0 + 1);
    expect(after.sshUser).toHaveLength(1);
    expect(after.sshUser[0]).not.toBe(oldLine);
    expect(after.sshUser[0]).toMatch(/^ssh-ed25519 /);
    expect(after.sshHost).toHaveLength(1); // the other CA is untouched
  });

  it('an ECDSA P-256 host CA is replaced by a P-256 one (its trust lines name the type)', async () => {
    const file = credentialKeyPaths(dir).sshHostCa;
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    writeFileSync(file, p256.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    const oldFp = sshFingerprint(sshPublicKeyFromKeyObject(p256).blob);
    const r = await rotateKey({ dataDir: dir, key: 'ssh-host', now: Date.now() });
    expect(r.previous).toBe(oldFp);
    const lines = issuerAt(Date.now()).sshHost;
    expect(lines.map((l) => l.split(' ')[0])).toEqual(['ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp256']);
    expect(lines[1]).toMatch(/ retired-sigil-host-ca@example\.org$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('an activation stopped between its writes (the staged key already signing) is finished by a rerun', async () => {
    const t0 = Date.now();
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage', now: t0 });
    const keyFile = credentialKeyPaths(dir).jwtSigning;
    writeFileSync(keyFile, readFileSync(`${keyFile}.next`), { mode: 0o600 });
    const r = await rotateKey({ dataDir: dir, key: 'jwt', now: t0 + 30 * H });
    expect(r.previous).toBe(r.current);
    expect(existsSync(`${keyFile}.next`)).toBe(false);
    expect(readRotatingKeys(dir)).toEqual([]);
    expect(issuerAt(t0 + 30 * H).kids).toHaveLength(1);
  });
});

describe('the admin credential', () => {
  it('a new token: the store holds its hash, the old one is no longer it, the file stays 0600', async () => {
    const file = paths(dir).adminToken;
    const old = readFileSync(file, 'utf8').trim();
    const r = await rotateKey({ dataDir: dir, key: 'admin-token' });
    expect(r).toMatchObject({ key: 'admin-token', reloadWithinS: null, files: [file] });
    const token = readFileSync(file, 'utf8').trim();
    expect(token).not.toBe(old);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const stores = openIssuerStores(dir);
    try {
      expect(await stores.admin.getAdminTokenHash()).toBe(createHash('sha256').update(token).digest('hex'));
    } finally {
      await stores.close();
    }
    const rows = await auditRows();
    expect(rows.map((x) => [x.action, x.details])).toEqual([['key_rotated', { key: 'admin-token' }]]);
    expect(JSON.stringify(rows)).not.toContain(token);
  });
});

describe('refusals change nothing', () => {
  const watched = () => {
    const k = credentialKeyPaths(dir);
    return [
      k.jwtSigning,
      `${k.jwtSigning}.next`,
      k.sshUserCa,
      k.sshHostCa,
      rotatingKeysPath(dir),
      paths(dir).adminToken,
    ];
  };

  it.each([
    [{ key: 'root' }, 'bad_request', /--key must be one of jwt, ssh-user, ssh-host, admin-token/],
    [{ key: 'jwt', overlapS: 8 * 86_400 }, 'bad_request', /--overlap must be between 0 and 7d/],
    [{ key: 'jwt', overlapS: -1 }, 'bad_request', /--overlap must be between/],
    [{ key: 'admin-token', overlapS: 60 }, 'bad_request', /apply to signing keys/],
    [{ key: 'admin-token', step: 'stage' as const }, 'bad_request', /apply to signing keys/],
    [{ key: 'jwt', step: 'stage' as const, overlapS: 60 }, 'bad_request', /not with --stage or --cancel/],
    [{ key: 'jwt', step: 'cancel' as const }, 'not_found', /no next jwt key is staged/],
  ])('%o → %s', async (args, code, message) => {
    const before = bytesOf(watched());
    const err = await rotateKey({ dataDir: dir, ...args }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SigilError);
    expect([(err as SigilError).code, (err as SigilError).message]).toEqual([code, expect.stringMatching(message)]);
    expect(bytesOf(watched())).toEqual(before);
    expect(await auditRows()).toEqual([]);
  });

  it('a second --stage is refused while one is staged', async () => {
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    const before = bytesOf(watched());
    await expect(rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' })).rejects.toThrow(
      /a next jwt key is already staged \(kid .+\): activate it .* or drop it \(--cancel\) first/,
    );
    expect(bytesOf(watched())).toEqual(before);
  });

  it('a staged key file swapped for another key is not activated', async () => {
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    const next = `${credentialKeyPaths(dir).jwtSigning}.next`;
    const planted = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    writeFileSync(next, planted.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    const before = bytesOf(watched());
    await expect(rotateKey({ dataDir: dir, key: 'jwt' })).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringMatching(
        /\.next is not the key .*rotating-keys\.json publishes as the next jwt key; nothing was changed/,
      ),
    });
    expect(bytesOf(watched())).toEqual(before);
  });
});

describe('ca/rotating-keys.json is read strictly', () => {
  const write = (v: unknown) => writeFileSync(rotatingKeysPath(dir), typeof v === 'string' ? v : JSON.stringify(v));
  const p256Spki = () =>
    (
      createPublicKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey).export({
        format: 'der',
        type: 'spki',
      }) as Buffer
    ).toString('base64');
  const entry = (o: Record<string, unknown> = {}) => ({
    kind: 'jwt',
    state: 'retired',
    public_key: p256Spki(),
    since: '2026-12-01T00:00:00Z',
    trusted_until: '2026-12-02T00:00:00Z',
    ...o,
  });

  it('a valid list loads', () => {
    write({ version: 1, keys: [entry()] });
    expect(readRotatingKeys(dir)).toHaveLength(1);
  });

  it.each([
    ['not JSON', '{'],
    ['an unknown member', { version: 1, keys: [entry({ note: 'x' })] }],
    ['a retired key without trusted_until', { version: 1, keys: [entry({ trusted_until: undefined })] }],
    ['a next key with trusted_until', { version: 1, keys: [entry({ state: 'next' })] }],
    ['an unknown kind', { version: 1, keys: [entry({ kind: 'x509' })] }],
    ['a bad time', { version: 1, keys: [entry({ since: 'yesterday' })] }],
    ['not a key', { version: 1, keys: [entry({ public_key: 'AAAA' })] }],
    [
      'an Ed25519 key as the JWT key',
      {
        version: 1,
        keys: [
          entry({
            public_key: (
              createPublicKey(generateKeyPairSync('ed25519').privateKey).export({
                format: 'der',
                type: 'spki',
              }) as Buffer
            ).toString('base64'),
          }),
        ],
      },
    ],
    [
      'two staged JWT keys',
      {
        version: 1,
        keys: [entry({ state: 'next', trusted_until: undefined }), entry({ state: 'next', trusted_until: undefined })],
      },
    ],
  ])('%s stops the start (config_invalid)', (_what, v) => {
    write(v);
    expect(() => loadCaMaterial(dir)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
  });

  it('a list others can write stops the start and the command (data_dir_insecure)', async () => {
    write({ version: 1, keys: [entry()] });
    chmodSync(rotatingKeysPath(dir), 0o666);
    expect(() => loadCaMaterial(dir)).toThrow(expect.objectContaining({ code: 'data_dir_insecure' }));
    await expect(rotateKey({ dataDir: dir, key: 'jwt' })).rejects.toMatchObject({ code: 'data_dir_insecure' });
  });

  it('a symbolic link is refused (unsafe_path), never followed', () => {
    const elsewhere = join(dir, 'elsewhere.json');
    writeFileSync(elsewhere, JSON.stringify({ version: 1, keys: [entry()] }));
    symlinkSync(elsewhere, rotatingKeysPath(dir));
    expect(() => readRotatingKeys(dir)).toThrow(expect.objectContaining({ code: 'unsafe_path' }));
  });
});

describe('what the review of the first version found', () => {
  it('a compromise activation never activates the staged key (it was in ca/ too) and withdraws the retired ones', async () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    await rotateKey({ dataDir: dir, key: 'ssh-user', now: t0 }); // K1 retired for 25 h
    const retired = readRotatingKeys(dir)[0]!;
    await rotateKey({ dataDir: dir, key: 'ssh-user', step: 'stage', now: t0 + H });
    const nextFile = `${credentialKeyPaths(dir).sshUserCa}.next`;
    const stolen = readFileSync(nextFile, 'utf8');
    const r = await rotateKey({ dataDir: dir, key: 'ssh-user', overlapS: 0, now: t0 + 2 * H });
    expect(readFileSync(credentialKeyPaths(dir).sshUserCa, 'utf8')).not.toBe(stolen);
    expect(existsSync(nextFile)).toBe(false);
    expect(r.dropped.map((d) => d.split(' ')[0]).sort()).toEqual(['next', 'retired', 'signing']);
    expect(r.removed).toEqual([nextFile]);
    const lines = issuerAt(t0 + 2 * H + 1).sshUser;
    expect(lines).toHaveLength(1); // the fresh key alone: neither the staged nor the retired one
    const now = readRotatingKeys(dir).filter((k) => spkiBase64(k.publicKey) === spkiBase64(retired.publicKey));
    expect(now.map((k) => k.state)).toEqual(['withdrawn']); // remembered, never published
    expect((await auditRows()).at(-1)!.details).toMatchObject({ withdrawn: r.dropped, overlap_s: 0 });
  });

  describe('an activation stopped at any point is finished by the rerun, with the staged key', () => {
    // The states a stop leaves, built by hand: [list written with the staged entry and K1 retired,
    // key replaced, staged file removed].
    async function stoppedAfter(point: 1 | 2 | 3) {
      const t0 = Date.parse('2026-12-01T00:00:00Z');
      await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage', now: t0 });
      const keyFile = credentialKeyPaths(dir).jwtSigning;
      const old = readFileSync(keyFile);
      const st = readRotatingState(dir);
      const staged = st.keys[0]!;
      const k1 = createPublicKey(readFileSync(keyFile, 'utf8'));
      const t1 = t0 + 30 * H;
      const retired = {
        kind: 'jwt' as const,
        state: 'retired' as const,
        publicKey: k1,
        since: t1,
        trustedUntil: t1 + 25 * H,
      };
      writeFileSync(rotatingKeysPath(dir), formatRotatingKeys([retired, staged], st.sequence + 1));
      if (point >= 2) writeFileSync(keyFile, readFileSync(`${keyFile}.next`), { mode: 0o600 });
      if (point >= 3) rmSync(`${keyFile}.next`);
      return { t1, old, staged, k1 };
    }

    it.each([1, 2, 3] as const)('stopped after write %i', async (point) => {
      const { t1, staged, k1 } = await stoppedAfter(point);
      const r = await rotateKey({ dataDir: dir, key: 'jwt', now: t1 + 1000 });
      const keyFile = credentialKeyPaths(dir).jwtSigning;
      expect(spkiBase64(createPublicKey(readFileSync(keyFile, 'utf8')))).toBe(spkiBase64(staged.publicKey));
      expect(r.warning ?? '').not.toMatch(/not staged/);
      expect(existsSync(`${keyFile}.next`)).toBe(false);
      const keys = readRotatingKeys(dir);
      expect(keys.map((k) => [k.state, spkiBase64(k.publicKey)])).toEqual([['retired', spkiBase64(k1)]]);
    });
  });

  it(`at most ${MAX_BESIDE} keys beside the signing one: the next step is refused, saying until when`, async () => {
    const t0 = Date.now();
    for (let i = 0; i < MAX_BESIDE; i++) await rotateKey({ dataDir: dir, key: 'ssh-host', now: t0 + i * 60_000 });
    const before = readFileSync(rotatingKeysPath(dir), 'utf8');
    for (const step of ['activate', 'stage'] as const)
      await expect(rotateKey({ dataDir: dir, key: 'ssh-host', step, now: t0 + H })).rejects.toMatchObject({
        code: 'bad_request',
        message: expect.stringMatching(
          /8 ssh-host keys are already published beside the signing one \(at most 8\): wait until .*Z\), or withdraw them all with --overlap 0/,
        ),
      });
    expect(readFileSync(rotatingKeysPath(dir), 'utf8')).toBe(before);
    // The compromise way out still works, and leaves the key alone.
    await rotateKey({ dataDir: dir, key: 'ssh-host', overlapS: 0, now: t0 + H });
    expect(issuerAt(t0 + H).sshHost).toHaveLength(1);
  });

  it('one rotate-key at a time: a live lock refuses (conflict), a stale one is taken over and removed', async () => {
    const lock = join(dir, 'ca', '.rotate-key.lock');
    writeFileSync(lock, `${process.pid}\n`);
    await expect(rotateKey({ dataDir: dir, key: 'jwt' })).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringMatching(
        `another sigil server rotate-key or rotate-intermediate \\(pid ${process.pid}\\) is working`,
      ),
    });
    expect(readRotatingKeys(dir)).toEqual([]);
    writeFileSync(lock, '2147483646\n'); // no such process
    await rotateKey({ dataDir: dir, key: 'jwt' });
    expect(readRotatingKeys(dir)).toHaveLength(1);
    expect(existsSync(lock)).toBe(false);
  });

  it('ca export refuses a list others can write, as the start does (its output goes into trust files)', async () => {
    await rotateKey({ dataDir: dir, key: 'ssh-user', step: 'stage' });
    chmodSync(rotatingKeysPath(dir), 0o664);
    expect(() => exportCaMaterial(dir, 'ssh-user')).toThrow(expect.objectContaining({ code: 'data_dir_insecure' }));
  });

  it('the SPIFFE sequence never goes back: not at a cancel, not when a retired key is pruned', async () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    const seq = (now: number) => keysChangedAt(issuerAt(now).cas, now);
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage', now: t0 });
    const s1 = seq(t0);
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'cancel', now: t0 + 100 }); // within the same second
    const s2 = seq(t0 + 100);
    expect(s2).toBeGreaterThan(s1);
    await rotateKey({ dataDir: dir, key: 'jwt', now: t0 + 2000 });
    const s3 = seq(t0 + 2000);
    const expiry = t0 + 2000 + DEFAULT_OVERLAP_S * 1000;
    const s4 = seq(expiry); // the retired key dropped out by the clock
    // A later step on another kind prunes the expired jwt entry from the file.
    await rotateKey({ dataDir: dir, key: 'ssh-host', step: 'stage', now: expiry + 1000 });
    const s5 = seq(expiry + 1000);
    expect([s3 > s2, s4 > s3, s5 >= s4]).toEqual([true, true, true]);
  });

  it('a short overlap and an ssh_user typo are each named', async () => {
    const r = await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 3600 });
    expect(r.warning).toMatch(/--overlap 1\.0h is shorter than a credential's longest life \(24h\)/);
    await expect(rotateKey({ dataDir: dir, key: 'ssh_user' })).rejects.toThrow(/did you mean ssh-user\?/);
  });
});

describe('edges the mutation run found untested', () => {
  it('kinds do not mix: a step on one keeps the others (also at a compromise), and the bound counts per kind', async () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    for (let i = 0; i < MAX_BESIDE; i++) await rotateKey({ dataDir: dir, key: 'jwt', now: t0 + i * 1000 });
    await rotateKey({ dataDir: dir, key: 'ssh-user', step: 'stage', now: t0 + H }); // not "already staged", not over the bound
    await rotateKey({ dataDir: dir, key: 'ssh-user', now: t0 + 2 * H });
    await rotateKey({ dataDir: dir, key: 'ssh-host', overlapS: 0, now: t0 + 3 * H });
    const kinds = readRotatingKeys(dir).map((k) => `${k.kind}:${k.state}`);
    expect(kinds.filter((k) => k === 'jwt:retired')).toHaveLength(MAX_BESIDE);
    expect(kinds.filter((k) => k.startsWith('ssh-user'))).toEqual(['ssh-user:retired']);
    await rotateKey({ dataDir: dir, key: 'ssh-user', overlapS: 0, now: t0 + 4 * H });
    expect(readRotatingKeys(dir).filter((k) => k.kind === 'jwt')).toHaveLength(MAX_BESIDE);
  });

  it('the order published: signing, then the staged key, then retired ones newest first; each once', async () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    const kid0 = issuerAt(t0).cas.jwt.kid;
    await rotateKey({ dataDir: dir, key: 'jwt', now: t0 });
    const kid1 = issuerAt(t0).cas.jwt.kid;
    await rotateKey({ dataDir: dir, key: 'jwt', now: t0 + H });
    const kid2 = issuerAt(t0 + H).cas.jwt.kid;
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage', now: t0 + 2 * H });
    const i = issuerAt(t0 + 2 * H);
    expect(i.kids).toEqual([kid2, expect.any(String), kid1, kid0]);
    expect(new Set(i.kids).size).toBe(4);
    // A list naming the signing key again (a stop between writes) publishes it once.
    const st = readRotatingState(dir);
    const signing = createPublicKey(readFileSync(credentialKeyPaths(dir).jwtSigning, 'utf8'));
    writeFileSync(
      rotatingKeysPath(dir),
      formatRotatingKeys(
        [...st.keys, { kind: 'jwt', state: 'retired', publicKey: signing, since: t0, trustedUntil: t0 + 48 * H }],
        st.sequence,
      ),
    );
    expect(issuerAt(t0 + 2 * H).kids).toEqual([kid2, expect.any(String), kid1, kid0]);
  });

  it('a JWT key stays ECDSA P-256 (ES256) and an Ed25519 SSH CA stays Ed25519', async () => {
    await rotateKey({ dataDir: dir, key: 'jwt' });
    await rotateKey({ dataDir: dir, key: 'ssh-user' });
    const ca = loadCaMaterial(dir);
    expect(ca.credentials.jwtSigning.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(ca.credentials.sshUserCa.asymmetricKeyType).toBe('ed25519');
  });

  it('expired retired keys are dropped from the file at the next step, of any kind', async () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 3600, now: t0 });
    expect(readRotatingKeys(dir)).toHaveLength(1);
    await rotateKey({ dataDir: dir, key: 'ssh-host', step: 'stage', now: t0 + 2 * H });
    expect(readRotatingKeys(dir).map((k) => k.kind)).toEqual(['ssh-host']);
  });

  it('boundaries: an overlap of exactly 7 d is taken, of exactly 24 h is not warned about', async () => {
    expect((await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 7 * 86_400 })).trustedUntil).not.toBeNull();
    expect((await rotateKey({ dataDir: dir, key: 'ssh-user', overlapS: 86_400 })).warning).not.toMatch(/shorter/);
  });

  it('the bound names when the first retired key drops out', async () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    for (let i = 0; i < MAX_BESIDE; i++) await rotateKey({ dataDir: dir, key: 'jwt', now: t0 + i * H });
    const first = new Date(t0 + DEFAULT_OVERLAP_S * 1000).toISOString();
    await expect(rotateKey({ dataDir: dir, key: 'jwt', now: t0 + 9 * H })).rejects.toThrow(
      `wait until the first retired one drops out (${first})`,
    );
  });

  it('a lock file naming no live process (garbage, 0) is taken over', async () => {
    const lock = join(dir, 'ca', '.rotate-key.lock');
    for (const content of ['garbage\n', '0\n']) {
      writeFileSync(lock, content);
      await rotateKey({ dataDir: dir, key: 'jwt' });
      expect(existsSync(lock)).toBe(false);
    }
  });

  it('the list: owned by another user, or not a regular file, is refused; a malformed one names the field', () => {
    const file = rotatingKeysPath(dir);
    writeFileSync(file, JSON.stringify({ version: 1, keys: [] }), { mode: 0o644 });
    chownSync(file, 65534, 65534);
    expect(() => readRotatingKeys(dir)).toThrow(
      expect.objectContaining({ code: 'data_dir_insecure', message: expect.stringMatching(/is owned by uid 65534/) }),
    );
    rmSync(file);
    mkdirSync(file);
    expect(() => readRotatingKeys(dir)).toThrow(expect.objectContaining({ code: 'unsafe_path' }));
    rmSync(file, { recursive: true });
    writeFileSync(file, JSON.stringify({ version: 1, keys: [{ kind: 'jwt', state: 'next', extra: 1 }] }));
    expect(() => readRotatingKeys(dir)).toThrow(
      /rotating-keys\.json is not a rotating-key list as sigil server rotate-key writes it \(keys\.0/,
    );
  });

  it('a P-384 key is no JWT key (ES256 is P-256)', () => {
    const p384 = (
      createPublicKey(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey).export({
        format: 'der',
        type: 'spki',
      }) as Buffer
    ).toString('base64');
    writeFileSync(
      rotatingKeysPath(dir),
      JSON.stringify({
        version: 1,
        keys: [
          {
            kind: 'jwt',
            state: 'retired',
            public_key: p384,
            since: '2026-12-01T00:00:00Z',
            trusted_until: '2026-12-02T00:00:00Z',
          },
        ],
      }),
    );
    expect(() => readRotatingKeys(dir)).toThrow(
      /keys\[0\] is a EC secp384r1 key, which a jwt key cannot be \(ECDSA P-256\)/,
    );
  });
});

describe('two kinds in flight at once', () => {
  it('each activation takes its own staged key and keeps the other kind’s entries; a compromise withdraws only its kind', async () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    await rotateKey({ dataDir: dir, key: 'ssh-host', now: t0 }); // an ssh-host retired entry
    const jwtNext = await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage', now: t0 + 1000 });
    const userNext = await rotateKey({ dataDir: dir, key: 'ssh-user', step: 'stage', now: t0 + 2000 });
    const jwtAct = await rotateKey({ dataDir: dir, key: 'jwt', now: t0 + 26 * H });
    expect(jwtAct.current).toBe(jwtNext.current);
    const userAct = await rotateKey({ dataDir: dir, key: 'ssh-user', now: t0 + 26 * H + 1000 });
    expect(userAct.current).toBe(userNext.current);
    expect(readRotatingKeys(dir).map((k) => `${k.kind}:${k.state}`)).toEqual(['jwt:retired', 'ssh-user:retired']); // the ssh-host entry (25 h) has just expired and is pruned; the others are kept
    const c = await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0, now: t0 + 27 * H });
    expect(c.dropped).toEqual([expect.stringMatching(/^signing kid /), expect.stringMatching(/^retired kid /)]);
    expect(c.warning).not.toMatch(/shorter/);
    expect(readRotatingKeys(dir).map((k) => `${k.kind}:${k.state}`)).toEqual([
      'ssh-user:retired',
      'jwt:withdrawn',
      'jwt:withdrawn',
    ]);
  });

  it('an ssh-host retired entry survives a staged jwt activation', async () => {
    const t0 = Date.now();
    await rotateKey({ dataDir: dir, key: 'ssh-host', now: t0 });
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage', now: t0 + 1000 });
    await rotateKey({ dataDir: dir, key: 'jwt', now: t0 + 2000 });
    expect(readRotatingKeys(dir).map((k) => `${k.kind}:${k.state}`)).toEqual(['ssh-host:retired', 'jwt:retired']);
  });
});

describe('a data directory that missed a step refuses to start', () => {
  it('signing with the key a compromise withdrew (an old key file restored, or not replaced on a peer): config_invalid', async () => {
    const keyFile = credentialKeyPaths(dir).jwtSigning;
    const stolen = readFileSync(keyFile);
    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    expect(issuerAt(Date.now()).kids).toHaveLength(1); // the withdrawn key is never published
    writeFileSync(keyFile, stolen, { mode: 0o600 });
    expect(() => loadCaMaterial(dir)).toThrow(
      expect.objectContaining({
        code: 'config_invalid',
        message: expect.stringMatching(
          /the jwt signing key in .* lists as withdrawn since .*: a compromise rotation took it out of service/,
        ),
      }),
    );
    expect(() => exportCaMaterial(dir, 'jwks')).toThrow(/lists as withdrawn/);
  });

  it('withdrawn keys are remembered 30 days, at most 24, and count against no bound', async () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    for (let i = 0; i < 13; i++) await rotateKey({ dataDir: dir, key: 'ssh-host', overlapS: 0, now: t0 + i * 1000 });
    const w = readRotatingKeys(dir).filter((k) => k.state === 'withdrawn');
    expect(w).toHaveLength(13);
    for (let i = 0; i < MAX_BESIDE; i++) await rotateKey({ dataDir: dir, key: 'ssh-host', now: t0 + 20_000 + i }); // the bound ignores them
    for (let i = 0; i < 12; i++)
      await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0, now: t0 + 30_000 + i * 1000 });
    expect(readRotatingKeys(dir).filter((k) => k.state === 'withdrawn')).toHaveLength(24);
    await rotateKey({ dataDir: dir, key: 'ssh-user', step: 'stage', now: t0 + 31 * 86_400_000 });
    expect(readRotatingKeys(dir).filter((k) => k.state === 'withdrawn')).toHaveLength(0);
  });

  it('what to copy and what to remove, per step', async () => {
    const k = credentialKeyPaths(dir).sshHostCa;
    const list = rotatingKeysPath(dir);
    const s = await rotateKey({ dataDir: dir, key: 'ssh-host', step: 'stage' });
    expect([s.files, s.removed]).toEqual([[list, `${k}.next`], []]);
    const c = await rotateKey({ dataDir: dir, key: 'ssh-host', step: 'cancel' });
    expect([c.files, c.removed]).toEqual([[list], [`${k}.next`]]);
    await rotateKey({ dataDir: dir, key: 'ssh-host', step: 'stage' });
    const a = await rotateKey({ dataDir: dir, key: 'ssh-host' });
    expect([a.files, a.removed]).toEqual([[list, k], [`${k}.next`]]);
    const u = await rotateKey({ dataDir: dir, key: 'ssh-host' });
    expect([u.files, u.removed]).toEqual([[list, k], []]);
  });
});

describe('a withdrawn key put back (the walk of backup and restore)', () => {
  it('is never retired by a planned step: only another compromise rotation replaces it, publishing nothing of it', async () => {
    const keyFile = credentialKeyPaths(dir).jwtSigning;
    const stolen = readFileSync(keyFile);
    const stolenKid = issuerAt(Date.now()).cas.jwt.kid;
    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    writeFileSync(keyFile, stolen, { mode: 0o600 });
    expect(() => loadCaMaterial(dir)).toThrow(
      /lists as withdrawn since .*: a compromise rotation took it out of service: .* --overlap 0/,
    );
    const before = readFileSync(rotatingKeysPath(dir), 'utf8');
    for (const step of ['activate', 'stage'] as const)
      await expect(rotateKey({ dataDir: dir, key: 'jwt', step })).rejects.toMatchObject({
        code: 'bad_request',
        message: expect.stringMatching(/is one a compromise rotation withdrew .*: .*--key jwt --overlap 0$/),
      });
    expect(readFileSync(rotatingKeysPath(dir), 'utf8')).toBe(before);
    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    const kids = issuerAt(Date.now()).kids;
    expect(kids).toHaveLength(1);
    expect(kids).not.toContain(stolenKid);
  });
});
