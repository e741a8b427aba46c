/**
 * `sigil agent status` as a report (agent/status.ts) and its read-only opening of the agent
 * database (agent/state/db-readonly.ts), issue #12 item 6: it creates nothing, shows
 * mqtt_client_cert only for an agent with an mqtt transport, gives the next attempt the daemon
 * will really make, and says what to do next for an identity that cannot be used.
 */
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAgentState, openAgentStateReadOnly, type AgentStatus } from '../../../src/agent/state/index.js';
import type { SigilError } from '../../../src/errors.js';
import { agentStatus, nextAttemptAt, nextStepHint } from '../../../src/agent/status.js';
import { fakeIdentity } from '../../helpers/agent-identity.js';

const id = fakeIdentity(); // valid 1_700_000_000_000 .. +1 h, renewAfter at +30 min
const T0 = id.notBefore;
const MIN = 60_000;
const quiet: AgentStatus = {
  consecutiveFailures: 0,
  lastError: null,
  lastAttemptAt: null,
  nextAttemptAt: null,
  transport: null,
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-status-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('openAgentStateReadOnly: status never creates anything', () => {
  it('a data directory that does not exist: not joined, and it still does not exist', () => {
    const dd = join(dir, 'never-used', 'data');
    expect(openAgentStateReadOnly(dd)).toBeUndefined();
    expect(existsSync(join(dir, 'never-used'))).toBe(false);
  });

  it('an existing empty directory: not joined, no agent.db appears', () => {
    expect(openAgentStateReadOnly(dir)).toBeUndefined();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a database no agent has open: read in full, and no -wal/-shm files are left behind', () => {
    const dd = join(dir, 'data');
    const w = openAgentState(dd);
    w.saveIdentity(id);
    w.close();
    const before = readdirSync(dd).sort();
    const r = openAgentStateReadOnly(dd)!;
    expect(r.getIdentity()?.serial).toBe(id.serial);
    expect(() => r.setStatus({ consecutiveFailures: 1 })).toThrow();
    r.close();
    expect(readdirSync(dd).sort()).toEqual(before);
  });

  it.runIf(process.getuid?.() === 0)(
    "refuses state another user could have written (unsafe_path), and reads an agent user's own state as root",
    () => {
      const dd = join(dir, 'data');
      const w = openAgentState(dd);
      w.saveIdentity(id);
      w.close();
      const db = join(dd, 'agent.db');
      const refusal = (): string | undefined => {
        try {
          openAgentStateReadOnly(dd)?.close();
          return undefined;
        } catch (e) {
          expect((e as SigilError).code).toBe('unsafe_path');
          return (e as Error).message;
        }
      };
      // The agent runs as uid 65534: its directory and database are its own; root reads them.
      chownSync(dd, 65534, 65534);
      chownSync(db, 65534, 65534);
      expect(refusal()).toBeUndefined();
      // Another user's database in the agent's directory (planted before it was tightened).
      chownSync(db, 65533, 65533);
      expect(refusal()).toMatch(/agent\.db: it is owned by uid 65533, not by uid 65534 who owns/);
      chownSync(db, 65534, 65534);
      // A database or a directory anyone could write.
      chmodSync(db, 0o666);
      expect(refusal()).toMatch(/agent\.db: it is writable by group or others \(mode 0666/);
      chmodSync(db, 0o600);
      chmodSync(dd, 0o777);
      expect(refusal()).toMatch(/from .*data: the directory is writable by group or others \(mode 0777/);
      chmodSync(dd, 0o700);
      expect(refusal()).toBeUndefined();
    },
  );

  it('while the agent has it open: sees its latest commit (from the WAL)', () => {
    const dd = join(dir, 'data');
    const w = openAgentState(dd);
    w.saveIdentity(id);
    w.saveIdentity(fakeIdentity({ serial: '02cd', generation: 2 }));
    const r = openAgentStateReadOnly(dd)!;
    expect(r.getIdentity()?.serial).toBe('02cd');
    r.close();
    w.close();
  });

  it('a database of an older schema is not migrated by status: it says to start the agent', () => {
    const dd = join(dir, 'data');
    openAgentState(dd).close();
    const db = new Database(join(dd, 'agent.db'));
    db.pragma('user_version = 3');
    db.close();
    expect(() => openAgentStateReadOnly(dd)).toThrow(/schema version 3, older than this Sigil: start the agent/);
  });
});

describe('agentStatus', () => {
  it('without a database: not_joined, every identity field null, nothing scheduled', () => {
    const s = agentStatus(undefined, T0, { mqtt: false });
    expect(s).toMatchObject({
      state: 'not_joined',
      spiffe_id: null,
      next_attempt: null,
      consecutive_failures: 0,
      credential_outputs: [],
      mqtt_client_cert: null,
    });
  });

  it('mqtt_client_cert: a value with an mqtt transport, null without one, absent when the config is unknown (--data-dir)', () => {
    const st = openAgentState(join(dir, 'data'));
    st.saveIdentity(id);
    expect(agentStatus(st, T0 + MIN, { mqtt: true }).mqtt_client_cert).toBe('svid');
    expect(agentStatus(st, T0 + MIN, { mqtt: false }).mqtt_client_cert).toBeNull();
    expect(agentStatus(st, T0 + MIN)).not.toHaveProperty('mqtt_client_cert');
    st.close();
  });
});

describe('nextAttemptAt: what the daemon will do, not the stored backoff time', () => {
  it('after a refused manual renew (failures 1, backoff long past, nothing pending): the next renewal', () => {
    const st: AgentStatus = {
      ...quiet,
      consecutiveFailures: 1,
      lastAttemptAt: T0 + 5 * MIN,
      nextAttemptAt: T0 + 5 * MIN + 1000,
    };
    // The daemon wakes at the backoff time but sends nothing before renewAfter.
    expect(nextAttemptAt(st, id, false, T0 + 10 * MIN)).toBe(id.renewAfter);
  });

  it('backing off past the renewal time: the backoff time', () => {
    const st: AgentStatus = {
      ...quiet,
      consecutiveFailures: 3,
      lastAttemptAt: id.renewAfter + MIN,
      nextAttemptAt: id.renewAfter + 5 * MIN,
    };
    expect(nextAttemptAt(st, id, false, id.renewAfter + 2 * MIN)).toBe(id.renewAfter + 5 * MIN);
  });

  it('backing off across the expiry: one attempt at the expiry itself', () => {
    const st: AgentStatus = {
      ...quiet,
      consecutiveFailures: 3,
      lastAttemptAt: id.notAfter - MIN,
      nextAttemptAt: id.notAfter + 4 * MIN,
    };
    expect(nextAttemptAt(st, id, false, id.notAfter - 30_000)).toBe(id.notAfter);
  });

  it('no failures: the next renewal; a pending request or an overdue renewal: now, never a past time', () => {
    expect(nextAttemptAt(quiet, id, false, T0 + MIN)).toBe(id.renewAfter);
    expect(nextAttemptAt(quiet, id, true, T0 + MIN)).toBe(T0 + MIN);
    expect(nextAttemptAt(quiet, id, false, id.renewAfter + MIN)).toBe(id.renewAfter + MIN);
  });

  it('not joined: nothing until something was tried; then the backoff time', () => {
    expect(nextAttemptAt(quiet, undefined, false, T0)).toBeNull();
    expect(nextAttemptAt({ ...quiet, consecutiveFailures: 1, nextAttemptAt: T0 + 2000 }, undefined, false, T0)).toBe(
      T0 + 2000,
    );
  });
});

describe('nextStepHint', () => {
  const report = (over: Partial<ReturnType<typeof agentStatus>>) => ({ ...agentStatus(undefined, T0), ...over });

  it('not joined: run the agent once with the config', async () => {
    expect(await nextStepHint(report({}), '/etc/sigil/agent.yaml')).toBe(
      'not joined yet; run: sigil agent run --once --config /etc/sigil/agent.yaml',
    );
  });

  it('expired token join: a new token, with the bot and the config', async () => {
    const h = await nextStepHint(report({ state: 'expired', join_method: 'token', bot: 'gw' }), 'a.yaml');
    expect(h).toMatch(/sigil ctl --data-dir <issuer-data-dir> token create --bot gw/);
    expect(h).toMatch(/sigil agent run --once --config a\.yaml/);
  });

  it('expired tpm join: it re-attests by itself', async () => {
    const h = await nextStepHint(
      report({ state: 'expired', join_method: 'tpm', bot: 'gw', next_attempt: '2026-12-04T10:00:00.000Z' }),
      undefined,
    );
    expect(h).toBe(
      'the identity expired; the tpm join re-attests by itself: a running agent joins again at 2026-12-04T10:00:00.000Z, or run now: sigil agent run --once --config <agent.yaml>',
    );
  });

  it('a valid certificate of a locked instance: say so, and who can unlock it', async () => {
    const locked = report({
      state: 'ok',
      instance_id: 'i-1',
      bot: 'gw',
      not_after: '2026-12-05T12:00:00.000Z',
      consecutive_failures: 2,
      last_error: 'instance_locked: the instance is locked',
    });
    const h = await nextStepHint(locked, 'a.yaml');
    expect(h).toMatch(/^the issuer has locked this instance \(instance_locked: the instance is locked\)/);
    expect(h).toMatch(/used until 2026-12-05T12:00:00\.000Z/);
    expect(h).toMatch(
      /sigil ctl --data-dir <issuer-data-dir> instances show i-1, then: sigil ctl --data-dir <issuer-data-dir> unlock i-1$/,
    );
    const bot = await nextStepHint({ ...locked, last_error: 'bot_locked: the bot is locked' }, 'a.yaml');
    expect(bot).toMatch(/locked this bot .*sigil ctl --data-dir <issuer-data-dir> unlock gw$/);
    // A success since answered it: no hint.
    expect(await nextStepHint({ ...locked, consecutive_failures: 0 }, 'a.yaml')).toBeUndefined();
  });

  it('renewals refused for the boot state: name the failed check', async () => {
    const r = report({
      state: 'renewal_overdue',
      instance_id: 'i-2',
      consecutive_failures: 1,
      last_error: 'pcr_value: PCR 7 differs',
      last_attestation_result: 'refused',
      last_attestation_check: 'pcr_value',
    });
    expect(await nextStepHint(r, 'a.yaml')).toMatch(
      /refused the last attestation \(pcr_value failed\).*instances show i-2$/,
    );
  });

  it('usable identities: no hint', async () => {
    expect(await nextStepHint(report({ state: 'ok' }), 'a.yaml')).toBeUndefined();
    expect(await nextStepHint(report({ state: 'renewal_overdue' }), 'a.yaml')).toBeUndefined();
  });
});
