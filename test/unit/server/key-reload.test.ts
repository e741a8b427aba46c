/**
 * rotate-key steps read by a running issuer (src/server/key-reload.ts), on real data directories:
 * a stage, an activation and a compromise applied without a restart; a peer issuer that got a
 * compromise's list before its key file stops signing with the stolen key at once; one that got an
 * activation's list first keeps the keys in use; files that fail a check change nothing; a change
 * is read only once it held still for a poll and never under rotate-key's lock.
 */
import { cpSync, chmodSync, existsSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { credentialKeyPaths } from '../../../src/server/credential-keys.js';
import {
  createCredentialAuthorities,
  assertCredentialKindInService,
  jwtSigner,
  publishedJwks,
  publishedSshCaLines,
  sshSigner,
  type CredentialAuthorities,
} from '../../../src/server/credentials/authorities.js';
import { initDataDir, loadCaMaterial, openIssuerStores } from '../../../src/server/data-dir.js';
import { exportCaMaterial } from '../../../src/server/ca-export.js';
import { keyFilesStamp, KeyReloader, MAX_UNSETTLED_POLLS } from '../../../src/server/key-reload.js';
import { rotateKey } from '../../../src/server/rotate-key.js';
import { rotateLockPath, rotatingKeysPath } from '../../../src/server/rotating-keys.js';
import { spkiSha256 } from '../../../src/server/withdrawn-keys.js';
import { createLogger, silentLogger } from '../../../src/util/log.js';
import { withdrawnKeyOf } from '../../../src/server/store/withdrawn-key-rows.js';
import type { WithdrawnKeyRecord } from '../../../src/server/store/types.js';
import Database from 'better-sqlite3';

let root: string;
let dir: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'sigil-reload-'));
  dir = join(root, 'a');
  initDataDir(dir, 'example.org');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

interface Running {
  target: { credentials: CredentialAuthorities };
  reloader: KeyReloader;
  logs: Array<{ level: number; msg: string; [k: string]: unknown }>;
}

/** An issuer started on `d`: the credentials it loaded, and its key reloader. */
function running(d: string): Running {
  const target = { credentials: createCredentialAuthorities(loadCaMaterial(d).credentials, 'example.org') };
  const logs: Running['logs'] = [];
  const log = createLogger({
    name: 't',
    level: 'debug',
    pretty: false,
    destination: { write: (l) => logs.push(JSON.parse(l) as Running['logs'][number]) },
  });
  return {
    target,
    logs,
    reloader: new KeyReloader({ dataDir: d, trustDomain: 'example.org', target, log, now: Date.now }),
  };
}

const kids = (r: Running) => publishedJwks(r.target.credentials, Date.now()).map((k) => k.kid);
const errors = (r: Running) => r.logs.filter((l) => l.level === 50);
/** A second issuer's data directory: a copy of the first, as the runbook's add-issuer makes one. */
function peer(): string {
  const b = join(root, 'b');
  cpSync(dir, b, { recursive: true, preserveTimestamps: true });
  return b;
}
/** Copy files of a rotate-key step from the first data directory to the peer (same relative paths). */
function copy(to: string, ...files: string[]): void {
  for (const f of files) cpSync(f, f.replace(dir, to), { preserveTimestamps: false });
}

