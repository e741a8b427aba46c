/**
 * The workload sync follows the agent's own identity (issue #17): every request for a workload
 * SVID is signed with it, so before the join the sync fails and backs off (5 s, 10 s, … 5 min).
 * When the agent joins (or renews after an expiry), WorkloadIdentities.agentIdentityChanged()
 * makes the sync loop run at once instead of at its next retry.
 *
 * Also when the loop plans its next pass: overdue work backs off (an issuer down for longer than
 * the entry period is not asked every second), and a JWT-SVID the loop does not renew itself (one
 * cached for a caller's audience combination) does not count as due.
 *
 * Timers are fake and never advanced: a loop that was not woken would wait forever and the test
 * would time out — no sleeping, no timing.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SigilError } from '../../../src/errors.js';
import { openAgentState, type AgentState } from '../../../src/agent/state/index.js';
import { ENTRY_SYNC_MS, WorkloadIdentities } from '../../../src/agent/workload/identities.js';
import { silentLogger } from '../../../src/util/log.js';
import { entry, FakeWorkloadIssuer } from '../../helpers/workload-issuer-fake.js';

/** The fake issuer as the agent's link sees it before the join: entries and SVIDs need the agent's identity. */
class NotYetJoined extends FakeWorkloadIssuer {
  joined = false;
  /** While set, fetchEntries waits for it (a pass in flight when the join completes). */
  gate: Promise<void> | undefined;
  /** Called as each fetchEntries is sent. */
  onAsk: (() => void) | undefined;
  asks = 0;

  override async fetchEntries(): ReturnType<FakeWorkloadIssuer['fetchEntries']> {
    this.asks++;
    this.onAsk?.();
    // As a real request: signed (or refused) with the identity the agent had when it was sent.
    const joinedWhenSent = this.joined;
    await this.gate;
    if (!joinedWhenSent) throw new SigilError('not_joined', 'the agent has no identity yet');
    return super.fetchEntries();
  }
}

/** Resolves at the next change of what is served for which `ready` holds. */
function changeWhere(ids: WorkloadIdentities, ready: () => boolean): Promise<void> {
  return new Promise((r) => {
    const off = ids.onChange(() => {
      if (!ready()) return;
      off();
      r();
    });
  });
}

let dir: string;
let state: AgentState;
let stop: AbortController;
/** The injected clock stands still (at the real time: the fake issuer's certificates are dated by it). */
let NOW: number;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  dir = mkdtempSync(join(tmpdir(), 'sigil-wlwake-'));
  state = openAgentState(join(dir, 'data'));
  stop = new AbortController();
  NOW = Date.now();
});
afterEach(() => {
  stop.abort();
  vi.useRealTimers();
  state.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('workload sync after the agent joins', () => {
  it('a failed pre-join pass backs off; the join wakes the loop and the SVID is issued without waiting out the backoff', async () => {
    const issuer = new NotYetJoined();
    issuer.entries = [entry('web', ['unix:uid:1000'])];
    const ids = new WorkloadIdentities(issuer, state.workloads, silentLogger(), () => NOW);
    const hasSvid = (): boolean => state.workloads.svids().length > 0;
    // The pre-join pass stores the bundles (a change) and fails on the entries.
    const firstPass = changeWhere(ids, () => true);
    const loop = ids.run(stop.signal);
    await firstPass;
    expect(hasSvid()).toBe(false);
    expect(ids.nextSyncAt()).toBe(NOW + 5_000); // on a clock that does not move, with timers that do not run
    await new Promise((r) => setImmediate(r)); // (not faked) every pending continuation has run:
    expect(vi.getTimerCount()).toBe(1); // the loop is asleep on its backoff timer

    issuer.joined = true;
    const served = changeWhere(ids, hasSvid);
    ids.agentIdentityChanged('joined');
    await served;
    expect(state.workloads.svids().map((s) => s.spiffeId)).toEqual(['spiffe://workload.test/web']);
    stop.abort();
    await loop;
  });

  it('a join that completes while a pass is in flight (that pass fails) still gets a pass right after it', async () => {
    const issuer = new NotYetJoined();
    issuer.entries = [entry('web', ['unix:uid:1000'])];
    let release!: () => void;
    issuer.gate = new Promise((r) => (release = r));
    const ids = new WorkloadIdentities(issuer, state.workloads, silentLogger(), () => NOW);
    const served = changeWhere(ids, () => state.workloads.svids().length > 0);
    const asked = new Promise<void>((r) => (issuer.onAsk = r));
    const loop = ids.run(stop.signal);
    // The pass's entries request went out before the join; the join completes; then its refusal comes.
    await asked;
    issuer.onAsk = undefined;
    issuer.joined = true;
    ids.agentIdentityChanged('joined');
    issuer.gate = undefined;
    release();
    await served;
    expect(issuer.asks).toBe(2);
    stop.abort();
    await loop;
  });

  it('a renewal while the sync is healthy does not add a pass; one after failures does', async () => {
    const issuer = new NotYetJoined();
    issuer.joined = true;
    issuer.entries = [entry('web', ['unix:uid:1000'])];
    const ids = new WorkloadIdentities(issuer, state.workloads, silentLogger(), () => NOW);
    await ids.sync();
    const planned = ids.nextSyncAt();
    expect(planned).toBeGreaterThan(NOW + 5_000);
    ids.agentIdentityChanged('renewed');
    expect(ids.nextSyncAt()).toBe(planned);

    issuer.down = true;
    await ids.sync({ force: true });
    expect(ids.nextSyncAt()).toBe(NOW + 5_000);
    issuer.down = false;
    ids.agentIdentityChanged('renewed');
    expect(ids.nextSyncAt()).toBe(0);
  });
});

describe('workload sync backoff', () => {
  it('an issuer down for longer than the entry period is retried after 5 s, 10 s, 20 s… — not every second', async () => {
    const issuer = new NotYetJoined();
    issuer.joined = true;
    issuer.entries = [entry('web', ['unix:uid:1000'])];
    let t = NOW;
    const ids = new WorkloadIdentities(issuer, state.workloads, silentLogger(), () => t);
    await ids.sync();
    issuer.down = true;
    t += ENTRY_SYNC_MS + 1; // the entries are overdue from now on
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      await ids.sync();
      waits.push(ids.nextSyncAt() - t);
      t = ids.nextSyncAt();
    }
    expect(waits).toEqual([5_000, 10_000, 20_000, 40_000]);
  });

  it('a JWT-SVID cached for a caller’s audience combination does not make the loop poll once past its half-life', async () => {
    const issuer = new NotYetJoined();
    issuer.joined = true;
    const web = entry('web', ['unix:uid:1000'], { jwtAudiences: ['aud-a', 'aud-b'] });
    issuer.entries = [web];
    let t = NOW;
    const ids = new WorkloadIdentities(issuer, state.workloads, silentLogger(), () => t);
    await ids.sync();
    await ids.jwtFor(web, ['aud-a', 'aud-b']); // cached, renewed only when asked for again
    t += (issuer.jwtTtlS * 1000) / 2 + 1; // past its half-life, not expired
    await ids.sync(); // renews the two single-audience JWT-SVIDs it keeps fresh
    expect(ids.nextSyncAt() - t).toBeGreaterThan(60_000);
  });
});
