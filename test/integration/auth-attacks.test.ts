/**
 * Attacks on request authentication (server/ops/authenticate.ts), each through the real HTTPS
 * handler of an in-process issuer, each asserting the refusal's code, the check it names, one
 * audit row and no other change (harness expectRefused). Issue #20: every check here could be
 * deleted from authenticate.ts with no test failing; docs/testing.md lists the hand deletion that
 * each test kills.
 *
 * Who attacks:
 * - a holder of any certificate this issuer signed that is not a bot identity: the MQTT
 *   transport certificate, a workload SVID handed to a local process, the issuer's own TLS
 *   certificate — each tries to renew as a bot;
 * - a bot that captured another instance's request payload, or that names another serial, and
 *   re-signs it with its own identity (checkNamedSigner);
 * - someone who dresses up an x5c chain: a foreign intermediate after a genuine leaf;
 * - a leaf of ours whose SPIFFE ID names another bot than its instance's, and a serial recorded
 *   as another kind or for another instance. The issuer never signs such a leaf today; these are
 *   the checks that still hold if another path of the issuer (or a database writer) ever makes one;
 * - a thief with a superseded generation's key, through the workload op (not only renew);
 * - requests at the exact limits of the leaf's notAfter and of the timestamp skew, and malformed
 *   envelopes (null body or header, a non-string x5c entry, garbage after the leaf).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { buildJoinRequest, buildRenewRequest } from '../../src/agent/requests.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { loadSigner, parseKeyRef, SoftwareSigner, type Signer } from '../../src/keystore/index.js';
import { createIntermediateCa, createRootCa } from '../../src/pki/ca.js';
import { buildCsr } from '../../src/pki/csr.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { randomSerial, serialHex } from '../../src/pki/serial.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { checkPresentedChain, judgeCurrentIdentity } from '../../src/server/ops/authenticate.js';
import { spkiHash } from '../../src/server/ops/issue.js';
import type { CertificateRecord } from '../../src/server/store/types.js';
import { newRequestId } from '../../src/util/secret.js';
import { expectRefused, sign, startIssuer, type Harness, type Identity } from './harness.js';
import { applyWorkloadPolicy, workloadEnvelope } from './workload-issuer-rig.js';

let h: Harness;
beforeAll(async () => {
  h = await startIssuer();
  // A second bot (`db`) and the workload entry `web` for gw's instances.
  await applyWorkloadPolicy(h);
});
afterAll(async () => {
  await h?.close();
});

const csrPem = async (s: Signer = SoftwareSigner.generate()): Promise<string> =>
  toPem('CERTIFICATE REQUEST', await buildCsr(s));
const ders = (chainPem: readonly string[]): Buffer[] => chainPem.map((c) => fromPem(c, 'CERTIFICATE'));

/** A renew payload that names `named` as its signer (what the agent puts there: namedSigner). */
async function renewPayload(named: { instance_id: string; serial: string }): Promise<Record<string, unknown>> {
  return {
    v: 1,
    op: 'renew',
    request_id: newRequestId(),
    timestamp: h.ctx.now(),
    instance_id: named.instance_id,
    serial: named.serial,
    csr: await csrPem(),
    key_storage: 'software',
  };
}

const named = (id: Identity): { instance_id: string; serial: string } => ({
  instance_id: id.result.instance_id,
  serial: id.result.serial,
});

/** A leaf signed by this issuer's intermediate CA with any SPIFFE ID (the issuer's own signing engine). */
function ourLeaf(spiffeId: string): { signer: Signer; der: Buffer; serial: string } {
  const signer = SoftwareSigner.generate();
  const serial = randomSerial();
  const now = h.ctx.now();
  const der = h.ctx.engine.issueSvid({
    serial,
    spkiDer: signer.publicKeySpki(),
    spiffeId,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    subject: [],
  });
  return { signer, der, serial: serialHex(serial) };
}

/** Its certificate row, as if the issuer had recorded it (`over` says as what, for whom). */
async function recordLeaf(leaf: { signer: Signer; serial: string }, over: Partial<CertificateRecord>): Promise<void> {
  const now = h.ctx.now();
  await h.ctx.stores.certificates.insert({
    serial: leaf.serial,
    instanceId: 'unset',
    bot: 'gw',
    generation: 1,
    notBefore: now - 60_000,
    notAfter: now + 3_600_000,
    kind: 'x509-svid',
    keyStorage: 'software',
    exportable: true,
    spkiHash: spkiHash(leaf.signer.publicKeySpki()),
    requestId: newRequestId(),
    issuedAt: now,
    ...over,
  });
}

