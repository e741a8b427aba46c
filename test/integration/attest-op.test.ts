/**
 * The `attest` operation (issue #16) over real HTTPS, with a join method whose boot-state verdict
 * the test controls (the token method plus the `reattest` capability: attestationPolicy + reattest),
 * so every path of server/ops/attest.ts is reached without a TPM (the swtpm e2e is
 * test/e2e/tpm-interval-attest.test.ts):
 *
 *   - an accepted attestation is recorded (facts.attestation, last_good_attestation_at), audited
 *     and answered with a signed record; the same request again gets the same answer (idempotent)
 *   - evidence made for another request (a replayed quote) or lifted into a peer's request is
 *     refused by the binding
 *   - a failed check is refused with its code, the PCR diff recorded, audited and counted
 *   - `lock`: the instance is locked in the same transaction, with a `lock` row by `system`
 *   - authentication: another instance's id in the payload, a stale timestamp, an older generation
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { attestOnce } from '../../src/agent/attest-client.js';
import { buildJoinRequest } from '../../src/agent/requests.js';
import type { Identity as AgentIdentity, OutboxEntry } from '../../src/agent/state/index.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { ResponseVerifier } from '../../src/protocol/verify-response.js';
import { ERROR_TABLE, SigilError, type ErrorCode } from '../../src/errors.js';
import { attestationBinding } from '../../src/attest/binding.js';
import { namedSigner, readLeaf } from '../../src/agent/named-signer.js';
import { createJoinMethods, SERVER_JOIN_METHODS } from '../../src/join/server-methods.js';
import type { ServerJoinMethodEntry } from '../../src/join/registry.js';
import type { AttestationPolicy, ReattestInput, ReattestVerdict } from '../../src/join/types.js';
import { fromPem } from '../../src/pki/pem.js';
import { attestBindingExtra } from '../../src/protocol/attest-messages.js';
import { signJws, type Jws } from '../../src/protocol/jws.js';
import { TYP_REQUEST } from '../../src/protocol/messages.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { silentLogger } from '../../src/util/log.js';
import { newRequestId } from '../../src/util/secret.js';
import { startIssuer, type Harness, type HttpResult, type Identity } from './harness.js';

const GOOD = 'a'.repeat(64);
const BAD = 'b'.repeat(64);

/** What the fake method answers; reset before each test. */
const fake: { policy: AttestationPolicy | undefined; seen: ReattestInput[] } = { policy: undefined, seen: [] };

/** The evidence the fake method reads: the binding it was made for, and the PCR 16 it "quotes". */
function verdict(input: ReattestInput): ReattestVerdict {
  fake.seen.push(input);
  const e = input.evidence as { binding?: string; pcr16?: string };
  // As a TPM quote's qualifying data: made for another request (or signer) does not verify.
  if (e.binding !== input.binding.toString('base64'))
    throw new SigilError('quote_nonce_mismatch', 'the quote was not made for this request');
  if (e.pcr16 !== GOOD)
    return {
      ok: false,
      profile: 'lab-v1',
      error: new SigilError('pcr_mismatch', 'PCR 16 differs from profile lab-v1'),
      diff: [{ bank: 'sha256', pcr: 16, expected: [GOOD], got: e.pcr16 ?? '' }],
      resetCount: 3,
      restartCount: 0,
      rebooted: false,
    };
  return { ok: true, profile: 'lab-v1', facts: { pcr16: e.pcr16 }, resetCount: 3, restartCount: 0, rebooted: false };
}

/** The token method with the `reattest` capability, answered by {@link verdict}. */
function attestingToken(): ServerJoinMethodEntry {
  const token = SERVER_JOIN_METHODS.find((e) => e.descriptor.name === 'token')!;
  return {
    ...token,
    descriptor: { ...token.descriptor, capabilities: { ...token.descriptor.capabilities, reattest: true } },
    create(deps) {
      const server = token.create(deps);
      server.attestationPolicy = async () => fake.policy;
      server.reattest = async (input) => verdict(input);
      return server;
    },
  };
}

let h: Harness;