describe('a running issuer applies rotate-key steps without a restart', () => {
  it('stage → published beside; activate → signs with the staged key, the old one retired; compromise → alone', async () => {
    const r = running(dir);
    const k1 = r.target.credentials.jwt.kid;
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    const staged = r.reloader.reload();
    expect(staged).toMatchObject({ result: 'applied', halted: [] });
    expect(kids(r)).toEqual([k1, expect.any(String)]);
    const k2 = kids(r)[1]!;
    expect(r.target.credentials.jwt.kid).toBe(k1); // staged: published, not signing

    await rotateKey({ dataDir: dir, key: 'jwt' });
    const act = r.reloader.reload();
    expect(act.result).toBe('applied');
    expect(jwtSigner(r.target.credentials).kid).toBe(k2);
    expect(kids(r)).toEqual([k2, k1]);
    expect(act.result === 'applied' && act.changes.join('\n')).toContain(`jwt signs with kid ${k2} (was kid ${k1})`);
    expect(r.logs.find((l) => l.msg.startsWith('reloaded the credential keys'))?.msg).toContain(`kid ${k2}`);

    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    expect(r.reloader.reload().result).toBe('applied');
    const k3 = jwtSigner(r.target.credentials).kid;
    expect([k1, k2]).not.toContain(k3);
    expect(kids(r)).toEqual([k3]);
  });

  it('an SSH CA activation: the new CA signs, the retired one stays in the trust lines', async () => {
    const r = running(dir);
    const before = r.target.credentials.sshUser.authorizedKeyLine();
    await rotateKey({ dataDir: dir, key: 'ssh-user' });
    expect(r.reloader.reload().result).toBe('applied');
    const lines = publishedSshCaLines(r.target.credentials, 'user', Date.now());
    expect(lines).toHaveLength(2);
    expect(lines[0]).not.toBe(before);
    expect(lines[1]!.split(' ').slice(0, 2)).toEqual(before.split(' ').slice(0, 2));
    expect(sshSigner(r.target.credentials, 'user').authorizedKeyLine()).toBe(lines[0]);
  });

  it('the same files touched again: applied, nothing reported as changed, nothing logged', () => {
    const r = running(dir);
    const before = r.target.credentials;
    const f = credentialKeyPaths(dir).jwtSigning;
    utimesSync(f, new Date(), new Date(Date.now() + 5000));
    expect(r.reloader.reload()).toEqual({ result: 'applied', changes: [], halted: [] });
    expect(r.target.credentials).not.toBe(before);
    expect(r.target.credentials.jwt.kid).toBe(before.jwt.kid);
    expect(r.logs).toEqual([]);
  });
});

