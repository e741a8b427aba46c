/**
 * `sigil server rotate-key` (src/server/rotate-key.ts) and what the issuer publishes during a
 * rotation (src/server/rotating-keys.ts, credentials/authorities.ts), on a real data directory:
 * stage → publish beside → activate → retired key published until its overlap ends; the
 * compromise case (overlap 0); the admin token; and refusals that change nothing on disk.
 */
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import {
  chmodSync,
  existsSync,
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
  jwksChangedAt,
  publishedJwks,
  publishedSshCaLines,
} from '../../../src/server/credentials/authorities.js';
import { initDataDir, loadCaMaterial, openIssuerStores, paths } from '../../../src/server/data-dir.js';
import { DEFAULT_OVERLAP_S, rotateKey } from '../../../src/server/rotate-key.js';
import { readRotatingKeys, rotatingKeysPath } from '../../../src/server/rotating-keys.js';
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
      restartNeeded: true,
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
    const seq = (now: number) => jwksChangedAt(issuerAt(now).cas, now);
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
    expect(r.warning).toMatch(/staged 2\.0h ago, less than the 25h/);
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
    expect(r).toMatchObject({ key: 'admin-token', restartNeeded: false, files: [file] });
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