beforeAll(async () => {
  h = await startIssuer();
  const entries = SERVER_JOIN_METHODS.map((e) => (e.descriptor.name === 'token' ? attestingToken() : e));
  (h.ctx as { methods: unknown }).methods = createJoinMethods({ log: silentLogger() }, entries);
});
afterAll(async () => h?.close());
beforeEach(() => {
  fake.policy = { rule: 'racks', onFailure: 'refuse', maxAgeMs: undefined };
  fake.seen = [];
});

/** An attest envelope signed by `id`, its evidence bound as the agent binds it (unless overridden). */
async function attestEnvelope(
  id: Identity,
  o: {
    pcr16?: string;
    requestId?: string;
    bindingFor?: { requestId: string; chainPem: string[] };
    over?: Record<string, unknown>;
  } = {},
): Promise<{ envelope: Jws; requestId: string }> {
  const requestId = o.requestId ?? newRequestId();
  const bound = o.bindingFor ?? { requestId, chainPem: id.chainPem };
  const binding = attestationBinding('attest', bound.requestId, attestBindingExtra(readLeaf(bound.chainPem[0]!).spki));
  const payload = {
    v: 1,
    op: 'attest',
    request_id: requestId,
    timestamp: h.ctx.now(),
    ...namedSigner(id.chainPem),
    evidence: { binding: binding.toString('base64'), pcr16: o.pcr16 ?? GOOD },
    ...o.over,
  };
  const x5c = id.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
  return { envelope: await signJws(id.signer, TYP_REQUEST, payload, x5c), requestId };
}

function refused(res: HttpResult, code: ErrorCode): void {
  expect({ status: res.status, code: res.json?.code }).toEqual({ status: ERROR_TABLE[code].status, code });
}

async function instanceOf(id: Identity) {
  return (await h.ctx.stores.instances.get(id.result.instance_id))!;
}