const intermediateDer = (): Buffer => h.ctx.ca.intermediateDer;

describe('x5c: only this issuer’s intermediate may follow the leaf', () => {
  it('a genuine leaf followed by an attacker’s own intermediate (same trust domain and names) is chain_invalid', async () => {
    const id = await h.join();
    const root = createRootCa({ trustDomain: 'example.org' });
    const theirs = createIntermediateCa(root, { trustDomain: 'example.org' });
    const x5c = [ders(id.chainPem)[0]!, theirs.certDer];
    const res = await expectRefused(
      h,
      'renew',
      await sign(id.signer, await renewPayload(named(id)), x5c),
      401,
      'chain_invalid',
    );
    expect(res.json.message).toBe("x5c certificate 1 is not this issuer's intermediate CA");
    // The same leaf with our intermediate after it renews: only the appended CA made the difference.
    const ok = await h.post('renew', await sign(id.signer, await renewPayload(named(id)), ders(id.chainPem)));
    expect(ok.status).toBe(200);
  });

  it('our own intermediate followed by a foreign CA further down the x5c is chain_invalid', async () => {
    const id = await h.join();
    const foreign = createRootCa({ trustDomain: 'example.org' });
    const x5c = [...ders(id.chainPem), foreign.certDer];
    const res = await expectRefused(
      h,
      'renew',
      await sign(id.signer, await renewPayload(named(id)), x5c),
      401,
      'chain_invalid',
    );
    expect(res.json.message).toBe("x5c certificate 2 is not this issuer's intermediate CA");
  });
});

describe('the leaf must be a bot identity: spiffe://<td>/bot/<bot>/<instance>', () => {
  it('a genuine workload SVID of this instance, used to renew the node identity, is chain_invalid', async () => {
    const gw = await h.join();
    // The real workload op hands a local process an SVID of ours (spiffe://example.org/web).
    const key = SoftwareSigner.generate();
    const { envelope, requestId } = await workloadEnvelope(
      gw,
      { action: 'x509', entry: 'web', csr: await csrPem(key) },
      h.ctx.now(),
    );
    const res = await h.post('workload', envelope);
    expect(res.status).toBe(200);
    const svid = verifyResponse(res.json, 'workload', requestId, h.rootPem).result as unknown as {
      chain: string[];
      serial: string;
    };
    const payload = await renewPayload({ instance_id: gw.result.instance_id, serial: svid.serial });
    const refused = await expectRefused(h, 'renew', await sign(key, payload, ders(svid.chain)), 401, 'chain_invalid');
    expect(refused.json.message).toMatch(/not a Sigil bot identity of trust domain example\.org/);
  });

  it('the MQTT transport certificate (no SPIFFE ID) is chain_invalid', async () => {
    const agent = new TokenJoinAgent(await h.token());
    const built = await buildJoinRequest({
      method: 'token',
      evidence: (c) => agent.evidence(c),
      now: h.ctx.now(),
      transport: true,
    });
    const joined = h.identityFrom(
      await h.post('join', built.envelope),
      'join',
      built.entry.requestId,
      loadSigner(parseKeyRef(built.entry.pendingKeyRef!)),
    );
    const tkey = SoftwareSigner.fromPkcs8Pem(built.entry.transportKeyPem!);
    const payload = await renewPayload(named(joined));
    const res = await expectRefused(
      h,
      'renew',
      await sign(tkey, payload, ders(joined.result.transport_chain!)),
      401,
      'chain_invalid',
    );
    expect(res.json.message).toMatch(/not a Sigil bot identity/);
  });

  // Each of these leaves is signed by our intermediate; only the SPIFFE path is wrong.
  const victimShapes: Array<[string, (inst: string) => string]> = [
    ['the issuer’s own ID (/sigil/issuer)', () => 'spiffe://example.org/sigil/issuer'],
    ['a bot path without an instance (/bot/gw)', () => 'spiffe://example.org/bot/gw'],
    ['a bot path with an extra segment (/bot/gw/<instance>/x)', (i) => `spiffe://example.org/bot/gw/${i}/x`],
    ['another trust domain (spiffe://other.org/bot/gw/<instance>)', (i) => `spiffe://other.org/bot/gw/${i}`],
    ['a workload path naming the instance (/workload/gw/<instance>)', (i) => `spiffe://example.org/workload/gw/${i}`],
  ];
  for (const [what, spiffe] of victimShapes) {
    it(`a leaf of ours with ${what}, recorded as the instance's identity, is chain_invalid`, async () => {
      const victim = await h.join();
      const inst = victim.result.instance_id;
      const leaf = ourLeaf(spiffe(inst));
      // Even with a row saying it is this instance's current identity, the shape alone refuses it.
      await recordLeaf(leaf, { instanceId: inst, generation: victim.result.generation });
      const payload = await renewPayload({ instance_id: inst, serial: leaf.serial });
      const res = await expectRefused(
        h,
        'renew',
        await sign(leaf.signer, payload, [leaf.der, intermediateDer()]),
        401,
        'chain_invalid',
      );
      expect(res.json.message).toBe(
        'the presented certificate is not a Sigil bot identity of trust domain example.org',
      );
    });
  }
});

