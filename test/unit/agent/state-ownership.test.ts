/**
 * The agent's state directory and agent.db are refused when another local user owns or can
 * write them (src/agent/state/dir-perms.ts). Each attack is carried out by a real unprivileged
 * user (`nobody`, through setpriv) against root's agent: planting a data directory or a database
 * before the agent's first start, planting a WAL, writing into a group/world-writable data
 * directory, renaming the data directory out of a parent without the sticky bit. Without the
 * check each test fails (the agent opens the state, or the planter reads the secret).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { openAgentState } from '../../../src/agent/state/index.js';
import { lockDataDir } from '../../../src/agent/state/lock.js';

const NOBODY = 65534;
const NOGROUP = 65534;
const MARKER = '-----BEGIN PRIVATE KEY----- STATE-OWNERSHIP-MARKER';
const root = process.getuid?.() === 0 && process.platform === 'linux';

/** Run `cmd` as nobody; returns its exit status and output (never throws). */
function asNobody(cmd: string[]): { status: number | null; out: string } {
  const r = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOGROUP}`, '--clear-groups', ...cmd], {
    encoding: 'latin1',
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Open the state as root and store a secret; the refusal, or undefined when it was stored. */
function storeSecret(dataDir: string): SigilError | undefined {
  let st;
  try {
    st = openAgentState(dataDir);
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  try {
    st.setSetting('review-secret', MARKER);
  } finally {
    st.close();
  }
  return undefined;
}

/** What nobody can read of every agent.db* file in `dir`. */
function readableByNobody(dir: string): string {
  return asNobody(['sh', '-c', `cat "${dir}"/agent.db* 2>/dev/null; true`]).out;
}

let base: string;
beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-state-own-'));
  // Like /tmp: anyone may create entries, the sticky bit keeps them from renaming others'.
  fs.chmodSync(base, 0o1777);
});
afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

describe.runIf(root)('agent state: ownership and mode of data_dir and agent.db', () => {
  it('refuses a data_dir another user created first, before creating anything in it', () => {
    const data = path.join(base, 'data');
    // nobody got there before the agent's first start (data_dir under /tmp, say).
    expect(asNobody(['mkdir', '-m', '0755', data]).status).toBe(0);
    const err = storeSecret(data);
    expect(fs.readdirSync(data)).toEqual([]);
    expect(err?.code).toBe('unsafe_path');
    expect(err?.message).toContain(`agent state directory ${data}: it is owned by uid ${NOBODY}, not by root or uid 0`);
    expect(err?.message).toContain('(mode 0755, owner uid 65534)');
    expect(err?.message).toMatch(new RegExp(`run: chown 0 ${data}$`));
  });

  it('takes no lock in a data_dir another user created: nothing is created in it', () => {
    const data = path.join(base, 'data');
    expect(asNobody(['mkdir', '-m', '0755', data]).status).toBe(0);
    let err: unknown;
    try {
      lockDataDir(data, 'test')();
    } catch (e) {
      err = e;
    }
    expect(fs.readdirSync(data)).toEqual([]);
    expect((err as SigilError | undefined)?.code).toBe('unsafe_path');
  });

  it('refuses an agent.db another user planted: nothing the agent stores reaches its planter', () => {
    const data = path.join(base, 'data');
    fs.mkdirSync(data, { mode: 0o700 });
    fs.chmodSync(data, 0o755);
    // nobody's file, made in a directory nobody can write and moved in (rename keeps the owner):
    // the state of a data_dir that was nobody's, or group-writable, when it was planted.
    const scratch = path.join(base, 'scratch');
    expect(asNobody(['sh', '-c', `mkdir -m 0700 "${scratch}" && touch "${scratch}/agent.db"`]).status).toBe(0);
    fs.renameSync(path.join(scratch, 'agent.db'), path.join(data, 'agent.db'));
    expect(fs.statSync(path.join(data, 'agent.db')).uid).toBe(NOBODY);

    const err = storeSecret(data);
    expect(readableByNobody(data)).not.toContain('STATE-OWNERSHIP-MARKER');
    expect(err?.code).toBe('unsafe_path');
    expect(err?.message).toContain(
      `agent state ${data}/agent.db: it is owned by uid ${NOBODY}, not by uid 0 running the agent`,
    );
    expect(err?.message).toContain(`chown 0 ${data}/agent.db && chmod 600 ${data}/agent.db`);
    expect(fs.readdirSync(data)).toEqual(['agent.db']);
  });

  it('refuses an agent.db of its own that other users can write (they could have rewritten it)', () => {
    const data = path.join(base, 'data');
    openAgentState(data).close();
    const db = path.join(data, 'agent.db');
    fs.chmodSync(data, 0o755); // accepted: readable, not writable, by others
    fs.chmodSync(db, 0o666);
    expect(asNobody(['test', '-w', db]).status).toBe(0);
    const err = storeSecret(data);
    expect(err?.code).toBe('unsafe_path');
    expect(err?.message).toContain(`agent state ${db}: it is writable by group or others`);
    expect(err?.message).toContain('(mode 0666, owner uid 0)');
    expect(err?.message).not.toContain('owned by uid');
    // Refused as found: the agent does not quietly chmod a file someone else may have rewritten.
    expect(fs.statSync(db).mode & 0o777).toBe(0o666);
  });

  it('refuses an agent.db-wal another user planted beside the real agent.db', () => {
    const data = path.join(base, 'data');
    openAgentState(data).close(); // a real state, 0700 / 0600, WAL checkpointed and removed
    fs.chmodSync(data, 0o755);
    const scratch = path.join(base, 'scratch');
    expect(
      asNobody(['sh', '-c', `mkdir -m 0700 "${scratch}" && : > "${scratch}/w" && chmod 0666 "${scratch}/w"`]).status,
    ).toBe(0);
    fs.renameSync(path.join(scratch, 'w'), path.join(data, 'agent.db-wal'));

    const err = storeSecret(data);
    expect(readableByNobody(data)).not.toContain('STATE-OWNERSHIP-MARKER');
    expect(err?.code).toBe('unsafe_path');
    expect(err?.message).toContain(`${data}/agent.db-wal: it is owned by uid ${NOBODY}`);
    expect(err?.message).toContain('and it is writable by group or others');
  });

  it('refuses a world- or group-writable data_dir, in which another user can swap agent.db', () => {
    const data = path.join(base, 'data');
    openAgentState(data).close();
    fs.chmodSync(data, 0o777);
    // The attack is real: nobody can rename the agent's database away and put its own there.
    expect(
      asNobody(['sh', '-c', `mv "${data}/agent.db" "${data}/x" && mv "${data}/x" "${data}/agent.db"`]).status,
    ).toBe(0);
    const err = storeSecret(data);
    expect(err?.code).toBe('unsafe_path');
    expect(err?.message).toContain(
      `agent state directory ${data}: it is writable by group or others (mode 0777, owner uid 0)`,
    );
    expect(err?.message).toMatch(new RegExp(`run: chmod go-w ${data}$`));

    fs.chownSync(data, 0, NOGROUP);
    fs.chmodSync(data, 0o770);
    expect(asNobody(['touch', path.join(data, 'planted')]).status).toBe(0);
    expect(storeSecret(data)?.message).toContain('it is writable by group or others (mode 0770, owner uid 0)');
  });

  it('refuses a data_dir whose parent lets others rename it away (world-writable, no sticky bit)', () => {
    const parent = path.join(base, 'open');
    fs.mkdirSync(parent, { mode: 0o755 });
    const data = path.join(parent, 'data');
    openAgentState(data).close();
    fs.chmodSync(parent, 0o777);
    // nobody can move root's 0700 directory aside (and then put its own in its place).
    expect(asNobody(['mv', data, `${data}.aside`]).status).toBe(0);
    expect(asNobody(['mv', `${data}.aside`, data]).status).toBe(0);
    const err = storeSecret(data);
    expect(err?.code).toBe('unsafe_path');
    expect(err?.message).toContain(`its parent ${parent} is world-writable without the sticky bit (mode 0777`);
    expect(err?.message).toMatch(new RegExp(`chmod o-w ${parent}$`));
    fs.chmodSync(parent, 0o1777);
    expect(storeSecret(data)).toBeUndefined();
  });

  it('still opens what the agent made itself, and tightens a group-readable WAL of its own', () => {
    const data = path.join(base, 'data');
    expect(storeSecret(data)).toBeUndefined();
    const st = openAgentState(data); // keeps the WAL while open
    try {
      st.setSetting('k', 'v');
      fs.chmodSync(path.join(data, 'agent.db-wal'), 0o644);
      openAgentState(data).close();
      expect(fs.statSync(path.join(data, 'agent.db-wal')).mode & 0o777).toBe(0o600);
    } finally {
      st.close();
    }
    expect(fs.statSync(data).mode & 0o777).toBe(0o700);
  });

  it('an agent running as an unprivileged user uses its own data_dir and refuses another user’s', () => {
    const mine = path.join(base, 'mine');
    const theirs = path.join(base, 'theirs');
    fs.mkdirSync(theirs, { mode: 0o755 });
    fs.chownSync(theirs, 12345, 12345);
    const script = `
      const { openAgentState } = await import('./src/agent/state/index.ts');
      const out = {};
      for (const [k, d] of [['mine', ${JSON.stringify(mine)}], ['theirs', ${JSON.stringify(theirs)}]]) {
        try { openAgentState(d).close(); out[k] = 'opened'; } catch (e) { out[k] = e.code + ': ' + e.message; }
      }
      console.log(JSON.stringify(out));`;
    const r = spawnSync(
      'setpriv',
      [`--reuid=${NOBODY}`, `--regid=${NOGROUP}`, '--clear-groups', process.execPath, '--import', 'tsx', '-e', script],
      { encoding: 'utf8', cwd: fileURLToPath(new URL('../../..', import.meta.url)) },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { mine: string; theirs: string };
    expect(out.mine).toBe('opened');
    expect(fs.statSync(path.join(mine, 'agent.db')).uid).toBe(NOBODY);
    expect(out.theirs).toContain(
      `unsafe_path: refusing to use agent state directory ${theirs}: it is owned by uid 12345, not by root or uid ${NOBODY}`,
    );
    expect(execFileSync('ls', ['-A', theirs]).toString()).toBe('');
  });
});