describe('a peer issuer that got the list of a step before its key file', () => {
  it('compromise: the stolen JWT key stops signing and is unpublished at once; the key file lifts it', async () => {
    const b = peer();
    const r = running(b);
    const stolen = r.target.credentials.jwt.kid;
    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    copy(b, rotatingKeysPath(dir)); // the list came first
    const o = r.reloader.reload();
    expect(o).toMatchObject({ result: 'applied', halted: ['jwt'] });
    expect(o.result === 'applied' && o.changes).toContain('jwt halted');
    expect(r.reloader.halted()).toEqual(['jwt']);
    expect(kids(r)).toEqual([]); // the stolen key is no longer published, and nothing else of its kind is
    const e = (() => {
      try {
        jwtSigner(r.target.credentials);
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(SigilError);
    expect((e as SigilError).code).toBe('signing_key_withdrawn');
    // Agents get a plain refusal; the why (paths, what to run) is in the issuer's log and halted map.
    expect((e as SigilError).message).not.toContain(b);
    expect(r.target.credentials.halted.get('jwt')).toMatch(/lists as withdrawn.*stopped signing with it/);
    expect(r.target.credentials.jwt.kid).toBe(stolen); // still loaded, never used
    // SSH keys of this issuer were not touched: they still sign.
    expect(() => sshSigner(r.target.credentials, 'user')).not.toThrow();
    expect(errors(r).map((l) => l.code)).toEqual(['signing_key_withdrawn']);

    copy(b, credentialKeyPaths(dir).jwtSigning); // then the key file
    const lifted = r.reloader.reload();
    expect(lifted).toMatchObject({ result: 'applied', halted: [] });
    expect(lifted.result === 'applied' && lifted.changes).toContain('jwt no longer halted');
    const fresh = jwtSigner(r.target.credentials).kid;
    expect(fresh).not.toBe(stolen);
    expect(kids(r)).toEqual([fresh]);
  });

  it('compromise of one SSH CA halts both SSH signers (each answer carries the other CA line) and unpublishes it', async () => {
    const b = peer();
    const r = running(b);
    await rotateKey({ dataDir: dir, key: 'ssh-user', overlapS: 0 });
    copy(b, rotatingKeysPath(dir));
    expect(r.reloader.reload()).toMatchObject({ result: 'applied', halted: ['ssh-user'] });
    for (const which of ['user', 'host'] as const)
      expect(() => sshSigner(r.target.credentials, which)).toThrow(/withdrawn/);
    // Before a stored answer is replayed too: by the credential kind asked for.
    for (const kind of ['ssh_user', 'ssh_host'])
      expect(() => assertCredentialKindInService(r.target.credentials, kind)).toThrow(/withdrawn/);
    for (const kind of ['jwt', 'database', 'kubernetes'])
      expect(() => assertCredentialKindInService(r.target.credentials, kind)).not.toThrow();
    expect(publishedSshCaLines(r.target.credentials, 'user', Date.now())).toEqual([]);
    expect(publishedSshCaLines(r.target.credentials, 'host', Date.now())).toHaveLength(1);
    expect(() => jwtSigner(r.target.credentials)).not.toThrow();
  });

  it('activation: the keys in use stay (the old key is still trusted) until the key file arrives', async () => {
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    const b = peer();
    const r = running(b);
    const [k1, k2] = kids(r);
    const before = r.target.credentials;
    await rotateKey({ dataDir: dir, key: 'jwt' });
    copy(b, rotatingKeysPath(dir));
    const o = r.reloader.reload();
    expect(o.result).toBe('waiting');
    expect(o.result === 'waiting' && o.reason).toMatch(/retires the jwt key file still in place/);
    expect(r.target.credentials).toBe(before);
    expect(kids(r)).toEqual([k1, k2]); // the staged key stays published while the old one signs
    expect(r.logs.filter((l) => l.level === 40)).toHaveLength(1);
    r.reloader.reload();
    expect(r.logs.filter((l) => l.level === 40)).toHaveLength(1); // the same problem is said once
    expect(r.reloader.pending()).toBe(true); // sigil_key_reload_pending

    copy(b, credentialKeyPaths(dir).jwtSigning);
    const done = r.reloader.reload();
    expect(done.result === 'applied' && done.changes).toEqual([
      `jwt signs with kid ${k2} (was kid ${k1})`,
      `jwt rotation list: retired kid ${k1} (was next kid ${k2})`,
    ]);
    expect(r.reloader.pending()).toBe(false);
    expect(jwtSigner(r.target.credentials).kid).toBe(k2);
    expect(kids(r)).toEqual([k2, k1]);
  });
});

describe('files that fail a check change nothing', () => {
  it('a list others can write: refused (data_dir_insecure), the keys in use stay, said once', async () => {
    const r = running(dir);
    const before = r.target.credentials;
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    chmodSync(rotatingKeysPath(dir), 0o666);
    const o = r.reloader.reload();
    expect(o.result === 'refused' && o.error.code).toBe('data_dir_insecure');
    expect(r.target.credentials).toBe(before);
    r.reloader.reload();
    expect(errors(r)).toHaveLength(1);
    expect(errors(r)[0]!.msg).toMatch(/not reloaded, the ones in use stay.*writable by group or others/);
    chmodSync(rotatingKeysPath(dir), 0o644);
    expect(r.reloader.reload().result).toBe('applied');
    expect(kids(r)).toHaveLength(2);
  });

  it('a key file swapped for a symlink: refused (unsafe_path)', () => {
    const r = running(dir);
    const before = r.target.credentials;
    const f = credentialKeyPaths(dir).jwtSigning;
    const elsewhere = join(root, 'elsewhere.key');
    cpSync(f, elsewhere);
    rmSync(f);
    symlinkSync(elsewhere, f);
    const o = r.reloader.reload();
    // The data directory check (as at a start) sees the link before the key reader does.
    expect(o.result === 'refused' && [o.error.code, o.error.message]).toEqual([
      'data_dir_insecure',
      expect.stringMatching(/symbolic link/),
    ]);
    expect(r.target.credentials).toBe(before);
  });

  it('a key file missing (a copy under way): refused, and no key is made in its place', () => {
    const r = running(dir);
    const before = r.target.credentials;
    const f = credentialKeyPaths(dir).sshHostCa;
    rmSync(f);
    const o = r.reloader.reload();
    expect(o.result === 'refused' && o.error.code).toBe('config_invalid');
    expect(existsSync(f)).toBe(false);
    expect(r.target.credentials).toBe(before);
  });

  it('a list that does not parse: refused, naming the file', () => {
    const r = running(dir);
    writeFileSync(rotatingKeysPath(dir), '{"version":1,"keys":[{"kind":"jwt"}]}', { mode: 0o644 });
    const o = r.reloader.reload();
    expect(o.result === 'refused' && o.error.message).toContain(rotatingKeysPath(dir));
  });
});

describe('when the watch reads a change', () => {
  it('only after it held still for one poll, and never while rotate-key holds its lock', async () => {
    const r = running(dir);
    expect(r.reloader.poll()).toEqual({ result: 'unchanged' });
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    expect(r.reloader.poll()).toEqual({ result: 'unchanged' }); // just changed: wait one poll
    writeFileSync(rotateLockPath(dir), `${process.pid}\n`, { mode: 0o600 });
    expect(r.reloader.poll()).toEqual({ result: 'unchanged' }); // settled, but a step is running
    rmSync(rotateLockPath(dir));
    expect(r.reloader.poll().result).toBe('applied');
    expect(kids(r)).toHaveLength(2);
    expect(r.reloader.poll()).toEqual({ result: 'unchanged' }); // nothing new
  });

  it('a step that lands between the start reading the keys and the reloader starting is still read', async () => {
    const stamp = keyFilesStamp(dir); // as server start takes it, before it reads the keys
    const target = { credentials: createCredentialAuthorities(loadCaMaterial(dir).credentials, 'example.org') };
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    const reloader = new KeyReloader({
      dataDir: dir,
      trustDomain: 'example.org',
      target,
      log: createLogger({ name: 't', level: 'silent' }),
      now: Date.now,
      stamp,
    });
    expect(reloader.poll()).toEqual({ result: 'unchanged' });
    expect(reloader.poll().result).toBe('applied');
    expect(publishedJwks(target.credentials, Date.now())).toHaveLength(2);
  });
});

describe("the store's memory of withdrawn keys (a ca/ restored from before a compromise rotation)", () => {
  it('a restored ca/ (the stolen key, an older list): the running issuer keeps its key; a restart halts the stolen one', async () => {
    const backup = join(root, 'ca-backup');
    cpSync(join(dir, 'ca'), backup, { recursive: true, preserveTimestamps: true });
    const stores = openIssuerStores(dir);
    try {
      const r = running(dir);
      const withStore = (target: Running['target']) =>
        new KeyReloader({
          dataDir: dir,
          trustDomain: 'example.org',
          target,
          log: createLogger({ name: 't', level: 'silent' }),
          now: Date.now,
          store: stores.admin,
        });
      const reloader = withStore(r.target);
      const stolen = r.target.credentials.jwt.kid;
      await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
      await reloader.refreshFromStore();
      expect(reloader.poll().result).toBe('applied'); // the store moved: read at once
      const fresh = jwtSigner(r.target.credentials).kid;
      expect(fresh).not.toBe(stolen);

      // The whole ca/ put back from the backup: the stolen key, and a list that never withdrew it.
      rmSync(join(dir, 'ca'), { recursive: true });
      cpSync(backup, join(dir, 'ca'), { recursive: true });
      const o = reloader.reload();
      expect(o.result === 'refused' && o.error.message).toMatch(/older than the list in use/);
      expect(jwtSigner(r.target.credentials).kid).toBe(fresh);

      // What a restart on these files loads: the stolen key, which the store alone remembers.
      const again = running(dir);
      expect(again.target.credentials.jwt.kid).toBe(stolen);
      const after = withStore(again.target);
      await after.refreshFromStore(true);
      expect(after.rememberedWithdrawals().map((w) => w.kind)).toEqual(['jwt']); // server start refuses this
      expect(after.poll()).toMatchObject({ result: 'applied', halted: ['jwt'] });
      expect(again.target.credentials.halted.get('jwt')).toMatch(/the store remembers it/);
      expect(() => jwtSigner(again.target.credentials)).toThrow(/signing_key_withdrawn|withdrawn/);
      expect(kids(again)).toEqual([]);
      await expect(rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' })).rejects.toMatchObject({
        code: 'bad_request',
      });
      // Only a compromise rotation replaces it.
      await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
      expect(after.reload()).toMatchObject({ result: 'applied', halted: [] });
      expect([stolen, fresh]).not.toContain(jwtSigner(again.target.credentials).kid);
    } finally {
      await stores.close();
    }
  });

  it('halts the key in use even when the files fail a check and are not taken', async () => {
    const stores = openIssuerStores(dir);
    try {
      const r = running(dir);
      const reloader = new KeyReloader({
        dataDir: dir,
        trustDomain: 'example.org',
        target: r.target,
        log: createLogger({ name: 't', level: 'silent' }),
        now: Date.now,
        store: stores.admin,
      });
      // Another issuer's compromise rotation recorded the key in the store; here a key file is missing.
      await stores.admin.rememberWithdrawnKey({
        kind: 'ssh-host',
        spkiSha256: spkiSha256(r.target.credentials.sshHost.signingPublicKey),
        at: Date.now(),
      });
      rmSync(credentialKeyPaths(dir).jwtSigning);
      await reloader.refreshFromStore();
      const o = reloader.poll();
      expect(o.result).toBe('refused');
      expect([...r.target.credentials.halted.keys()]).toEqual(['ssh-host']);
      expect(() => sshSigner(r.target.credentials, 'user')).toThrow(/withdrawn/);
    } finally {
      await stores.close();
    }
  });
});

describe('what the review of the running-issuer reload attacked', () => {
  it('an activation copied key file first: the old key keeps signing and both stay published until the list comes', async () => {
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    const b = peer();
    const r = running(b);
    const [k1, k2] = kids(r);
    await rotateKey({ dataDir: dir, key: 'jwt' });
    copy(b, credentialKeyPaths(dir).jwtSigning);
    const o = r.reloader.reload();
    expect(o.result === 'waiting' && o.reason).toMatch(/still lists as next.*copy the list first/);
    expect(jwtSigner(r.target.credentials).kid).toBe(k1);
    expect(kids(r)).toEqual([k1, k2]);
    copy(b, rotatingKeysPath(dir));
    expect(r.reloader.reload().result).toBe('applied');
    expect(kids(r)).toEqual([k2, k1]);
  });

  it('a compromise list with a key file that fails a check still halts the withdrawn key', async () => {
    const b = peer();
    const r = running(b);
    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    copy(b, credentialKeyPaths(dir).jwtSigning);
    chmodSync(credentialKeyPaths(b).jwtSigning, 0o640); // a copy that got the mode wrong
    copy(b, rotatingKeysPath(dir));
    expect(r.reloader.reload().result).toBe('refused');
    expect(r.reloader.halted()).toEqual(['jwt']);
    expect(kids(r)).toEqual([]);
    expect(r.reloader.pending()).toBe(true);
  });

  it('a halt is not lifted by an older list copied back, nor by the list removed', async () => {
    const b = peer();
    const r = running(b);
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' }); // the list has a sequence now
    copy(b, rotatingKeysPath(dir));
    r.reloader.reload();
    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    copy(b, rotatingKeysPath(dir));
    expect(r.reloader.reload()).toMatchObject({ result: 'applied', halted: ['jwt'] });
    const seq = r.target.credentials.rotatingSequence;
    rmSync(rotatingKeysPath(b));
    expect(r.reloader.reload().result).toBe('refused'); // sequence 0 < the one in use
    expect(r.reloader.halted()).toEqual(['jwt']);
    writeFileSync(rotatingKeysPath(b), '{"version":1,"sequence":1,"keys":[]}\n', { mode: 0o644 });
    const o = r.reloader.reload();
    expect(o.result === 'refused' && o.error.message).toMatch(/older than the list in use/);
    expect(r.reloader.halted()).toEqual(['jwt']);
    expect(r.target.credentials.rotatingSequence).toBe(seq);
    // A newer list that no longer mentions it (forgotten after 30 days, or hand-edited): still halted.
    writeFileSync(rotatingKeysPath(b), `{"version":1,"sequence":${seq + 10},"keys":[]}\n`, { mode: 0o644 });
    expect(r.reloader.reload()).toMatchObject({ result: 'applied', halted: ['jwt'] });
    expect(r.target.credentials.halted.get('jwt')).toMatch(/a list this issuer read said so/);
  });

  it('a compromise of one kind and an activation of another in one copied list: each kind decided on its own', async () => {
    await rotateKey({ dataDir: dir, key: 'ssh-user', step: 'stage' });
    const b = peer();
    const r = running(b);
    const lines = () => publishedSshCaLines(r.target.credentials, 'user', Date.now());
    const [signing, next] = lines();
    await rotateKey({ dataDir: dir, key: 'ssh-user' });
    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    copy(b, rotatingKeysPath(dir));
    expect(r.reloader.reload()).toMatchObject({ result: 'applied', halted: ['jwt'] });
    // ssh-user waits for its key file: the old CA still signs, the staged one stays published.
    expect(lines()).toEqual([signing, next]);
    copy(b, credentialKeyPaths(dir).sshUserCa);
    r.reloader.reload();
    expect(lines().map((l) => l.split(' ')[1])).toEqual([next!.split(' ')[1], signing!.split(' ')[1]]);
  });

  it('a lock left by a rotate-key that is gone does not stop the watch', async () => {
    const r = running(dir);
    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    writeFileSync(rotateLockPath(dir), '999999999\n', { mode: 0o600 });
    r.reloader.poll();
    expect(r.reloader.poll().result).toBe('applied');
  });

  it('files that keep changing are read anyway after a few polls', async () => {
    const r = running(dir);
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    let result = 'unchanged';
    for (let i = 0; i < MAX_UNSETTLED_POLLS && result === 'unchanged'; i++) {
      utimesSync(rotatingKeysPath(dir), new Date(), new Date(Date.now() + i * 1000 + 1000));
      result = r.reloader.poll().result;
    }
    expect(result).toBe('applied');
    expect(r.logs.some((l) => l.code === 'key_files_unsettled')).toBe(true);
  });

  it('ca/ writable by its group: refused as a start refuses it', async () => {
    const r = running(dir);
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    chmodSync(join(dir, 'ca'), 0o770);
    const o = r.reloader.reload();
    expect(o.result === 'refused' && o.error.code).toBe('data_dir_insecure');
    chmodSync(join(dir, 'ca'), 0o700);
  });
});

describe('what the second review attacked', () => {
  const withStore = (r: Running, d: string, store: { withdrawnKeys(): Promise<WithdrawnKeyRecord[]> }) =>
    new KeyReloader({
      dataDir: d,
      trustDomain: 'example.org',
      target: r.target,
      log: silentLogger(),
      now: Date.now,
      store,
    });

  it('a peer halted from the store alone does not publish the staged key the same rotation withdrew', async () => {
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    const b = peer();
    const r = running(b);
    expect(kids(r)).toHaveLength(2);
    const stores = openIssuerStores(dir); // A's store stands in for the shared one
    try {
      await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
      const reloader = withStore(r, b, stores.admin);
      await reloader.refreshFromStore();
      expect(reloader.poll()).toMatchObject({ result: 'applied', halted: ['jwt'] });
      expect(kids(r)).toEqual([]); // neither the stolen signing key nor the stolen staged one
      // A restart of the peer on its old files: start applies the store's memory before serving.
      const again = running(b);
      const r2 = withStore(again, b, stores.admin);
      await r2.refreshFromStore(true);
      expect(r2.rememberedWithdrawals().map((w) => w.kind)).toEqual(['jwt']);
      r2.applyKnownWithdrawals();
      expect(kids(again)).toEqual([]);
    } finally {
      await stores.close();
    }
  });

  it('a waiting kind does not bring back its previous signer when the store withdrew it', async () => {
    const b = peer();
    const r = running(b);
    const stolen = r.target.credentials.jwt.kid;
    const stores = openIssuerStores(dir);
    try {
      const reloader = withStore(r, b, stores.admin);
      await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
      await rotateKey({ dataDir: dir, key: 'ssh-user', overlapS: 0 });
      await reloader.refreshFromStore();
      expect(reloader.poll()).toMatchObject({ halted: ['jwt', 'ssh-user'] });
      await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
      copy(b, rotatingKeysPath(dir));
      reloader.reload();
      await rotateKey({ dataDir: dir, key: 'jwt' });
      copy(b, credentialKeyPaths(dir).jwtSigning); // the key file of the activation, not its list
      const o = reloader.reload();
      expect(o.result === 'applied' && o.halted).toContain('jwt');
      expect(r.target.credentials.jwt.kid).toBe(stolen); // kept while waiting, but never signing
      expect(() => jwtSigner(r.target.credentials)).toThrow(/withdrawn/);
      expect(kids(r)).not.toContain(stolen);
    } finally {
      await stores.close();
    }
  });

  it('ca export, given the store’s memory, refuses a remembered signing key and leaves out a remembered staged one', async () => {
    await rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' });
    const b = peer();
    const stores = openIssuerStores(dir);
    try {
      await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
      const withdrawn = await stores.admin.withdrawnKeys();
      expect(withdrawn).toHaveLength(2); // the signing key and the staged one
      expect(() => exportCaMaterial(b, 'jwks', { withdrawn })).toThrow(/the store remembers it/);
      // ssh-user was not rotated: printed, without anything withdrawn.
      expect(exportCaMaterial(b, 'ssh-user', { withdrawn }).trim().split('\n')).toHaveLength(1);
      copy(b, credentialKeyPaths(dir).jwtSigning); // the new key, the peer's old list still staging the stolen one
      const jwks = JSON.parse(exportCaMaterial(b, 'jwks', { withdrawn })) as { keys: unknown[] };
      expect(jwks.keys).toHaveLength(1);
    } finally {
      await stores.close();
    }
  });

  it("the store's memory only grows: a later read without the rows does not lift the halt", async () => {
    const r = running(dir);
    const rec = { kind: 'jwt', spkiSha256: spkiSha256(r.target.credentials.jwt.publicKey), at: Date.now() };
    let rows: WithdrawnKeyRecord[] = [rec];
    const reloader = withStore(r, dir, { withdrawnKeys: async () => rows });
    await reloader.refreshFromStore();
    expect(reloader.poll()).toMatchObject({ halted: ['jwt'] });
    rows = []; // a read that lost a race, or rows a database writer deleted
    await reloader.refreshFromStore();
    reloader.reload();
    expect(reloader.halted()).toEqual(['jwt']);
  });

  it('a stored time no Date can hold is refused as a malformed row, and rotate-key --overlap 0 still runs past such a row', async () => {
    expect(() =>
      withdrawnKeyOf({ key: `withdrawn_key:jwt:${'a'.repeat(64)}`, value: '{"at":9000000000000000}' }),
    ).toThrow(/not a withdrawn key as rotate-key writes it/);
    const db = new Database(join(dir, 'issuer.db'));
    db.prepare("INSERT INTO settings (key, value) VALUES ('withdrawn_key:jwt:zz', 'x')").run();
    db.close();
    await expect(rotateKey({ dataDir: dir, key: 'jwt', step: 'stage' })).rejects.toMatchObject({
      code: 'config_invalid',
    });
    const r = await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    expect(r.dropped).toHaveLength(1);
  });

  it('a lock older than ten minutes is ignored, whoever holds its pid now', async () => {
    const r = running(dir);
    await rotateKey({ dataDir: dir, key: 'jwt', overlapS: 0 });
    writeFileSync(rotateLockPath(dir), `${process.pid}\n`, { mode: 0o600 }); // a live pid (reused, or ours)
    r.reloader.poll();
    expect(r.reloader.poll().result).toBe('unchanged');
    const old = new Date(Date.now() - 11 * 60_000);
    utimesSync(rotateLockPath(dir), old, old);
    expect(r.reloader.poll().result).toBe('applied');
  });
});