describe('the payload must name the identity that signed it (checkNamedSigner)', () => {
  it('a bot re-signing another instance’s renewal payload with its own identity is signer_mismatch', async () => {
    const victim = await h.join();
    const thief = await h.join();
    const payload = await renewPayload(named(victim));
    const res = await expectRefused(
      h,
      'renew',
      await sign(thief.signer, payload, ders(thief.chainPem)),
      403,
      'signer_mismatch',
    );
    expect(res.json.message).toBe(
      `the request names instance ${victim.result.instance_id} but is signed by instance ${thief.result.instance_id}`,
    );
  });

  it('its own instance but another certificate’s serial (an older one, or another bot’s) is signer_mismatch', async () => {
    const id = await h.join();
    const other = await h.join();
    const payload = await renewPayload({ instance_id: id.result.instance_id, serial: other.result.serial });
    const res = await expectRefused(
      h,
      'renew',
      await sign(id.signer, payload, ders(id.chainPem)),
      403,
      'signer_mismatch',
    );
    expect(res.json.message).toBe(
      `the request names certificate ${other.result.serial} but is signed with certificate ${id.result.serial}`,
    );
  });
});

describe('the leaf must be an identity this instance holds, of its bot', () => {
  it('a leaf naming another bot for an instance of a LOCKED bot is unknown_instance (the bot lock is not dodged)', async () => {
    const victim = await h.join({ token: await h.token({ bot: 'db' }) });
    const inst = victim.result.instance_id;
    await runAdminOp(h.ctx.stores, 'lock', { target: 'db' }, h.ctx.now());
    try {
      // The leaf says bot gw (not locked); its row says it is the db instance's current identity.
      const leaf = ourLeaf(`spiffe://example.org/bot/gw/${inst}`);
      await recordLeaf(leaf, { instanceId: inst, bot: 'db', generation: victim.result.generation });
      const payload = await renewPayload({ instance_id: inst, serial: leaf.serial });
      const res = await expectRefused(
        h,
        'renew',
        await sign(leaf.signer, payload, [leaf.der, intermediateDer()]),
        404,
        'unknown_instance',
      );
      expect(res.json.message).toBe(`instance ${inst} is not known to this issuer`);
    } finally {
      await runAdminOp(h.ctx.stores, 'unlock', { target: 'db' }, h.ctx.now());
    }
  });

  it('a leaf of ours for an instance that does not exist is unknown_instance', async () => {
    // (A certificate row needs its instance: the store's foreign key; so this leaf has none.)
    const leaf = ourLeaf('spiffe://example.org/bot/gw/no-such-instance');
    const payload = await renewPayload({ instance_id: 'no-such-instance', serial: leaf.serial });
    await expectRefused(
      h,
      'renew',
      await sign(leaf.signer, payload, [leaf.der, intermediateDer()]),
      404,
      'unknown_instance',
    );
  });

  it('a bot-shaped leaf of ours that the issuer never recorded (signed, then its transaction rolled back) is chain_invalid', async () => {
    const victim = await h.join();
    const inst = victim.result.instance_id;
    const leaf = ourLeaf(`spiffe://example.org/bot/gw/${inst}`);
    const payload = await renewPayload({ instance_id: inst, serial: leaf.serial });
    const res = await expectRefused(
      h,
      'renew',
      await sign(leaf.signer, payload, [leaf.der, intermediateDer()]),
      401,
      'chain_invalid',
    );
    expect(res.json.message).toBe(`certificate serial ${leaf.serial} is not an identity issued to instance ${inst}`);
  });

  // The kinds the issuer records besides identities (ops/workload.ts, ops/transport-cert.ts, credentials/issue-credential.ts).
  const otherKinds = ['workload-x509-svid', 'mqtt-transport', 'x509-database', 'x509-kubernetes'];
  for (const kind of otherKinds) {
    it(`a bot-shaped leaf recorded for this instance as kind ${kind} (not an identity) is chain_invalid`, async () => {
      const victim = await h.join();
      const inst = victim.result.instance_id;
      const leaf = ourLeaf(`spiffe://example.org/bot/gw/${inst}`);
      await recordLeaf(leaf, { instanceId: inst, kind, generation: victim.result.generation });
      const payload = await renewPayload({ instance_id: inst, serial: leaf.serial });
      const res = await expectRefused(
        h,
        'renew',
        await sign(leaf.signer, payload, [leaf.der, intermediateDer()]),
        401,
        'chain_invalid',
      );
      expect(res.json.message).toBe(`certificate serial ${leaf.serial} is not an identity issued to instance ${inst}`);
    });
  }

  it('a leaf naming instance A whose serial is an identity of instance B is chain_invalid', async () => {
    const a = await h.join();
    const b = await h.join();
    const leaf = ourLeaf(`spiffe://example.org/bot/gw/${a.result.instance_id}`);
    await recordLeaf(leaf, { instanceId: b.result.instance_id, generation: a.result.generation });
    const payload = await renewPayload({ instance_id: a.result.instance_id, serial: leaf.serial });
    const res = await expectRefused(
      h,
      'renew',
      await sign(leaf.signer, payload, [leaf.der, intermediateDer()]),
      401,
      'chain_invalid',
    );
    expect(res.json.message).toBe(
      `certificate serial ${leaf.serial} is not an identity issued to instance ${a.result.instance_id}`,
    );
  });

  it('a leaf with a victim’s own (public) serial and SPIFFE ID around another key is chain_invalid', async () => {
    // What a live peer intermediate's key alone can mint (review of issue #16): the serial is in
    // every request's x5c and every answer; only the recorded key tells the two leaves apart.
    const victim = await h.join();
    const inst = victim.result.instance_id;
    const attacker = SoftwareSigner.generate();
    const now = h.ctx.now();
    const der = h.ctx.engine.issueSvid({
      serial: Buffer.from(victim.result.serial, 'hex'),
      spkiDer: attacker.publicKeySpki(),
      spiffeId: victim.result.spiffe_id,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
      subject: [],
    });
    const payload = await renewPayload({ instance_id: inst, serial: victim.result.serial });
    const res = await expectRefused(
      h,
      'renew',
      await sign(attacker, payload, [der, intermediateDer()]),
      401,
      'chain_invalid',
    );
    expect(res.json.message).toBe(
      `certificate serial ${victim.result.serial} of instance ${inst} was issued for another key than the presented certificate's`,
    );
    expect((await h.ctx.stores.instances.get(inst))!.generation).toBe(victim.result.generation);
    // The victim renews as before.
    expect((await h.post('renew', (await h.renewEnvelope(victim)).envelope)).status).toBe(200);
  });

  it('control: the same forged-leaf rig, recorded as this instance’s identity, renews (so the refusals above are the checks)', async () => {
    const victim = await h.join();
    const inst = victim.result.instance_id;
    const leaf = ourLeaf(`spiffe://example.org/bot/gw/${inst}`);
    await recordLeaf(leaf, { instanceId: inst, generation: victim.result.generation });
    const payload = await renewPayload({ instance_id: inst, serial: leaf.serial });
    const res = await h.post('renew', await sign(leaf.signer, payload, [leaf.der, intermediateDer()]));
    expect(res.status).toBe(200);
  });
});

