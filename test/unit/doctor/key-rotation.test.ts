/**
 * `sigil doctor` on the issuer: rotations in progress (`sigil server rotate-key`). A staged key
 * forgotten for more than a week is a warning with the command that finishes or drops it; a
 * rotating-key list the issuer would refuse to start with is a failure.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { keyRotationCheck } from '../../../src/doctor/server/key-rotation.js';
import { credentialKeyPaths } from '../../../src/server/credential-keys.js';
import { initDataDir } from '../../../src/server/data-dir.js';
import { rotateKey } from '../../../src/server/rotate-key.js';
import { rotatingKeysPath } from '../../../src/server/rotating-keys.js';

const root = mkdtempSync(join(tmpdir(), 'sigil-doctor-rot-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const d = join(root, `d${n++}`);
  initDataDir(d, 'example.org');
  return d;
};
const at = (dataDir: string, now: number) =>
  keyRotationCheck.run({ dataDir, listen: undefined, full: false, now: () => now }, new AbortController().signal);

const H = 3_600_000;

describe('doctor: key rotations in progress', () => {
  it('none: ok', async () => {
    expect(await at(fresh(), Date.now())).toEqual({ status: 'ok', detail: 'no key rotation in progress' });
  });

  it('a staged key: its age, ready after 25 h, a warning with the fix after 7 days', async () => {
    const d = fresh();
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    await rotateKey({ dataDir: d, key: 'ssh-host', step: 'stage', now: t0 });
    expect(await at(d, t0 + 2 * H)).toEqual({ status: 'ok', detail: 'ssh-host: next key staged 2.0 h ago' });
    expect((await at(d, t0 + 26 * H)).detail).toBe('ssh-host: next key staged 26.0 h ago (ready to activate)');
    const late = await at(d, t0 + 8 * 24 * H);
    expect(late.status).toBe('warn');
    expect(late.fix).toBe(`sigil server rotate-key --data-dir ${d} --key ssh-host   # or --cancel`);
  });

  it('a retired key: published until its overlap ends, then gone', async () => {
    const d = fresh();
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    await rotateKey({ dataDir: d, key: 'jwt', now: t0 });
    expect(await at(d, t0 + H)).toEqual({
      status: 'ok',
      detail: expect.stringMatching(/^jwt: retired key kid \S+ published until 2026-12-02T01:00:00\.000Z$/),
    });
    expect((await at(d, t0 + 25 * H)).detail).toBe('no key rotation in progress');
  });

  it('after a compromise rotation: nothing in progress, but the withdrawn keys it remembers are named', async () => {
    const d = fresh();
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    await rotateKey({ dataDir: d, key: 'ssh-user', overlapS: 0, now: t0 });
    expect(await at(d, t0 + H)).toEqual({
      status: 'ok',
      detail:
        'no key rotation in progress; 1 withdrawn key (ssh-user) remembered until 2026-12-31T00:00:00.000Z; the store remembers 1 withdrawn key (ssh-user): an issuer still holding one halts it and refuses to start with it',
    });
  });

  it('a ca/ restored from before a compromise rotation: fail, from the store’s memory (as the start refuses)', async () => {
    const d = fresh();
    const backup = `${d}-ca-backup`;
    cpSync(join(d, 'ca'), backup, { recursive: true });
    await rotateKey({ dataDir: d, key: 'jwt', overlapS: 0 });
    rmSync(join(d, 'ca'), { recursive: true });
    cpSync(backup, join(d, 'ca'), { recursive: true });
    rmSync(backup, { recursive: true });
    const r = await at(d, Date.now());
    expect(r.status).toBe('fail');
    expect(r.detail).toMatch(
      /^config_invalid: the jwt signing key .* withdrawn by a compromise rotation .*the store remembers it/,
    );
  });

  it('a published next key without its key file (a peer given only the list): fail, naming the file and both fixes', async () => {
    const d = fresh();
    await rotateKey({ dataDir: d, key: 'jwt', step: 'stage' });
    const next = `${credentialKeyPaths(d).jwtSigning}.next`;
    rmSync(next);
    const r = await at(d, Date.now());
    expect(r.status).toBe('fail');
    expect(r.detail).toMatch(
      new RegExp(`^jwt: a next key is published but ${next.replace(/[.]/g, '\\.')} cannot be used`),
    );
    expect(r.fix).toBe(
      'copy ca/jwt_signing.key.next (0600) from the issuer where it was staged; or drop the stage there (sigil server rotate-key --data-dir DIR --key jwt --cancel) and copy its ca/rotating-keys.json here',
    );
  });

  it('a data directory that missed a step (its signing key is the retired one), and a leftover staged file', async () => {
    const d = fresh();
    const keyFile = credentialKeyPaths(d).sshUserCa;
    const old = readFileSync(keyFile);
    await rotateKey({ dataDir: d, key: 'ssh-user' });
    writeFileSync(keyFile, old, { mode: 0o600 }); // as an issuer given only the new list
    const r = await at(d, Date.now());
    expect(r.status).toBe('fail');
    expect(r.detail).toMatch(/^config_invalid: the ssh-user signing key in .* is the one .* lists as retired since/);
    expect(r.fix).toMatch(
      /^copy ca\/rotating-keys\.json first, then the key files, from the issuer where sigil server rotate-key ran/,
    );
    // The finished list has no staged entry: copy the key file — never "run rotate-key again", which
    // on a peer would rotate once more (found walking the docs).
    expect(r.detail).toMatch(/got its list before its key file: copy the key file/);
    expect(r.detail).not.toMatch(/again/);

    // Every key out of service is named, not only the first (a compromise often rotates all three).
    const jwtOld = readFileSync(credentialKeyPaths(d).jwtSigning);
    await rotateKey({ dataDir: d, key: 'jwt', overlapS: 0 });
    writeFileSync(credentialKeyPaths(d).jwtSigning, jwtOld, { mode: 0o600 });
    const both = await at(d, Date.now());
    expect(both.detail).toMatch(
      /the jwt signing key .* lists as withdrawn .*; the ssh-user signing key .* lists as retired/,
    );

    const e = fresh();
    writeFileSync(`${credentialKeyPaths(e).jwtSigning}.next`, 'x', { mode: 0o600 });
    expect(await at(e, Date.now())).toMatchObject({
      status: 'warn',
      detail: expect.stringMatching(/jwt_signing\.key\.next: a staged key no rotation publishes/),
      fix: `rm ${credentialKeyPaths(e).jwtSigning}.next`,
    });
  });

  it('an activation whose key file arrived before its list (the wrong order): fail, asking for the list', async () => {
    const origin = fresh();
    await rotateKey({ dataDir: origin, key: 'ssh-host', step: 'stage' });
    const peer = join(root, `d${n++}`);
    cpSync(origin, peer, { recursive: true }); // the stage copied: list + .next
    await rotateKey({ dataDir: origin, key: 'ssh-host' });
    const keyFile = (d: string) => credentialKeyPaths(d).sshHostCa;
    cpSync(keyFile(origin), keyFile(peer));
    rmSync(`${keyFile(peer)}.next`);
    const r = await at(peer, Date.now());
    expect(r).toMatchObject({
      status: 'fail',
      detail: `ssh-host: ${keyFile(peer)} is the key ${rotatingKeysPath(peer)} publishes as next: an activation's key file arrived before its list`,
      fix: expect.stringMatching(
        /^copy ca\/rotating-keys\.json \(0600\) from the issuer where sigil server rotate-key ran/,
      ),
    });
    cpSync(rotatingKeysPath(origin), rotatingKeysPath(peer));
    expect((await at(peer, Date.now())).status).toBe('ok');
  });

  it('an activation stopped half-way (its list still stages the key): rotate-key again finishes it', async () => {
    const d = fresh();
    const keyFile = credentialKeyPaths(d).jwtSigning;
    const old = readFileSync(keyFile);
    await rotateKey({ dataDir: d, key: 'jwt', step: 'stage' });
    const staged = readFileSync(rotatingKeysPath(d), 'utf8');
    await rotateKey({ dataDir: d, key: 'jwt' });
    // As after the activation's first write: the list retires the old key and still stages the next.
    const list = JSON.parse(readFileSync(rotatingKeysPath(d), 'utf8')) as { keys: unknown[] };
    const next = (JSON.parse(staged) as { keys: Array<{ state: string }> }).keys.find((k) => k.state === 'next');
    writeFileSync(rotatingKeysPath(d), JSON.stringify({ ...list, keys: [...list.keys, next] }), { mode: 0o600 });
    writeFileSync(keyFile, old, { mode: 0o600 });
    const r = await at(d, Date.now());
    expect(r.detail).toMatch(
      /an activation stopped half-way \(run sigil server rotate-key --data-dir .* --key jwt again/,
    );
  });

  it('a list the issuer would refuse: fail, with the way out', async () => {
    const d = fresh();
    writeFileSync(rotatingKeysPath(d), '{"version":1,"keys":[{"kind":"jwt"}]}');
    const r = await at(d, Date.now());
    expect(r.status).toBe('fail');
    expect(r.detail).toMatch(/^config_invalid: .*rotating-keys\.json is not a rotating-key list/);
    expect(r.fix).toMatch(/the issuer will not start with it/);
  });
});
