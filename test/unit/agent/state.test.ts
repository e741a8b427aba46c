import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { AGENT_SCHEMA_VERSION, HISTORY_KEEP, openAgentState } from '../../../src/agent/state/index.js';
import { openAgentDb } from '../../../src/agent/state/db.js';
import { HistoryStore } from '../../../src/agent/state/history.js';
import type { AgentState } from '../../../src/agent/state/index.js';
import { fakeIdentity } from '../../helpers/agent-identity.js';

let dataDir: string;
let state: AgentState | undefined;

beforeEach(() => {
  dataDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-state-')), 'data');
});
afterEach(() => {
  state?.close();
  state = undefined;
  fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
});

function open(): AgentState {
  state?.close();
  state = openAgentState(dataDir);
  return state;
}

const identity = fakeIdentity;

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof SigilError) return err.code;
    throw err;
  }
  throw new Error('expected a SigilError');
}

describe('agent state: database', () => {
  it('creates agent.db with mode 0600 in a 0700 data dir, WAL files too', () => {
    const s = open();
    s.saveIdentity(identity());
    const db = path.join(dataDir, 'agent.db');
    expect(fs.statSync(db).mode & 0o777).toBe(0o600);
    expect(fs.statSync(dataDir).mode & 0o777).toBe(0o700);
    // The connection is still open, so the WAL exists; SQLite copies the main file's mode.
    expect(fs.statSync(`${db}-wal`).mode & 0o777).toBe(0o600);
  });

  it('tightens an existing database that was left world-readable', () => {
    open().close();
    state = undefined;
    fs.chmodSync(path.join(dataDir, 'agent.db'), 0o644);
    open();
    expect(fs.statSync(path.join(dataDir, 'agent.db')).mode & 0o777).toBe(0o600);
  });

  it('uses WAL, synchronous=FULL and a 5 s busy timeout, and records the schema version', () => {
    const db = openAgentDb(dataDir);
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(2); // FULL
      expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
      expect(db.pragma('user_version', { simple: true })).toBe(AGENT_SCHEMA_VERSION);
    } finally {
      db.close();
    }
  });

  it('refuses a database symlink', () => {
    fs.mkdirSync(dataDir, { recursive: true });
    const elsewhere = path.join(path.dirname(dataDir), 'elsewhere.db');
    fs.writeFileSync(elsewhere, '');
    fs.symlinkSync(elsewhere, path.join(dataDir, 'agent.db'));
    expect(codeOf(() => openAgentState(dataDir))).toBe('unsafe_path');
  });

  it('refuses a file that is not a database with a coded error', () => {
    fs.mkdirSync(dataDir, { recursive: true });
    fs.writeFileSync(
      path.join(dataDir, 'agent.db'),
      'this is not sqlite, just some text that is long enough to have a header'.repeat(10),
    );
    expect(codeOf(() => openAgentState(dataDir))).toBe('config_invalid');
  });

  it('refuses a database from a newer schema', () => {
    open().close();
    state = undefined;
    const db = new Database(path.join(dataDir, 'agent.db'));
    db.pragma(`user_version = ${AGENT_SCHEMA_VERSION + 1}`);
    db.close();
    expect(codeOf(() => openAgentState(dataDir))).toBe('config_invalid');
  });
});

