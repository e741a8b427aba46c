/**
 * The Workload API cache in agent.db (src/agent/state/workload.ts): entries replaced as the
 * issuer says, and what belonged to an entry that was withdrawn or renamed goes with it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAgentState, type AgentState } from '../../../src/agent/state/index.js';
import type { WorkloadEntry } from '../../../src/agent/workload/issuer-port.js';

let dir: string;
let state: AgentState;

const entry = (id: string, spiffeId = `spiffe://td/${id}`): WorkloadEntry => ({
  id,
  spiffeId,
  selectors: ['unix:uid:1'],
  ttlS: 60,
  dnsNames: [],
  jwtAudiences: ['a'],
});
const svid = (entryId: string, spiffeId = `spiffe://td/${entryId}`) => ({
  entryId,
  spiffeId,
  keyPem: 'K',
  chainPem: 'C',
  serial: '01',
  notAfter: 10,
  renewAfter: 5,
  savedAt: 1,
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-wlstore-'));
  state = openAgentState(join(dir, 'data'));
});
afterEach(() => {
  state.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('WorkloadStore', () => {
  it('keeps entries, SVIDs, JWT-SVIDs and bundles across a reopen', () => {
    const w = state.workloads;
    w.replaceEntries([entry('web')], 1);
    w.saveSvid(svid('web'));
    w.saveJwt({
      entryId: 'web',
      audience: ['b', 'a'],
      spiffeId: 'spiffe://td/web',
      token: 't',
      expiresAt: 9,
      renewAfter: 4,
    });
    w.saveBundles({ trustDomain: 'td', rootsPem: 'R', jwks: '{"keys":[]}', updatedAt: 2 });
    state.close();
    state = openAgentState(join(dir, 'data'));
    expect(state.workloads.entries()).toEqual([entry('web')]);
    expect(state.workloads.svids()).toEqual([svid('web')]);
    expect(state.workloads.jwts()).toEqual([
      { entryId: 'web', audience: ['a', 'b'], spiffeId: 'spiffe://td/web', token: 't', expiresAt: 9, renewAfter: 4 },
    ]);
    expect(state.workloads.bundles()).toEqual({ trustDomain: 'td', rootsPem: 'R', jwks: '{"keys":[]}', updatedAt: 2 });
  });

  it('prunes expired JWT-SVIDs only', () => {
    const w = state.workloads;
    w.replaceEntries([entry('web')], 1);
    const jwt = { entryId: 'web', spiffeId: 'spiffe://td/web', token: 't', renewAfter: 4 };
    w.saveJwt({ ...jwt, audience: ['a'], expiresAt: 9 });
    w.saveJwt({ ...jwt, audience: ['a', 'b'], expiresAt: 20 });
    expect(w.pruneJwts(10)).toBe(1);
    expect(w.jwts().map((j) => j.audience)).toEqual([['a', 'b']]);
  });

  it('drops the SVID and JWT-SVIDs of a withdrawn entry, and of an entry whose SPIFFE ID changed', () => {
    const w = state.workloads;
    w.replaceEntries([entry('web'), entry('db'), entry('keep')], 1);
    for (const id of ['web', 'db', 'keep']) {
      w.saveSvid(svid(id));
      w.saveJwt({
        entryId: id,
        audience: ['a'],
        spiffeId: `spiffe://td/${id}`,
        token: 't',
        expiresAt: 9,
        renewAfter: 4,
      });
    }
    w.replaceEntries([entry('web', 'spiffe://td/renamed'), entry('keep')], 2);
    expect(w.entries().map((e) => e.id)).toEqual(['keep', 'web']);
    expect(w.svids().map((s) => s.entryId)).toEqual(['keep']);
    expect(w.jwts().map((j) => j.entryId)).toEqual(['keep']);
  });
});
