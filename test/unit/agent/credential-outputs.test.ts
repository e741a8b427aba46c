/**
 * The agent's credential output scheduling and file handling (agent/credentials.ts), with a
 * fake issuer: each output on its own schedule, rewritten when a file goes missing or its
 * configuration changes, nothing requested while an identity request is pending, failures
 * backed off, symlinks refused, owner/group applied, reload hooks run.
 */
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CredentialClient } from '../../../src/agent/credential-client.js';
import { CredentialOutputs, credentialOutputsStatus } from '../../../src/agent/credentials.js';
import { TRUST_SEQUENCE_SETTING } from '../../../src/agent/credential-status.js';
import { agentStatus } from '../../../src/agent/status.js';
import { parseCredentialOutput } from '../../../src/agent/outputs/config.js';
import { runReload } from '../../../src/agent/outputs/reload.js';
import { openAgentState, type AgentState } from '../../../src/agent/state/index.js';
import { SigilError } from '../../../src/errors.js';
import { SoftwareSigner } from '../../../src/keystore/index.js';
import { toPem } from '../../../src/pki/pem.js';
import { createIntermediateCa, createRootCa } from '../../../src/pki/ca.js';
import { CertificateIssuer } from '../../../src/pki/issue.js';
import type { CredentialResult } from '../../../src/protocol/credential-messages.js';
import { b64u } from '../../../src/protocol/jws.js';
import { silentLogger } from '../../../src/util/log.js';

let dir: string;
let state: AgentState;
let clock: number;
let calls: Array<Record<string, unknown>>;
let fail: SigilError | undefined;

/** A real identity certificate: requests name their signer from it (agent/named-signer.ts). */
const ca = createIntermediateCa(createRootCa({ trustDomain: 'example.org' }), { trustDomain: 'example.org' });
function identityCertPem(signer: SoftwareSigner): string {
  const der = new CertificateIssuer({ caCertDer: ca.certDer, caKey: ca.key }).issueSvid({
    serial: Buffer.from('01', 'hex'),
    spkiDer: signer.publicKeySpki(),
    spiffeId: 'spiffe://example.org/bot/b/i-1',
    notBefore: new Date(Date.parse('2029-12-31T00:00:00Z')),
    notAfter: new Date(Date.parse('2030-01-02T00:00:00Z')),
  });
  return toPem('CERTIFICATE', der);
}
/** The n-th JWT the fake issuer hands out (its sub is this agent's SPIFFE ID). */
const tokenN = (n: number): string =>
  `aaa.${b64u.encode(JSON.stringify({ sub: 'spiffe://example.org/bot/b/i-1', n }))}.ccc`;
/** Set to answer with a credential issued to someone else. */
let answerSpiffeId: string | undefined;

const client: CredentialClient = {
  async request({ envelope }) {
    const payload = JSON.parse(b64u.decode(envelope.payload).toString('utf8')) as Record<string, unknown>;
    calls.push(payload);
    if (fail) throw fail;
    const ttl = (payload.ttl_s as number | undefined) ?? 300;
    const r: CredentialResult = {
      kind: 'jwt',
      serial: calls.length.toString(16),
      role: 'r',
      spiffe_id: answerSpiffeId ?? 'spiffe://example.org/bot/b/i-1',
      not_before: clock - 60_000,
      not_after: clock + ttl * 1000,
      ttl_s: ttl,
      requested_ttl_s: ttl,
      ttl_clamped: false,
      renew_after: clock + ttl * 500,
      token: tokenN(calls.length),
      audiences: payload.audiences as string[],
    };
    return r;
  },
  close() {},
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-cred-out-'));
  state = openAgentState(join(dir, 'data'));
  clock = Date.parse('2030-01-01T00:00:00Z');
  calls = [];
  fail = undefined;
  answerSpiffeId = undefined;
  const signer = SoftwareSigner.generate();
  state.saveIdentity({
    instanceId: 'i-1',
    spiffeId: 'spiffe://example.org/bot/b/i-1',
    bot: 'b',
    chainPem: [identityCertPem(signer)],
    keyRef: JSON.stringify({ storage: 'software', pkcs8Pem: signer.toPkcs8Pem() }),
    keyStorage: 'software',
    exportable: true,
    serial: '01',
    notBefore: clock - 60_000,
    notAfter: clock + 3600_000,
    generation: 1,
    joinMethod: 'token',
    issuedAt: clock,
    renewAfter: clock + 1800_000,
  });
});
afterEach(() => {
  state.close();
  rmSync(dir, { recursive: true, force: true });
});

const outputs = (entries: Array<Record<string, unknown>>): CredentialOutputs =>
  new CredentialOutputs(
    entries.map((e, i) => parseCredentialOutput(e, `outputs[${i}]`, (p) => (p.startsWith('/') ? p : join(dir, p)))),
    { state, log: silentLogger(), client, now: () => clock, rand: () => 0.5 },
  );