describe('agent state: identity', () => {
  it('round-trips an identity and survives a restart', () => {
    const id = identity();
    open().saveIdentity(id);
    expect(state!.getIdentity()).toEqual(id);
    const again = open();
    expect(again.getIdentity()).toEqual(id);
  });

  it('keeps the key facts as the agent knows them apart from what the issuer recorded', () => {
    const s = open();
    const keyRef = JSON.stringify({
      storage: 'pkcs11',
      module: '/m.so',
      tokenLabel: 't',
      keyLabel: 'sigil-1',
      keyId: 'ab',
      pinFile: '/pin',
    });
    s.saveIdentity(
      identity({
        keyRef,
        keyStorage: 'pkcs11',
        exportable: false,
        issuerKeyStorage: 'software',
        issuerExportable: true,
      }),
    );
    expect(open().getIdentity()).toMatchObject({
      keyStorage: 'pkcs11',
      exportable: false,
      issuerKeyStorage: 'software',
      issuerExportable: true,
    });
    // Without issuer facts the issuer is taken to agree.
    const { issuerKeyStorage: _s, issuerExportable: _e, ...plain } = identity({ keyStorage: 'tpm', exportable: false });
    state!.saveIdentity(plain);
    expect(state!.getIdentity()).toMatchObject({
      keyStorage: 'tpm',
      exportable: false,
      issuerKeyStorage: 'tpm',
      issuerExportable: false,
    });
  });

  it('migration 3: a stored identity keeps the issuer record as issuer_*, and takes its own facts from the key reference', () => {
    open().close();
    state = undefined;
    // Back to schema 2, with a TPM key the issuer recorded as software (a renewal without a proof).
    const db = new Database(path.join(dataDir, 'agent.db'));
    db.exec('ALTER TABLE identity DROP COLUMN issuer_key_storage; ALTER TABLE identity DROP COLUMN issuer_exportable');
    db.exec(
      'ALTER TABLE identity DROP COLUMN transport_key_pem; ALTER TABLE identity DROP COLUMN transport_chain_pem; ALTER TABLE identity DROP COLUMN transport_not_after; ALTER TABLE outbox DROP COLUMN transport_key_pem',
    );
    db.prepare(
      `INSERT INTO identity (slot, instance_id, spiffe_id, bot, chain_pem, key_ref, key_storage, exportable, serial, not_before, not_after, generation, join_method, issued_at, renew_after, saved_at)
       VALUES ('current', 'i', 'spiffe://example.org/bot/edge', 'edge', '["C"]', ?, 'software', 1, '02', 1, 2, 2, 'tpm', 1, 2, 1)`,
    ).run(
      JSON.stringify({
        storage: 'tpm',
        tcti: 'device:/dev/tpmrm0',
        parent: 0x81000001,
        publicB64: 'AA',
        privateB64: 'AA',
      }),
    );
    db.pragma('user_version = 2');
    db.close();
    expect(open().getIdentity()).toMatchObject({
      serial: '02',
      keyStorage: 'tpm',
      exportable: false,
      issuerKeyStorage: 'software',
      issuerExportable: true,
    });
  });

  it('keeps an MQTT transport certificate with the identity; none reads back as absent', () => {
    const transport = {
      keyPem: '-----BEGIN PRIVATE KEY-----\nT\n-----END PRIVATE KEY-----\n',
      chainPem: ['TLEAF', 'INT'],
      notAfter: 1_700_003_600_000,
    };
    const keyRef = JSON.stringify({
      storage: 'tpm',
      tcti: 'swtpm:port=1',
      parent: 0x81000001,
      publicB64: 'AA',
      privateB64: 'AA',
    });
    const id = identity({ keyRef, keyStorage: 'tpm', exportable: false, transport });
    open().saveIdentity(id);
    expect(open().getIdentity()).toEqual(id);
    state!.saveIdentity(identity({ serial: 'plain' }));
    expect(state!.getIdentity()).not.toHaveProperty('transport');
    expect(state!.getPreviousIdentity()?.transport).toEqual(transport);
    expect(() => state!.saveIdentity(identity({ transport: { ...transport, chainPem: [] } }))).toThrow(TypeError);
    expect(() => state!.saveIdentity(identity({ transport: { ...transport, keyPem: 'not a key' } }))).toThrow(
      TypeError,
    );
  });

  it('migration 4: identities and requests from before it have no transport certificate', () => {
    open().close();
    state = undefined;
    const db = new Database(path.join(dataDir, 'agent.db'));
    db.exec(
      'ALTER TABLE identity DROP COLUMN transport_key_pem; ALTER TABLE identity DROP COLUMN transport_chain_pem; ALTER TABLE identity DROP COLUMN transport_not_after; ALTER TABLE outbox DROP COLUMN transport_key_pem',
    );
    db.prepare(
      `INSERT INTO identity (slot, instance_id, spiffe_id, bot, chain_pem, key_ref, key_storage, exportable, issuer_key_storage, issuer_exportable, serial, not_before, not_after, generation, join_method, issued_at, renew_after, saved_at)
       VALUES ('current', 'i', 'spiffe://example.org/bot/edge', 'edge', '["C"]', '{"storage":"software","pkcs8Pem":"K"}', 'software', 1, 'software', 1, '03', 1, 2, 3, 'token', 1, 2, 1)`,
    ).run();
    db.prepare(
      "INSERT INTO outbox (request_id, op, body, created_at, pending_key_ref) VALUES ('r1', 'renew', '{}', 5, 'K')",
    ).run();
    db.pragma('user_version = 3');
    db.close();
    const s = open();
    expect(s.getIdentity()).toMatchObject({ serial: '03' });
    expect(s.getIdentity()).not.toHaveProperty('transport');
    expect(s.getOutbox()).toEqual([{ requestId: 'r1', op: 'renew', body: '{}', createdAt: 5, pendingKeyRef: 'K' }]);
  });

  it('is empty on a fresh database', () => {
    expect(open().getIdentity()).toBeUndefined();
    expect(state!.getPreviousIdentity()).toBeUndefined();
  });

  it('keeps the replaced identity as previous', () => {
    const s = open();
    s.saveIdentity(identity({ serial: 'a1', generation: 1 }));
    s.saveIdentity(identity({ serial: 'a2', generation: 2 }));
    s.saveIdentity(identity({ serial: 'a3', generation: 3, exportable: false, keyStorage: 'tpm' }));
    expect(s.getIdentity()?.serial).toBe('a3');
    expect(s.getIdentity()?.exportable).toBe(false);
    expect(s.getPreviousIdentity()?.serial).toBe('a2');
  });

  it('refuses an invalid identity and keeps the current one', () => {
    const s = open();
    s.saveIdentity(identity({ serial: 'good' }));
    expect(() => s.saveIdentity(identity({ chainPem: [] }))).toThrow(TypeError);
    expect(() => s.saveIdentity(identity({ notAfter: 1 }))).toThrow(TypeError);
    expect(s.getIdentity()?.serial).toBe('good');
    expect(s.getPreviousIdentity()).toBeUndefined();
  });
});