describe('time: the leaf’s notAfter and the request timestamp, at their exact limits', () => {
  // Phase 2 directly, with explicit instants: over HTTPS the issuer's clock moves on by itself.
  const judge = async (id: Identity, timestamp: number, now: number): Promise<string> => {
    const who = checkPresentedChain(h.ctx, ders(id.chainPem), 'renew');
    try {
      const r = await judgeCurrentIdentity(h.ctx, h.ctx.stores, who, timestamp, now);
      return 'current' in r ? 'current' : 'stale';
    } catch (e) {
      if (e instanceof SigilError) return `${e.code}: ${e.message}`;
      throw e;
    }
  };

  it('the leaf is expired at exactly its notAfter, current one millisecond before', async () => {
    const id = await h.join();
    // The certificate's own notAfter (whole seconds), not the answer's not_after (milliseconds).
    const notAfter = checkPresentedChain(h.ctx, ders(id.chainPem), 'renew').leaf.fields.notAfter.getTime();
    expect(await judge(id, notAfter - 1, notAfter - 1)).toBe('current');
    expect(await judge(id, notAfter, notAfter)).toBe(
      `cert_expired: the presented certificate expired at ${new Date(notAfter).toISOString()}; the agent must join again`,
    );
  });

  it('the timestamp may differ by exactly skewMs either way, not one millisecond more', async () => {
    const id = await h.join();
    const now = h.ctx.now();
    const skew = h.ctx.skewMs;
    expect(await judge(id, now + skew, now)).toBe('current');
    expect(await judge(id, now - skew, now)).toBe('current');
    const allowed = `allowed ±${skew / 1000} s`;
    expect(await judge(id, now + skew + 1, now)).toBe(
      `stale_request: request timestamp differs from the issuer's clock by ${Math.round((skew + 1) / 1000)} s (${allowed}); check the agent's clock (NTP)`,
    );
    expect(await judge(id, now - skew - 1, now)).toMatch(/^stale_request: .* by -\d+ s/);
    expect(await judge(id, now + 10 * skew, now)).toBe(
      `stale_request: request timestamp differs from the issuer's clock by ${(10 * skew) / 1000} s (${allowed}); check the agent's clock (NTP)`,
    );
  });
});