describe('attest over HTTPS', () => {
  it('records, audits and answers an accepted attestation; the same request again gets the same answer', async () => {
    const id = await h.join();
    const seq = await h.lastAuditSeq();
    const { envelope, requestId } = await attestEnvelope(id);
    const res = await h.post('attest', envelope);
    expect(res.status).toBe(200);
    const answer = verifyResponse(res.json, 'attest', requestId, h.rootPem);
    expect(answer.result).toMatchObject({
      instance_id: id.result.instance_id,
      ok: true,
      via: 'attest',
      profile: 'lab-v1',
    });

    const inst = await instanceOf(id);
    expect(inst.facts['attestation']).toMatchObject({ ok: true, via: 'attest', profile: 'lab-v1', reset_count: 3 });
    expect(inst.facts['last_good_attestation_at']).toBe(answer.result.at);
    expect(inst.facts['pcr16']).toBe(GOOD);
    const rows = await h.auditAfter(seq);
    expect(rows.map((r) => [r.action, r.outcome])).toEqual([['attest', 'ok']]);
    expect(rows[0]!.details['attestation']).toMatchObject({ ok: true, profile: 'lab-v1' });

    const again = await h.post('attest', envelope);
    expect(again.status).toBe(200);
    expect(again.json.payload).toBe(res.json.payload);
    expect(fake.seen).toHaveLength(1);
    expect(await h.auditAfter(seq)).toHaveLength(1);
  });

  it('refuses a failed check with its code and the PCR diff, records and audits it, and counts it', async () => {
    const id = await h.join();
    const seq = await h.lastAuditSeq();
    const before = h.ctx.metrics.attestationFailures.get({ check: 'pcr_mismatch', via: 'attest' });
    const { envelope } = await attestEnvelope(id, { pcr16: BAD });
    const res = await h.post('attest', envelope);
    refused(res, 'pcr_mismatch');
    expect(res.json.message).toContain(`sha256:16 expected ${GOOD} got ${BAD}`);

    const inst = await instanceOf(id);
    expect(inst.locked).toBe(false);
    expect(inst.facts['attestation']).toMatchObject({
      ok: false,
      via: 'attest',
      check: 'pcr_mismatch',
      diff: [{ bank: 'sha256', pcr: 16, expected: [GOOD], got: BAD }],
    });
    expect(inst.facts['last_good_attestation_at']).toBeUndefined();
    const rows = await h.auditAfter(seq);
    expect(rows.map((r) => [r.action, r.outcome, r.code])).toEqual([['attest', 'refused', 'pcr_mismatch']]);
    expect(rows[0]!.details['pcr_diff']).toEqual([{ bank: 'sha256', pcr: 16, expected: [GOOD], got: BAD }]);
    expect(h.ctx.metrics.attestationFailures.get({ check: 'pcr_mismatch', via: 'attest' })).toBe(before + 1);
    expect(await h.ctx.metrics.registry.scrape()).toMatch(
      /sigil_attestation_failures_total\{check="pcr_mismatch",via="attest"\} [1-9]/,
    );

    // Restored: the next attestation is accepted and the record says so.
    const ok = await h.post('attest', (await attestEnvelope(id)).envelope);
    expect(ok.status).toBe(200);
    expect((await instanceOf(id)).facts['attestation']).toMatchObject({ ok: true });
  });

  it('with on_attestation_failure: lock, locks the instance in the same transaction and audits the lock', async () => {
    fake.policy = { rule: 'racks', onFailure: 'lock', maxAgeMs: undefined };
    const id = await h.join();
    const seq = await h.lastAuditSeq();
    refused(await h.post('attest', (await attestEnvelope(id, { pcr16: BAD })).envelope), 'pcr_mismatch');
    const inst = await instanceOf(id);
    expect(inst.locked).toBe(true);
    expect(inst.lockReason).toContain('pcr_mismatch');
    const rows = await h.auditAfter(seq);
    expect(rows.map((r) => [r.action, r.outcome, r.actor])).toEqual([
      ['attest', 'refused', 'agent'],
      ['lock', 'ok', 'system'],
    ]);
    expect(rows[0]!.details['locked']).toBe(true);
    // Locked: the next attestation, even a good one, is refused before any evidence is judged.
    fake.seen = [];
    refused(await h.post('attest', (await attestEnvelope(id)).envelope), 'instance_locked');
    expect(fake.seen).toHaveLength(0);
  });

  it('refuses a quote made for an earlier request (replayed into a new one)', async () => {
    const id = await h.join();
    const first = await attestEnvelope(id);
    expect((await h.post('attest', first.envelope)).status).toBe(200);
    // The agent's next request carries the evidence of the first: its binding names the old request id.
    const replay = await attestEnvelope(id, { bindingFor: { requestId: first.requestId, chainPem: id.chainPem } });
    refused(await h.post('attest', replay.envelope), 'quote_nonce_mismatch');
  });

  it('refuses a peer bot attesting for another instance: naming it, or wrapping its evidence', async () => {
    const victim = await h.join();
    const peer = await h.join();
    // The peer signs a payload that names the victim: the signer check refuses it.
    const naming = await attestEnvelope(peer, { over: { ...namedSigner(victim.chainPem) } });
    refused(await h.post('attest', naming.envelope), 'signer_mismatch');
    // The peer front-runs the victim's request (seen on a broker): same request id, the victim's
    // quote, in its own signed envelope. The quote is bound to the victim's key, not the peer's.
    const victimReq = newRequestId();
    const lifted = await attestEnvelope(peer, {
      requestId: victimReq,
      bindingFor: { requestId: victimReq, chainPem: victim.chainPem },
    });
    refused(await h.post('attest', lifted.envelope), 'quote_nonce_mismatch');
    expect((await instanceOf(victim)).facts['attestation']).toBeUndefined();
    // Once the victim's request is answered, its request id is the victim's alone.
    const answered = await attestEnvelope(victim);
    expect((await h.post('attest', answered.envelope)).status).toBe(200);
    const reused = await attestEnvelope(peer, { requestId: answered.requestId });
    refused(await h.post('attest', reused.envelope), 'request_id_conflict');
  });

  it('refuses a stale timestamp, an instance without attestation, and an older generation (which locks)', async () => {
    const id = await h.join();
    refused(
      await h.post('attest', (await attestEnvelope(id, { over: { timestamp: h.ctx.now() - 3_600_000 } })).envelope),
      'stale_request',
    );
    fake.policy = undefined;
    refused(await h.post('attest', (await attestEnvelope(id)).envelope), 'bad_request');

    // Renew once (a rule without profiles: no attestation needed): the first identity is now an older generation.
    const { envelope } = await h.renewEnvelope(id);
    expect((await h.post('renew', envelope)).status).toBe(200);
    fake.policy = { rule: 'racks', onFailure: 'refuse', maxAgeMs: undefined };
    refused(await h.post('attest', (await attestEnvelope(id)).envelope), 'generation_mismatch');
    expect((await instanceOf(id)).locked).toBe(true);
    await runAdminOp(h.ctx.stores, 'unlock', { target: id.result.instance_id });
  });

  it('refuses a request signed before a renewal and delivered after it, without locking (delayed, not stolen)', async () => {
    // Held back on its way (a broker, a slow network) while the agent renewed: signed with the
    // generation just before the current one, before the current one was issued.
    const id = await h.join();
    const held = await attestEnvelope(id);
    fake.policy = undefined; // a rule without profiles: the renewal needs no attestation
    const { envelope } = await h.renewEnvelope(id);
    expect((await h.post('renew', envelope)).status).toBe(200);
    fake.policy = { rule: 'racks', onFailure: 'refuse', maxAgeMs: undefined };
    const res = await h.post('attest', held.envelope);
    refused(res, 'generation_mismatch');
    expect((res.json as { message: string }).message).toMatch(
      /signed with generation 1 before generation 2 was issued/,
    );
    expect((await instanceOf(id)).locked).toBe(false);
    // The same old key used after the renewal (dated now) is a stolen copy's: it locks.
    refused(await h.post('attest', (await attestEnvelope(id)).envelope), 'generation_mismatch');
    expect((await instanceOf(id)).locked).toBe(true);
    await runAdminOp(h.ctx.stores, 'unlock', { target: id.result.instance_id });
  });

  it('limits attestations per instance: 6 at once, then rate_limited with a retry time, the flood sampled in the audit', async () => {
    // An enrolled machine failing on purpose, as fast as it can (review of issue #16).
    const id = await h.join();
    const other = await h.join();
    fake.policy = { rule: 'racks', onFailure: 'refuse', maxAgeMs: undefined };
    const seq = await h.lastAuditSeq();
    const codes: Array<string | undefined> = [];
    for (let i = 0; i < 36; i++)
      codes.push((await h.post('attest', (await attestEnvelope(id, { pcr16: BAD })).envelope)).json?.code);
    expect(codes.slice(0, 6)).toEqual(Array(6).fill('pcr_mismatch'));
    expect(codes.slice(6)).toEqual(Array(30).fill('rate_limited'));
    const limited = await h.post('attest', (await attestEnvelope(id)).envelope);
    refused(limited, 'rate_limited');
    expect(limited.json.retryAfterMs).toBeGreaterThan(0);
    // Six judged failures were audited; the 31 rate-limited requests are sampled (20 rows per
    // source and code a minute, audit/refusal-sampler.ts), not a row each.
    const rows = await h.auditAfter(seq);
    expect(rows.filter((r) => r.code === 'pcr_mismatch' && r.instanceId === id.result.instance_id)).toHaveLength(6);
    expect(rows.filter((r) => r.code === 'rate_limited').length).toBeLessThanOrEqual(20);
    // Another instance is not held back.
    expect((await h.post('attest', (await attestEnvelope(other)).envelope)).status).toBe(200);
  });

  it('shows the last attestation in instances.show', async () => {
    const id = await h.join();
    refused(await h.post('attest', (await attestEnvelope(id, { pcr16: BAD })).envelope), 'pcr_mismatch');
    const shown = (await runAdminOp(h.ctx.stores, 'instances.show', { instance: id.result.instance_id })) as {
      attestation: unknown;
    };
    expect(shown.attestation).toMatchObject({
      result: 'refused',
      via: 'attest',
      profile: 'lab-v1',
      check: 'pcr_mismatch',
      pcr_diff: [{ bank: 'sha256', pcr: 16, expected: [GOOD], got: BAD }],
      reset_count: 3,
      restart_count: 0,
      rebooted: false,
      last_good_at: null,
    });
  });
});