describe('agent state: bundle and pin', () => {
  it('saves and reloads the trust bundle', () => {
    const s = open();
    expect(s.getBundle()).toBeUndefined();
    s.saveBundle({ rootsPem: ['R1', 'R2'], updatedAt: 5 });
    s.saveBundle({ rootsPem: ['R2', 'R3'], updatedAt: 6 });
    expect(open().getBundle()).toEqual({ rootsPem: ['R2', 'R3'], updatedAt: 6 });
  });

  it('pins the issuer on first contact and refuses a different CA later', () => {
    const pin = `sha256:${'ab'.repeat(32)}`;
    const s = open();
    s.pinIssuer(pin, 10);
    s.pinIssuer(pin, 20); // same pin: no-op
    expect(s.getIssuerPin()).toEqual({ pin, pinnedAt: 10 });
    expect(codeOf(() => s.pinIssuer(`sha256:${'cd'.repeat(32)}`, 30))).toBe('pin_mismatch');
    expect(codeOf(() => s.pinIssuer('md5:zz', 30))).toBe('config_invalid');
    expect(codeOf(() => s.pinIssuer(`sha256:${'AB'.repeat(32)}`, 30))).toBe('config_invalid');
    s.replaceIssuerPin(`sha256:${'cd'.repeat(32)}`, 40);
    expect(open().getIssuerPin()).toEqual({ pin: `sha256:${'cd'.repeat(32)}`, pinnedAt: 40 });
  });
});