describe('answers bound to this agent (issue #11)', () => {
  it('a credential issued to another SPIFFE ID is refused (answer_mismatch) and nothing is written', async () => {
    answerSpiffeId = 'spiffe://example.org/bot/other/i-9';
    const o = outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'] }]);
    const [r] = await o.refresh();
    expect(r!.action === 'failed' && r!.error.code).toBe('answer_mismatch');
    expect(() => statSync(join(dir, 'jwt', 'token'))).toThrow();
    expect(credentialOutputsStatus(state)[0]!.last_error).toMatch(
      /^answer_mismatch: the jwt credential was issued to spiffe:\/\/example.org\/bot\/other\/i-9/,
    );
  });
  it("a JWT whose sub is not the answer's SPIFFE ID is refused", async () => {
    const o = outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'] }]);
    const wrongSub = {
      ...client,
      request: async (...a: Parameters<CredentialClient['request']>) => ({
        ...(await client.request(...a)),
        token: `aaa.${b64u.encode(JSON.stringify({ sub: 'spiffe://example.org/bot/other/i-9' }))}.ccc`,
      }),
    };
    const o2 = new CredentialOutputs(
      o.destinations.map((d) => d.config),
      { state, log: silentLogger(), client: wrongSub, now: () => clock, rand: () => 0.5 },
    );
    const [r] = await o2.refresh();
    expect(r!.action === 'failed' && r!.error.code).toBe('answer_mismatch');
    expect(() => statSync(join(dir, 'jwt', 'token'))).toThrow();
  });
  it('requests name the identity that signs them (instance id and serial)', async () => {
    await outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'] }]).refresh();
    expect(calls[0]).toMatchObject({ instance_id: 'i-1', serial: '01' });
  });
});