describe('the other signed operations authenticate the same way (ops/workload.ts)', () => {
  it('a workload request signed with a superseded identity is generation_mismatch and locks the instance', async () => {
    const first = await h.join();
    const { envelope } = await h.renewEnvelope(first);
    const renewed = await h.post('renew', envelope);
    expect(renewed.status).toBe(200);
    // A thief holding the first generation's key asks for a workload SVID after the renewal.
    const stale = await workloadEnvelope(first, { action: 'x509', entry: 'web', csr: await csrPem() }, h.ctx.now());
    const before = await h.counts();
    const res = await h.post('workload', stale.envelope);
    expect(res.status).toBe(403);
    expect(res.json.code).toBe('generation_mismatch');
    expect(res.json.message).toMatch(
      new RegExp(
        `^stale credential generation 1 presented \\(current is 2\\); instance ${first.result.instance_id} is now locked\\.`,
      ),
    );
    expect((await h.counts()).certificates).toBe(before.certificates);
    const inst = await h.ctx.stores.instances.get(first.result.instance_id);
    expect(inst?.locked).toBe(true);
    expect(inst?.lockReason).toBe('generation_mismatch: presented generation 1, current 2');
  });

  it('a workload request signed before a renewal and delivered after it is refused without a lock (held back on its way)', async () => {
    // The review of issue #16: a broker holding back one request until the agent renewed could
    // lock any machine. Only renewals are resent idempotently; this request was honest when signed.
    const first = await h.join();
    const held = await workloadEnvelope(first, { action: 'entries' }, h.ctx.now());
    const heldLonger = await workloadEnvelope(first, { action: 'entries' }, h.ctx.now());
    const built = await buildRenewRequest({ current: first.signer, chainPem: first.chainPem, now: h.ctx.now() });
    const renewed = await h.post('renew', built.envelope);
    expect(renewed.status).toBe(200);
    const res = await h.post('workload', held.envelope);
    expect(res.status).toBe(403);
    expect(res.json.code).toBe('generation_mismatch');
    expect(res.json.message).toMatch(
      new RegExp(
        `^the request was signed with generation 1 before generation 2 was issued .*${first.result.instance_id} is not locked`,
      ),
    );
    expect((await h.ctx.stores.instances.get(first.result.instance_id))?.locked).toBe(false);

    // Two generations back is no delayed request of the current holder: it locks.
    const second = h.identityFrom(
      renewed,
      'renew',
      built.entry.requestId,
      loadSigner(parseKeyRef(built.entry.pendingKeyRef!)),
    );
    expect((await h.post('renew', (await h.renewEnvelope(second)).envelope)).status).toBe(200);
    const older = await h.post('workload', heldLonger.envelope);
    expect(older.json.code).toBe('generation_mismatch');
    expect((await h.ctx.stores.instances.get(first.result.instance_id))?.locked).toBe(true);
  });

  it('garbage after the leaf in x5c is bad_certificate, naming its position', async () => {
    const id = await h.join();
    const x5c = [ders(id.chainPem)[0]!, Buffer.from('not a certificate')];
    const res = await h.post('renew', await sign(id.signer, await renewPayload(named(id)), x5c));
    expect(res.json.code).toBe('bad_certificate');
    expect(res.json.message).toMatch(/^x5c certificate 1/);
  });
});