describe('agent state: outbox', () => {
  it('keeps a request (and its pending key) across a restart', () => {
    open().putOutbox({
      requestId: 'r1',
      op: 'renew',
      body: '{"x":1}',
      createdAt: 100,
      pendingKeyRef: '{"storage":"software","pkcs8Pem":"K"}',
    });
    state!.putOutbox({ requestId: 'j1', op: 'join', body: '{}', createdAt: 50 });
    const s = open();
    expect(s.getOutbox('renew')).toEqual([
      {
        requestId: 'r1',
        op: 'renew',
        body: '{"x":1}',
        createdAt: 100,
        pendingKeyRef: '{"storage":"software","pkcs8Pem":"K"}',
      },
    ]);
    expect(s.getOutbox().map((e) => e.requestId)).toEqual(['j1', 'r1']);
    expect(s.deleteOutbox('j1')).toBe(true);
    expect(s.deleteOutbox('j1')).toBe(false);
  });

  it('keeps the transport key of a request across a restart; another key under the same id is a conflict', () => {
    const e = { requestId: 'r1', op: 'renew', body: '{}', createdAt: 1, pendingKeyRef: 'K', transportKeyPem: 'TK' };
    open().putOutbox(e);
    expect(open().getOutbox()).toEqual([e]);
    state!.putOutbox({ ...e });
    expect(codeOf(() => state!.putOutbox({ ...e, transportKeyPem: 'OTHER' }))).toBe('request_id_conflict');
    expect(
      codeOf(() => state!.putOutbox({ requestId: 'r1', op: 'renew', body: '{}', createdAt: 1, pendingKeyRef: 'K' })),
    ).toBe('request_id_conflict');
  });

  it('accepts an identical re-put and refuses a different request under the same id', () => {
    const s = open();
    const e = { requestId: 'r1', op: 'renew', body: 'A', createdAt: 1 };
    s.putOutbox(e);
    s.putOutbox({ ...e });
    expect(codeOf(() => s.putOutbox({ ...e, body: 'B' }))).toBe('request_id_conflict');
    expect(s.getOutbox()).toEqual([e]);
  });

  it('completeRenewal saves the identity, deletes the request and records history together', () => {
    const s = open();
    s.saveIdentity(identity({ serial: 'old', generation: 1 }));
    s.putOutbox({ requestId: 'r1', op: 'renew', body: '{}', createdAt: 1 });
    s.completeRenewal('r1', identity({ serial: 'new', generation: 2 }), 1234);
    expect(s.getIdentity()?.serial).toBe('new');
    expect(s.getPreviousIdentity()?.serial).toBe('old');
    expect(s.getOutbox()).toEqual([]);
    expect(s.lastSuccess()).toMatchObject({ at: 1234, op: 'renew', outcome: 'ok', serial: 'new' });
  });

  it('completeRenewal rolls everything back when saving the identity throws', () => {
    const s = open();
    s.saveIdentity(identity({ serial: 'old' }));
    s.putOutbox({ requestId: 'r1', op: 'renew', body: '{}', createdAt: 1 });
    const spy = vi.spyOn(s, 'saveIdentity').mockImplementation(() => {
      throw new Error('disk on fire');
    });
    expect(() => s.completeRenewal('r1', identity({ serial: 'new' }))).toThrow('disk on fire');
    expect(spy).toHaveBeenCalledOnce();
    spy.mockRestore();
    expect(s.getOutbox().map((e) => e.requestId)).toEqual(['r1']);
    expect(s.getIdentity()?.serial).toBe('old');
    expect(s.listHistory(10)).toEqual([]);
    // Also after a restart: nothing half-committed reached the file.
    const again = open();
    expect(again.getOutbox().map((e) => e.requestId)).toEqual(['r1']);
    expect(again.getIdentity()?.serial).toBe('old');
  });

  it('completeRenewal rolls back an invalid identity too', () => {
    const s = open();
    s.putOutbox({ requestId: 'r1', op: 'renew', body: '{}', createdAt: 1 });
    expect(() => s.completeRenewal('r1', identity({ chainPem: [] }))).toThrow(TypeError);
    expect(s.getOutbox()).toHaveLength(1);
    expect(s.getIdentity()).toBeUndefined();
  });

  it('completeRenewal refuses an unknown request id and changes nothing', () => {
    const s = open();
    expect(codeOf(() => s.completeRenewal('nope', identity()))).toBe('conflict');
    expect(s.getIdentity()).toBeUndefined();
    expect(s.listHistory(10)).toEqual([]);
  });
});