describe("the agent's attestOnce against this issuer", () => {
  /** A token join as the agent makes it, keeping the key reference the agent state would hold. */
  async function agentIdentity() {
    const agent = new TokenJoinAgent(await h.token());
    const built = await buildJoinRequest({ method: 'token', evidence: (c) => agent.evidence(c), now: h.ctx.now() });
    const res = await h.post('join', built.envelope);
    const r = verifyResponse(res.json, 'join', built.entry.requestId, h.rootPem).result;
    return {
      instanceId: r.instance_id,
      chainPem: r.chain,
      keyRef: built.entry.pendingKeyRef!,
      notAfter: r.not_after,
    } as Identity_;
  }
  type Identity_ = Pick<AgentIdentity, 'instanceId' | 'chainPem' | 'keyRef' | 'notAfter'>;

  function deps(
    id: Identity_ | undefined,
    fresh: ((b: Buffer) => Promise<Record<string, unknown> | undefined>) | undefined,
    outbox: OutboxEntry[] = [],
  ) {
    const link = {
      verifier: new ResponseVerifier(),
      lastUsed: undefined,
      root: async () => h.rootPem,
      postRaw: async (_op: string, envelope: Jws) => {
        const res = await h.post('attest', envelope);
        if (res.status !== 200) throw SigilError.fromWire(res.json);
        return res.json;
      },
    };
    return {
      state: {
        getIdentity: () => id as AgentIdentity | undefined,
        getBundle: () => ({ rootsPem: [h.rootPem], updatedAt: 0 }),
        getOutbox: () => outbox,
      },
      link: link as unknown as Parameters<typeof attestOnce>[0]['link'],
      now: () => h.ctx.now(),
      freshEvidence: fresh,
    };
  }

  it('binds its evidence as the issuer expects: accepted, then a PCR change is refused with the check', async () => {
    const id = await agentIdentity();
    let pcr16 = GOOD;
    const fresh = async (binding: Buffer) => ({ binding: binding.toString('base64'), pcr16 });
    const ok = await attestOnce(deps(id, fresh));
    expect(ok).toMatchObject({ kind: 'ok', profile: 'lab-v1' });
    pcr16 = BAD;
    const no = await attestOnce(deps(id, fresh));
    expect(no).toMatchObject({ kind: 'refused', code: 'pcr_mismatch', retryable: false });
  });

  it('refuses an answer for another instance than its own, and tells the method only of an accepted one', async () => {
    const id = await agentIdentity();
    let accepted = 0;
    const fresh = async (binding: Buffer) => ({ binding: binding.toString('base64'), pcr16: GOOD });
    const mixed = { ...deps({ ...id, instanceId: 'not-this-one' }, fresh), accepted: () => accepted++ };
    expect(await attestOnce(mixed)).toMatchObject({ code: 'answer_mismatch' });
    expect(accepted).toBe(0);
    expect(await attestOnce({ ...deps(id, fresh), accepted: () => accepted++ })).toMatchObject({ kind: 'ok' });
    expect(accepted).toBe(1);
    expect(
      await attestOnce({
        ...deps(id, async (b) => ({ binding: b.toString('base64'), pcr16: BAD })),
        accepted: () => accepted++,
      }),
    ).toMatchObject({ kind: 'refused' });
    expect(accepted).toBe(1);
  });

  it('does not attest without an identity, without the capability, or when the method has no evidence', async () => {
    const id = await agentIdentity();
    expect(await attestOnce(deps(undefined, async () => ({})))).toMatchObject({
      kind: 'skipped',
      reason: 'not_joined',
    });
    expect(await attestOnce(deps(id, undefined))).toMatchObject({ kind: 'skipped', reason: 'no_evidence' });
    expect(await attestOnce(deps(id, async () => undefined))).toMatchObject({ kind: 'skipped', reason: 'no_evidence' });
    // A renewal in flight may have replaced the identity at the issuer already: wait for its answer.
    const pending: OutboxEntry = { requestId: newRequestId(), op: 'renew', body: '{}', createdAt: h.ctx.now() };
    expect(await attestOnce(deps(id, async () => ({ pcr16: GOOD }), [pending]))).toMatchObject({
      kind: 'skipped',
      reason: 'renewal_pending',
    });
    expect(fake.seen).toHaveLength(0);
  });
});