describe('scheduling', () => {
  it('issues when due, not again before half the lifetime, again after it', async () => {
    const o = outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'], ttl: '10m' }]);
    expect((await o.refresh()).map((x) => x.action)).toEqual(['issued']);
    expect(calls[0]).toMatchObject({ op: 'credential', kind: 'jwt', audiences: ['vault'], ttl_s: 600 });
    expect(readFileSync(join(dir, 'jwt', 'token'), 'utf8')).toBe(tokenN(1));
    clock += 4 * 60_000;
    expect((await o.refresh()).map((x) => x.action)).toEqual(['none']);
    expect(o.nextWake()).toBe(Date.parse('2030-01-01T00:05:00Z'));
    clock += 61_000;
    expect((await o.refresh()).map((x) => x.action)).toEqual(['issued']);
    expect(readFileSync(join(dir, 'jwt', 'token'), 'utf8')).toBe(tokenN(2));
  });

  it('rewrites when a file disappears or the configuration changes', async () => {
    await outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'] }]).refresh();
    unlinkSync(join(dir, 'jwt', 'token'));
    expect((await outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'] }]).refresh())[0]!.action).toBe('issued');
    expect((await outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'] }]).refresh())[0]!.action).toBe('none');
    expect((await outputs([{ type: 'jwt', path: 'jwt', audiences: ['aws'] }]).refresh())[0]!.action).toBe('issued');
    // The reload hook is not part of what the credential depends on.
    expect(
      (await outputs([{ type: 'jwt', path: 'jwt', audiences: ['aws'], reload: { command: 'true' } }]).refresh())[0]!
        .action,
    ).toBe('none');
  });

  it('requests nothing without a valid identity or while an identity request is pending', async () => {
    state.putOutbox({ requestId: 'r'.repeat(16), op: 'renew', body: '{}', createdAt: clock, pendingKeyRef: '{}' });
    expect(await outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'] }]).refresh()).toEqual([
      { type: 'jwt', path: join(dir, 'jwt'), action: 'skipped', reason: 'an identity request is pending' },
    ]);
    state.deleteOutbox('r'.repeat(16));
    clock += 2 * 3600_000;
    expect((await outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'] }]).refresh())[0]).toMatchObject({
      action: 'skipped',
      reason: 'no valid identity',
    });
    expect(calls).toHaveLength(0);
  });

  it('backs off after a refusal, reports it per output, and retries once the backoff passed', async () => {
    fail = new SigilError('role_denied', 'role r does not allow audience x (jwt_audiences)');
    const o = outputs([{ type: 'jwt', path: 'jwt', audiences: ['x'] }]);
    const [first] = await o.refresh();
    expect(first!.action === 'failed' && first.error.code).toBe('role_denied');
    expect(o.status()[0]).toMatchObject({
      failures: 1,
      last_error: 'role_denied: role r does not allow audience x (jwt_audiences)',
    });
    // `sigil agent status` reads the same from the state alone (no config needed).
    expect(credentialOutputsStatus(state)).toEqual([
      expect.objectContaining({
        type: 'jwt',
        path: join(dir, 'jwt'),
        serial: null,
        consecutive_failures: 1,
        last_error: 'role_denied: role r does not allow audience x (jwt_audiences)',
      }),
    ]);
    expect((await o.refresh())[0]!.action).toBe('none');
    fail = undefined;
    clock = o.nextWake()!;
    expect((await o.refresh())[0]!.action).toBe('issued');
    expect(o.status()[0]).toMatchObject({ failures: 0, last_error: null });
    expect(agentStatus(state, clock).credential_outputs).toEqual([
      expect.objectContaining({ type: 'jwt', consecutive_failures: 0, last_error: null, serial: expect.any(String) }),
    ]);
  });
});

describe('an issuer behind a key rotation the agent knows of (trust_lagging)', () => {
  /** The fake issuer answers with this trust_sequence (undefined: none, an issuer that never rotated). */
  const answering = (seq: number | undefined): CredentialClient => ({
    ...client,
    request: async (...a: Parameters<CredentialClient['request']>) => ({
      ...(await client.request(...a)),
      ...(seq !== undefined ? { trust_sequence: seq } : {}),
    }),
  });
  const withClient = (c: CredentialClient, o: CredentialOutputs): CredentialOutputs =>
    new CredentialOutputs(
      o.destinations.map((d) => d.config),
      { state, log: silentLogger(), client: c, now: () => clock, rand: () => 0.5 },
    );

  it('with a good credential on disk: the answer is not written, the output backs off and stays due', async () => {
    const base = outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'], ttl: '1h' }]);
    state.setSetting(TRUST_SEQUENCE_SETTING, '1700000100');
    expect((await withClient(answering(1700000100), base).refresh())[0]!.action).toBe('issued');
    state.setSetting(TRUST_SEQUENCE_SETTING, '1700000200'); // a rotation the trust check saw
    const [r] = await withClient(answering(1700000100), base).refresh();
    expect(r!.action === 'failed' && r!.error.code).toBe('trust_lagging');
    expect(readFileSync(join(dir, 'jwt', 'token'), 'utf8')).toBe(tokenN(1));
    expect(base.nextWake()).toBeLessThanOrEqual(clock + 1000);
    // An issuer that never rotated (no sequence at all) is behind too.
    clock += 2000;
    expect((await withClient(answering(undefined), base).refresh())[0]).toMatchObject({ action: 'failed' });
    clock += 5000;
    expect((await withClient(answering(1700000200), base).refresh())[0]!.action).toBe('issued');
    expect(readFileSync(join(dir, 'jwt', 'token'), 'utf8')).toBe(tokenN(4));
    expect(credentialOutputsStatus(state)[0]).toMatchObject({ consecutive_failures: 0, last_error: null });
  });

  it('with none (or one about to expire): the answer is written, and asked for again after a backoff', async () => {
    const base = outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'], ttl: '1h' }]);
    state.setSetting(TRUST_SEQUENCE_SETTING, '1700000200');
    const [r] = await withClient(answering(1700000100), base).refresh();
    expect(r!.action).toBe('issued');
    expect(readFileSync(join(dir, 'jwt', 'token'), 'utf8')).toBe(tokenN(1));
    expect(credentialOutputsStatus(state)[0]).toMatchObject({
      consecutive_failures: 1,
      last_error: expect.stringMatching(/^trust_lagging: .*trust sequence 1700000100, this agent knows 1700000200/),
    });
    const wake = base.nextWake()!;
    expect(wake).toBeGreaterThan(clock);
    expect(wake).toBeLessThanOrEqual(clock + 1000);
    expect((await base.refresh())[0]!.action).toBe('none'); // backing off
    clock = wake;
    expect((await withClient(answering(1700000200), base).refresh())[0]!.action).toBe('issued');
    expect(credentialOutputsStatus(state)[0]).toMatchObject({ consecutive_failures: 0, last_error: null });
  });
});

describe('trust_lagging, written anyway', () => {
  const lagging = (seq: number): CredentialClient => ({
    ...client,
    request: async (...a: Parameters<CredentialClient['request']>) => ({
      ...(await client.request(...a)),
      trust_sequence: seq,
    }),
  });
  const jwtOutput = (ttl: string, c: CredentialClient): CredentialOutputs =>
    new CredentialOutputs(
      outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'], ttl }]).destinations.map((d) => d.config),
      { state, log: silentLogger(), client: c, now: () => clock, rand: () => 0.5 },
    );
  it.each([
    { why: 'whose files are missing (tmpfs after a reboot)', ttl: '1h', removeFiles: true },
    { why: 'that lives less than 10 minutes more', ttl: '5m', removeFiles: false },
  ])('a credential $why is replaced by the lagging answer (better than none)', async ({ ttl, removeFiles }) => {
    state.setSetting(TRUST_SEQUENCE_SETTING, '1700000100');
    expect((await jwtOutput(ttl, lagging(1700000100)).refresh())[0]!.action).toBe('issued');
    state.setSetting(TRUST_SEQUENCE_SETTING, '1700000200');
    if (removeFiles) unlinkSync(join(dir, 'jwt', 'token'));
    expect((await jwtOutput(ttl, lagging(1700000100)).refresh())[0]!.action).toBe('issued');
    expect(readFileSync(join(dir, 'jwt', 'token'), 'utf8')).toBe(tokenN(2));
    expect(credentialOutputsStatus(state)[0]!.last_error).toMatch(/^trust_lagging: /);
  });
});

describe('files', () => {
  it('refuses a symlinked output directory or file', async () => {
    mkdirSync(join(dir, 'elsewhere'));
    symlinkSync(join(dir, 'elsewhere'), join(dir, 'linked'));
    const [a] = await outputs([{ type: 'jwt', path: 'linked', audiences: ['vault'] }]).refresh();
    expect(a!.action === 'failed' && a.error.code).toBe('unsafe_path');
    mkdirSync(join(dir, 'real'));
    writeFileSync(join(dir, 'secret'), 'do not overwrite');
    symlinkSync(join(dir, 'secret'), join(dir, 'real', 'token'));
    const [b] = await outputs([{ type: 'jwt', path: 'real', audiences: ['vault'] }]).refresh();
    expect(b!.action === 'failed' && b.error.code).toBe('unsafe_path');
    expect(readFileSync(join(dir, 'secret'), 'utf8')).toBe('do not overwrite');
    expect(lstatSync(join(dir, 'real', 'token')).isSymbolicLink()).toBe(true);
  });

  it('applies owner and group, and the key mode', async () => {
    await outputs([{ type: 'jwt', path: 'jwt', audiences: ['vault'], uid: 65534, gid: 65534 }]).refresh();
    const st = statSync(join(dir, 'jwt', 'token'));
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([65534, 65534, 0o600]);
  });

  it('runs the reload hook after a rotation and reports a failing hook without undoing the rotation', async () => {
    const [o] = await outputs([
      { type: 'jwt', path: 'jwt', audiences: ['vault'], reload: { command: ['sh', '-c', 'echo broken >&2; exit 3'] } },
    ]).refresh();
    expect(o).toMatchObject({ action: 'issued', reloadError: 'reload command failed (exit 3): broken' });
    expect(readFileSync(join(dir, 'jwt', 'token'), 'utf8')).toBe(tokenN(1));
  });
});

describe('reload hooks', () => {
  it('signals the pid in a pid file, and says why when it cannot', async () => {
    writeFileSync(join(dir, 'pid'), `${process.pid}\n`);
    let got = false;
    process.once('SIGUSR2', () => (got = true));
    expect(await runReload({ signal: 'USR2', pid_file: join(dir, 'pid') })).toBeUndefined();
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toBe(true);
    expect(await runReload({ signal: 'HUP', pid_file: join(dir, 'missing') })).toMatch(/cannot read pid file/);
    writeFileSync(join(dir, 'pid'), 'garbage');
    expect(await runReload({ signal: 'HUP', pid_file: join(dir, 'pid') })).toMatch(/does not hold a process id/);
  });
});

describe('output config', () => {
  const parse = (e: Record<string, unknown>) => parseCredentialOutput(e, 'outputs[0]', (p) => p);
  it('accepts the contract from the issue and refuses what cannot work', () => {
    for (const e of [
      { type: 'ssh_user', path: '/run/sigil/ssh', logins: ['ops'] },
      { type: 'ssh_host', path: '/run/sigil/host', principals: ['gw1.example.org'] },
      { type: 'database', path: '/run/sigil/db', db_user: 'app' },
      { type: 'kubernetes', path: '/run/sigil/kube', api_server: 'https://k8s.example:6443' },
      { type: 'jwt', path: '/run/sigil/jwt', audiences: ['vault'] },
    ])
      expect(parse(e).type).toBe(e.type);
    expect(() => parse({ type: 'jwt', path: '/x' })).toThrow(/audiences/);
    expect(() => parse({ type: 'kubernetes', path: '/x', api_server: 'http://k8s:80' })).toThrow(/https/);
    expect(() => parse({ type: 'database', path: '/x', tcti: 'device:/dev/tpmrm0' })).toThrow(
      /tcti applies only with key: tpm/,
    );
    expect(() => parse({ type: 'ssh_user', path: '/x', logins: ['a b'] })).toThrow();
    expect(() => parse({ type: 'ssh_user', path: '/x', lgins: ['a'] })).toThrow(/lgins/);
  });
});