describe('agent state: history and status', () => {
  it('lists newest first (ties broken by insertion order) and finds the last success', () => {
    const s = open();
    s.appendHistory({ at: 10, op: 'join', outcome: 'ok', serial: 's1' });
    s.appendHistory({ at: 20, op: 'renew', outcome: 'ok', serial: 's2' });
    s.appendHistory({ at: 30, op: 'renew', outcome: 'error', code: 'issuer_unreachable', message: 'timeout' });
    s.appendHistory({ at: 30, op: 'renew', outcome: 'error', code: 'rate_limited' });
    expect(s.listHistory(10).map((h) => h.code ?? h.serial)).toEqual([
      'rate_limited',
      'issuer_unreachable',
      's2',
      's1',
    ]);
    expect(s.listHistory(2)).toHaveLength(2);
    expect(s.lastSuccess()).toMatchObject({ at: 20, serial: 's2', outcome: 'ok' });
    expect(open().listHistory(1)[0]).toMatchObject({ code: 'rate_limited', outcome: 'error' });
  });

  it('keeps only the newest HISTORY_KEEP rows', () => {
    // One outer transaction: 1,000 separate synchronous=FULL commits would only test the disk.
    const db = openAgentDb(dataDir);
    const h = new HistoryStore(db);
    try {
      db.transaction(() => {
        for (let i = 0; i < HISTORY_KEEP + 5; i++)
          h.append({ at: i, op: 'renew', outcome: 'error', code: 'issuer_unreachable' });
      })();
    } finally {
      db.close();
    }
    const all = open().listHistory(HISTORY_KEEP * 2);
    expect(all).toHaveLength(HISTORY_KEEP);
    expect(all[0]!.at).toBe(HISTORY_KEEP + 4);
    expect(all[all.length - 1]!.at).toBe(5);
  });

  it('status starts zeroed, merges updates, and survives a restart', () => {
    const s = open();
    expect(s.getStatus()).toEqual({
      consecutiveFailures: 0,
      lastError: null,
      lastAttemptAt: null,
      nextAttemptAt: null,
      transport: null,
    });
    s.setStatus({
      consecutiveFailures: 2,
      lastError: 'issuer_unreachable: timeout',
      lastAttemptAt: 100,
      nextAttemptAt: 200,
      transport: 'https',
    });
    s.setStatus({ consecutiveFailures: 3, transport: 'mqtt' });
    expect(open().getStatus()).toEqual({
      consecutiveFailures: 3,
      lastError: 'issuer_unreachable: timeout',
      lastAttemptAt: 100,
      nextAttemptAt: 200,
      transport: 'mqtt',
    });
    state!.setStatus({ consecutiveFailures: 0, lastError: null });
    expect(state!.getStatus().lastError).toBeNull();
    expect(() => state!.setStatus({ consecutiveFailures: -1 })).toThrow(TypeError);
  });

  it('close is idempotent', () => {
    const s = open();
    s.close();
    s.close();
  });
});
