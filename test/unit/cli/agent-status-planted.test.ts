/**
 * `sigil agent status` (as root) and a data_dir another user made (review of session 14): a
 * data_dir in a sticky world-writable directory (/tmp: the agent's own parent check accepts it)
 * that a local user created before the agent — or a symbolic link there to their own directory —
 * holding a forged agent.db. The agent refuses both (agent/state/dir-perms.ts); so does status
 * (agent/state/db-readonly.ts readOnlyStateProblem), instead of showing the forged identity.
 * Needs root (chown).
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAgentState, openAgentStateReadOnly } from '../../../src/agent/state/index.js';
import { fakeIdentity } from '../../helpers/agent-identity.js';

const ATTACKER = 65534; // nobody: a local user who is neither root nor the agent's user

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sigil-status-planted-'));
  chmodSync(tmp, 0o1777); // like /tmp
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

/** A forged agent state in `dir`, owned by the attacker (as they would create it). */
function forge(dir: string): string {
  const w = openAgentState(dir);
  const forged = fakeIdentity();
  w.saveIdentity(forged);
  w.close();
  chownSync(dir, ATTACKER, ATTACKER);
  chownSync(join(dir, 'agent.db'), ATTACKER, ATTACKER);
  return forged.serial;
}

const statusOf = (dir: string): string => {
  try {
    const r = openAgentStateReadOnly(dir);
    const serial = r?.getIdentity()?.serial ?? 'no identity';
    r?.close();
    return `showed ${serial}`;
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
};
const agentOpens = (dir: string): string => {
  try {
    openAgentState(dir).close();
    return 'opened';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
};

describe.runIf(process.getuid?.() === 0)('agent status (as root) and a data_dir another user created', () => {
  it("the attacker's own directory at the configured path: the agent (root) refuses it, status shows it", () => {
    const dataDir = join(tmp, 'sigil-agent'); // data_dir: /tmp/sigil-agent
    const serial = forge(dataDir);
    expect(agentOpens(dataDir)).toBe('unsafe_path'); // the agent: not its own directory
    expect(statusOf(dataDir), `forged serial ${serial}`).toBe('unsafe_path');
  });

  it("the agent's own state there is still shown, but not beside another user's -wal file", () => {
    // The agent runs as root here: its directory in /tmp is root's, and status reads it.
    const dataDir = join(tmp, 'sigil-agent');
    const w = openAgentState(dataDir);
    w.saveIdentity(fakeIdentity());
    w.close();
    expect(statusOf(dataDir)).toMatch(/^showed /);
    const wal = join(dataDir, 'agent.db-wal');
    writeFileSync(wal, '');
    chownSync(wal, ATTACKER, ATTACKER);
    expect(statusOf(dataDir)).toBe('unsafe_path');
  });

  it("a symbolic link at the configured path to the attacker's directory: the agent refuses it, status follows it", () => {
    const evil = join(tmp, 'evil');
    mkdirSync(evil);
    const serial = forge(evil);
    const dataDir = join(tmp, 'sigil-agent');
    symlinkSync(evil, dataDir);
    expect(agentOpens(dataDir)).toBe('unsafe_path');
    expect(statusOf(dataDir), `forged serial ${serial}`).toBe('unsafe_path');
    expect(() => openAgentStateReadOnly(dataDir)).toThrow(/sigil-agent: it is a symbolic link/);
  });
});