describe('malformed envelopes are refused as such, not crashed on (protocol/jws.ts)', () => {
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

  it('a JSON null body, and a protected header that is null: bad_request', async () => {
    const body = await h.post('renew', null);
    expect(body.status).toBe(400);
    expect(body.json.code).toBe('bad_request');
    const header = await h.post('renew', { protected: b64(null), payload: b64({}), signature: 'AA' });
    expect(header.status).toBe(400);
    expect(header.json.code).toBe('bad_request');
  });

  it('an x5c with a non-string entry after a string one: bad_request', async () => {
    const id = await h.join();
    const leafB64 = ders(id.chainPem)[0]!.toString('base64');
    const res = await h.post('renew', {
      protected: b64({ alg: 'ES256', typ: 'sigil-request+jws', x5c: [leafB64, 5] }),
      payload: b64({}),
      signature: 'AA',
    });
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('bad_request');
  });
});

describe('renew: a superseded generation is stolen, unless a concurrent renewal just overtook it', () => {
  it('the previous generation, used after its successor was issued, is generation_mismatch and locks the instance', async () => {
    const first = await h.join();
    const { envelope, newSigner } = await h.renewEnvelope(first);
    const res = await h.post('renew', envelope);
    const second = h.identityFrom(
      res,
      'renew',
      (JSON.parse(Buffer.from(envelope.payload, 'base64url').toString()) as { request_id: string }).request_id,
      newSigner,
    );
    // A software renewal records what it proved: nothing, so an exportable key.
    expect((await h.ctx.stores.certificates.get(second.result.serial))?.exportable).toBe(true);
    // Later (the successor's issue is in the past), the thief renews with the first generation.
    h.clock.offsetMs += 2000;
    try {
      const stale = await h.renewEnvelope(first);
      const refused = await h.post('renew', stale.envelope);
      expect(refused.status).toBe(403);
      expect(refused.json.code).toBe('generation_mismatch');
      expect(refused.json.message).toMatch(/is now locked/);
      expect((await h.ctx.stores.instances.get(first.result.instance_id))?.locked).toBe(true);
    } finally {
      h.clock.offsetMs -= 2000;
    }
  });

  it('a renewal signed before its successor was issued is overtaken, not stolen, even when it arrives seconds later (another issuer’s clock)', async () => {
    // Two copies of one generation's renewal: the other one won (at another issuer, whose clock
    // may be behind: its updatedAt looks old to this one). Signed before the successor existed: no lock.
    const first = await h.join();
    const late = await h.renewEnvelope(first);
    h.clock.offsetMs += 5;
    const won = await h.renewEnvelope(first);
    expect((await h.post('renew', won.envelope)).status).toBe(200);
    h.clock.offsetMs += 2000;
    try {
      const refused = await h.post('renew', late.envelope);
      expect(refused.status).toBe(403);
      expect(refused.json.code).toBe('generation_mismatch');
      expect(refused.json.message).toBe('a concurrent renewal already advanced this instance');
      expect((await h.ctx.stores.instances.get(first.result.instance_id))?.locked).toBe(false);
    } finally {
      h.clock.offsetMs -= 2005;
    }
  });

  it('key_attestation for an instance whose join method has no renewal key proof (token): bad_request', async () => {
    const id = await h.join();
    const payload = { ...(await renewPayload(named(id))), key_attestation: { format: 'tpm2' } };
    const res = await h.post('renew', await sign(id.signer, payload, ders(id.chainPem)));
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('bad_request');
    expect(res.json.message).toMatch(/instances joined with the token method have no renewal key proof/);
  });
});
