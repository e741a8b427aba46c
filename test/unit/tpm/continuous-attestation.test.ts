/**
 * Continuous attestation (issue #16) against a real swtpm and a real issuer over HTTPS: a tpm
 * instance whose join rule names a firmware profile renews with a fresh quote by its join's AK,
 * bound to the renewal; the issuer re-judges the boot. Each check of join/tpm/reattest.ts and
 * server/ops/attestation.ts has a test here that fails when the check is removed: the binding
 * (a replayed quote), the AK signature (a quote by another AK), the PCR digest (altered values),
 * reboot detection (a power cycle without the new event log), the profile (an extended PCR, with
 * the PCR diff), the policy (refuse vs lock, the CRL), the selection (a rule edit).
 *
 * The profile pins the resettable debug PCR 16 (all zeros after TPM2_Startup or
 * tpm2_pcrreset) and reads the simulated boot's event log (PCRs 0, 4, 7, 8), so a test can break
 * the boot with tpm2_pcrextend and restore it with tpm2_pcrreset.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { namedSigner } from '../../../src/agent/named-signer.js';
import { renewalBinding } from '../../../src/attest/binding.js';
import { encodeSignedAttest } from '../../../src/attest/structures.js';
import { akTemplate, quoteWithValues } from '../../../src/join/tpm/agent.js';
import { certifyWithAk, saveAk } from '../../../src/join/tpm/ak-store.js';
import {
  acceptAttestation,
  freshTpmEvidence,
  saveJoinAttestation,
  tpmRenewalProofs,
} from '../../../src/join/tpm/fresh-evidence.js';
import { attestRenewalKey } from '../../../src/join/tpm/key-attestation.js';
import type { PcrSelectionWire } from '../../../src/join/tpm/wire.js';
import { OWNER_PARENT } from '../../../src/keystore/tpm-access.js';
import { TpmSigner } from '../../../src/keystore/tpm.js';
import { TPM_CC } from '../../../src/tpm/constants.js';
import { SocketTransport } from '../../../src/tpm/transport/socket.js';
import { buildCsr } from '../../../src/pki/csr.js';
import { fromPem, toPem } from '../../../src/pki/pem.js';
import { signJws } from '../../../src/protocol/jws.js';
import { TYP_REQUEST } from '../../../src/protocol/messages.js';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import type { TxStores } from '../../../src/server/store/types.js';
import { revokedCertificates } from '../../../src/server/crl/revoked.js';
import { eventsOfRow } from '../../../src/server/events/derive.js';
import type { HttpsIssuerClient } from '../../../src/transport/https/client.js';
import { newRequestId } from '../../../src/util/secret.js';
import { expectRefusal, startIssuer, type Harness } from '../../integration/harness.js';
import {
  createLocalCa,
  createSwtpm,
  simulateBoot,
  simulatedBootLog,
  tpm2Tool,
  type SharedLocalCa,
  type SwtpmInstance,
} from '../../helpers/swtpm.js';
import { httpsClient, setTpmRules, tpmJoin, tpmRule, writeLog, type TpmJoinResult } from '../../helpers/tpm-join.js';
import { installLabProfiles } from '../../helpers/firmware-boot.js';
import { MemorySettings } from '../../helpers/memory-settings.js';

const ZERO = '00'.repeat(32);

let h: Harness;
let client: HttpsIssuerClient;
let ca: SharedLocalCa;
let gw: SwtpmInstance;
let logPath: string;
let restoreProfiles: (() => void) | undefined;

const ekCas = (): string => `ek_ca_files: [${ca.rootCert}, ${ca.issuerCert}]`;
const rule = (policy = 'refuse', extra = ''): string =>
  tpmRule('attested', `${ekCas()}\nfirmware_profiles: [lab-attested]\non_attestation_failure: ${policy}${extra}`);

/** One tpm agent's view: its join, its settings (AK, selection, counters), its current identity. */
interface Machine {
  joined: TpmJoinResult;
  settings: MemorySettings;
  current: { signer: TpmSigner; chain: string[] };
  instanceId: string;
}

async function joinMachine(): Promise<Machine> {
  const joined = await tpmJoin(h, client, gw, { eventLog: logPath, agent: { eventLog: logPath } });
  const settings = new MemorySettings();
  saveAk(settings, joined.agent.attestationKey(joined.requestId)!);
  saveJoinAttestation(settings, joined.agent.joinAttestation(joined.requestId));
  return {
    joined,
    settings,
    current: { signer: joined.identity, chain: joined.payload.result.chain },
    instanceId: joined.payload.result.instance_id,
  };
}

type Evidence = Record<string, unknown> & { quote: { attest: string; signature: string }; pcr_values: any[] };

interface RenewOptions {
  /** Replace or rewrite the fresh evidence (undefined: send none). */
  evidence?: (fresh: Evidence | undefined, binding: Buffer) => Evidence | undefined | Promise<Evidence | undefined>;
  /** Make the key proof and the quote as the agent does: both on one TPM connection (tpmRenewalProofs). */
  oneConnection?: boolean;
}

/** The TPM commands (TPM 2.0 Part 2 §6.5 codes) and connections `fn` makes through src/tpm's socket transport. */
async function tpmTraffic<T>(fn: () => Promise<T>): Promise<{ result: T; commands: number[]; connects: number }> {
  const commands: number[] = [];
  let connects = 0;
  const send = SocketTransport.prototype.send;
  const connect = SocketTransport.connect;
  SocketTransport.prototype.send = function (this: SocketTransport, cmd: Uint8Array) {
    commands.push(Buffer.from(cmd).readUInt32BE(6));
    return send.call(this, cmd);
  };
  SocketTransport.connect = (...a: Parameters<typeof connect>) => {
    connects++;
    return connect.apply(SocketTransport, a);
  };
  try {
    return { result: await fn(), commands, connects };
  } finally {
    SocketTransport.prototype.send = send;
    SocketTransport.connect = connect;
  }
}

/** A renewal as the agent makes it (agent/requests.ts), over HTTPS; on success the machine moves on. */
async function renew(m: Machine, o: RenewOptions = {}) {
  const next = await TpmSigner.create(m.joined.identity.access);
  const requestId = newRequestId();
  const binding = renewalBinding(requestId, next.publicKeySpki());
  const proofs = o.oneConnection
    ? await tpmRenewalProofs(m.joined.agent, m.settings, next, requestId, binding)
    : undefined;
  const fresh = (proofs ? proofs.evidence : await freshTpmEvidence(m.joined.agent, m.settings, binding)) as
    Evidence | undefined;
  const evidence = o.evidence ? await o.evidence(fresh, binding) : fresh;
  const payload = {
    v: 1,
    op: 'renew',
    request_id: requestId,
    timestamp: h.ctx.now(),
    ...namedSigner(m.current.chain),
    csr: toPem('CERTIFICATE REQUEST', await buildCsr(next)),
    key_storage: 'tpm',
    key_attestation:
      proofs?.keyProof ??
      (await attestRenewalKey({
        ak: m.joined.agent.attestationKey(m.joined.requestId)!,
        key: next,
        requestId,
      })),
    ...(evidence ? { attestation: evidence } : {}),
  };
  const env = await signJws(
    m.current.signer,
    TYP_REQUEST,
    payload,
    m.current.chain.map((c) => fromPem(c, 'CERTIFICATE')),
  );
  const res = await h.post('renew', env);
  if (res.status === 200) {
    const renewed = h.identityFrom(res, 'renew', requestId, next);
    m.current = { signer: next, chain: renewed.chainPem };
    acceptAttestation(m.settings);
  }
  return { res, evidence, requestId };
}

const facts = async (m: Machine): Promise<Record<string, any>> =>
  (await h.ctx.stores.instances.get(m.instanceId))!.facts;
const extend16 = (): Promise<unknown> => tpm2Tool(gw, 'tpm2_pcrextend', [`16:sha256=${'ab'.repeat(32)}`]);
const reset16 = (): Promise<unknown> => tpm2Tool(gw, 'tpm2_pcrreset', ['16']);

beforeAll(async () => {
  restoreProfiles = installLabProfiles(mkdtempSync(join(tmpdir(), 'sigil-profiles-')));
  ca = await createLocalCa();
  gw = await createSwtpm({ localCa: ca });
  await gw.start();
  logPath = writeLog(gw, 'boot.log', (await simulateBoot(gw)).eventLog);
  h = await startIssuer();
  client = httpsClient(h);
}, 180_000);

afterAll(async () => {
  restoreProfiles?.();
  client?.close();
  await h?.close();
  await gw?.destroy();
  ca?.destroy();
});

describe('renewal with a fresh quote (refuse policy)', () => {
  it('the join records the first attestation; a renewal re-attests and records it', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    expect(await facts(m)).toMatchObject({
      firmware_profile: 'lab-attested',
      attestation: { ok: true, via: 'join', profile: 'lab-attested' },
    });
    // The verdict's facts ride on the renewal's own instance update (issue #16): no updateFacts.
    const calls = { updateFacts: 0, merged: [] as unknown[] };
    const stores = h.ctx.stores;
    const original = stores.withWriteTx.bind(stores);
    const spy = vi.spyOn(stores, 'withWriteTx').mockImplementation(((fn: (tx: TxStores) => Promise<unknown>) =>
      original((tx) => {
        const { updateFacts, recordIssue } = tx.instances;
        const instances = Object.assign(Object.create(tx.instances) as TxStores['instances'], {
          updateFacts: (...a: Parameters<typeof updateFacts>) => {
            calls.updateFacts++;
            return updateFacts.apply(tx.instances, a);
          },
          recordIssue: (...a: Parameters<typeof recordIssue>) => {
            calls.merged.push(a[1].mergeFacts);
            return recordIssue.apply(tx.instances, a);
          },
        });
        return fn({ ...tx, instances });
      })) as typeof stores.withWriteTx);
    const { res, evidence } = await renew(m).finally(() => spy.mockRestore());
    expect(res.status, res.text).toBe(200);
    expect(calls.updateFacts).toBe(0);
    expect(calls.merged).toEqual([expect.objectContaining({ attestation: expect.objectContaining({ via: 'renew' }) })]);
    // No reboot since the join: no event log sent, the log's verdict carries over.
    expect(evidence).toBeDefined();
    expect(evidence!.event_log).toBeUndefined();
    const f = await facts(m);
    expect(f.attestation).toMatchObject({ ok: true, via: 'renew', profile: 'lab-attested', rebooted: false });
    expect(f.last_good_attestation_at).toBe(f.attestation.at);
    const row = (await h.ctx.stores.audit.list()).filter((a) => a.action === 'renew' && a.outcome === 'ok').at(-1)!;
    expect(row.details).toMatchObject({ attestation: { ok: true, via: 'renew' } });
  });

  it('the agent makes the key proof and the quote on one TPM connection: the quote adds only PCR_Read and Quote, then Quote alone', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    const both = await tpmTraffic(() => renew(m, { oneConnection: true }));
    expect(both.result.res.status, both.result.res.text).toBe(200);
    // The agent's first quote reads the PCRs (join/tpm/fresh-evidence.ts quoteKept).
    expect(both.commands.filter((c) => c === TPM_CC.PCR_Read)).toHaveLength(1);
    expect(await facts(m)).toMatchObject({ attestation: { ok: true, via: 'renew', rebooted: false } });
    // The same renewal's TPM work without a quote (the new key's certification), each on a fresh key.
    const fresh = (): Promise<TpmSigner> => TpmSigner.create(m.joined.identity.access);
    const [k1, k2] = [await fresh(), await fresh()];
    const alone = await tpmTraffic(() => certifyWithAk(m.settings, k1, newRequestId()));
    const withQuote = await tpmTraffic(() =>
      tpmRenewalProofs(m.joined.agent, m.settings, k2, 'req', renewalBinding('req', k2.publicKeySpki())),
    );
    expect(withQuote.result.evidence).toBeDefined();
    expect(withQuote.connects).toBe(alone.connects);
    // Made apart (freshTpmEvidence + attestRenewalKey), the same renewal opens one connection more.
    const apart = await tpmTraffic(() => renew(m));
    expect(apart.result.res.status, apart.result.res.text).toBe(200);
    expect(both.connects).toBe(apart.connects - 1);
    const added = [...withQuote.commands];
    for (const c of alone.commands) added.splice(added.indexOf(c), 1);
    // Later quotes take the values of the one before when the TPM's digest is theirs: Quote alone.
    expect(added).toEqual([TPM_CC.Quote]);
  });

  it('a PCR extended since the agent’s last quote: the kept values fail the quote’s digest, the values read after it serve (no second Quote)', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    expect((await renew(m, { oneConnection: true })).res.status).toBe(200);
    await extend16();
    try {
      const k = await TpmSigner.create(m.joined.identity.access);
      const made = await tpmTraffic(() =>
        tpmRenewalProofs(m.joined.agent, m.settings, k, 'req', renewalBinding('req', k.publicKeySpki())),
      );
      const quoting = made.commands.filter((c) => c === TPM_CC.Quote || c === TPM_CC.PCR_Read);
      expect(quoting).toEqual([TPM_CC.Quote, TPM_CC.PCR_Read]);
      const ev = made.result.evidence as Evidence;
      const pcr16 = ev.pcr_values.find((v: { pcr: number }) => v.pcr === 16);
      expect(pcr16.digest).not.toBe(ZERO);
      // What the issuer judges: the extended value, with its diff (not pcr_digest_mismatch).
      const { res } = await renew(m, { oneConnection: true });
      expectRefusal(res, 403, 'pcr_mismatch');
    } finally {
      await reset16();
    }
    expect((await renew(m, { oneConnection: true })).res.status).toBe(200);
  });

  it('an extended PCR refuses the renewal with the PCR diff, lists the certificate on the CRL; restoring it renews again', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    const serial = (await h.ctx.stores.instances.get(m.instanceId))!.currentSerial!;
    await extend16();
    try {
      const seq = await h.lastAuditSeq();
      const { res } = await renew(m);
      expectRefusal(res, 403, 'pcr_mismatch');
      expect(res.json.message).toMatch(new RegExp(`PCR diff: sha256:16 expected ${ZERO} got [0-9a-f]{64}`));
      const rows = await h.auditAfter(seq);
      expect(rows.map((a) => [a.action, a.outcome, a.code])).toEqual([['renew', 'refused', 'pcr_mismatch']]);
      const diff = rows[0]!.details.pcr_diff as Array<Record<string, unknown>>;
      expect(diff).toEqual([
        { bank: 'sha256', pcr: 16, expected: [ZERO], got: expect.stringMatching(/^[0-9a-f]{64}$/) },
      ]);
      expect(diff[0]!.got).not.toBe(ZERO);
      // The signed event the AuditWatcher pushes: attestation_failed with the diff.
      const events = await eventsOfRow(rows[0]!, async () => false);
      expect(events).toMatchObject([
        { type: 'attestation_failed', data: { op: 'renew', check: 'pcr_mismatch', pcr_diff: diff } },
      ]);
      expect(await facts(m)).toMatchObject({ attestation: { ok: false, check: 'pcr_mismatch', via: 'renew' } });
      // Not locked (refuse), but its certificate is on the CRL while its boot does not match.
      expect((await h.ctx.stores.instances.get(m.instanceId))!.locked).toBe(false);
      expect((await revokedCertificates(h.ctx.stores, h.ctx.now())).map((e) => e.serial)).toContain(serial);
      // Without a quote the standing failure refuses too.
      const none = await renew(m, { evidence: () => undefined });
      expectRefusal(none.res, 403, 'pcr_mismatch');
    } finally {
      await reset16();
    }
    const seq = await h.lastAuditSeq();
    const ok = await renew(m);
    expect(ok.res.status, ok.res.text).toBe(200);
    expect(await facts(m)).toMatchObject({ attestation: { ok: true, via: 'renew' } });
    const row = (await h.auditAfter(seq)).find((a) => a.action === 'renew')!;
    expect(row.details).toMatchObject({ attestation_recovered: true });
    expect((await revokedCertificates(h.ctx.stores, h.ctx.now())).map((e) => e.instanceId)).not.toContain(m.instanceId);
  });

  it('a quote from a previous renewal, replayed into a new one, is refused: quote_nonce_mismatch', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    const first = await renew(m);
    expect(first.res.status).toBe(200);
    const replayed = await renew(m, { evidence: () => first.evidence });
    expectRefusal(replayed.res, 401, 'quote_nonce_mismatch');
  });

  it('a quote by another attestation key, bound to this renewal, is refused: quote_signature_invalid', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    const r = await renew(m, {
      evidence: async (fresh, binding) => {
        const access = m.joined.identity.access;
        const selection = m.joined.agent.joinAttestation(m.joined.requestId)!.pcrSelection as PcrSelectionWire;
        const { quote } = await access.run(async (tpm) => {
          const ak = await access.withParent(tpm, OWNER_PARENT, async (srk) =>
            tpm.load(srk, await tpm.create(srk, akTemplate())),
          );
          return tpm.withTransient(ak, (loaded) => quoteWithValues(tpm, loaded, binding, selection));
        });
        return { ...fresh!, quote: encodeSignedAttest(quote) };
      },
    });
    expectRefusal(r.res, 401, 'quote_signature_invalid');
    expect(await facts(m)).toMatchObject({ attestation: { ok: false, check: 'quote_signature_invalid' } });
  });

  it('PCR values that do not hash to the quoted digest are refused: pcr_digest_mismatch', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    const r = await renew(m, {
      // Claim PCR 16 is still zero while the quote covers its extended value.
      evidence: async (fresh) => fresh,
    });
    expect(r.res.status).toBe(200);
    await extend16();
    try {
      const lied = await renew(m, {
        evidence: (fresh) => ({
          ...fresh!,
          pcr_values: fresh!.pcr_values.map((v) => (v.pcr === 16 ? { ...v, digest: ZERO } : v)),
        }),
      });
      expectRefusal(lied.res, 401, 'pcr_digest_mismatch');
    } finally {
      await reset16();
    }
  });

  it('a rule whose profiles now select other PCRs refuses without recording a failure: pcr_selection_changed', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    await setTpmRules(
      h,
      tpmRule('attested', `${ekCas()}\nfirmware_profiles: [lab-attested-23]\non_attestation_failure: lock`),
    );
    const r = await renew(m);
    expectRefusal(r.res, 409, 'pcr_selection_changed');
    // A rule edit is not the machine's failure: no record, no lock.
    expect(await facts(m)).toMatchObject({ attestation: { ok: true, via: 'join' } });
    expect((await h.ctx.stores.instances.get(m.instanceId))!.locked).toBe(false);
  });

  it('renewals without a quote: attestation_required, unless max_attestation_age allows the last good one', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    expectRefusal((await renew(m, { evidence: () => undefined })).res, 401, 'attestation_required');
    await setTpmRules(h, rule('refuse', '\nmax_attestation_age: 1h'));
    const r = await renew(m, { evidence: () => undefined });
    expect(r.res.status, r.res.text).toBe(200);
  });
});

describe('rules without firmware profiles', () => {
  it('ask for no quote: the challenge does not say attest_renewals, the agent keeps nothing and sends none', async () => {
    await setTpmRules(h, tpmRule('plain', ekCas()));
    const m = await joinMachine();
    expect(m.joined.agent.joinAttestation(m.joined.requestId)).toBeUndefined();
    // An earlier join of this machine recorded attestations: this join clears them.
    expect(await facts(m)).toMatchObject({ attestation: null, last_good_attestation_at: null });
    const r = await renew(m);
    expect(r.evidence).toBeUndefined();
    expect(r.res.status, r.res.text).toBe(200);
  });
});

describe('the TPM clock', () => {
  it('a safe clock behind the last accepted one (a rolled-back or cloned TPM state) is refused: clock_invalid', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    const f = await facts(m);
    // Before the power cycle below: swtpm reports its clock unsafe after one, and then the check is moot.
    expect(f.tpm_clock_safe).toBe(true);
    // As if the last accepted quote had come from a TPM whose clock ran a day ahead of this one.
    try {
      await h.ctx.stores.instances.updateFacts(
        m.instanceId,
        { tpm_clock_ms: f.tpm_clock_ms + 86_400_000 },
        h.ctx.now(),
      );
      const r = await renew(m);
      expectRefusal(r.res, 401, 'clock_invalid');
      expect(await facts(m)).toMatchObject({ attestation: { ok: false, check: 'clock_invalid' } });
    } finally {
      // The same TPM is the same instance at its next join: give it its real clock back.
      await h.ctx.stores.instances.updateFacts(m.instanceId, { tpm_clock_ms: f.tpm_clock_ms }, h.ctx.now());
    }
  });
});

describe('reboot detection', () => {
  it('a power cycle without the new event log is refused (eventlog_required); with it the renewal passes', async () => {
    await setTpmRules(h, rule());
    const m = await joinMachine();
    await gw.reboot();
    logPath = writeLog(gw, 'boot-2.log', (await simulateBoot(gw)).eventLog);
    // The same boot measurements, so the PCR values equal the join's: only the counters tell.
    const hidden = await renew(m, {
      evidence: (fresh) => {
        expect(fresh!.event_log).toBeDefined(); // the agent saw the reboot and sent the log
        const { event_log: _dropped, ...rest } = fresh!;
        return rest as Evidence;
      },
    });
    expectRefusal(hidden.res, 401, 'eventlog_required');
    expect(await facts(m)).toMatchObject({ attestation: { ok: false, check: 'eventlog_required', rebooted: true } });
    // A log of another boot (secure boot off) hidden behind this boot's PCRs does not replay to them.
    const forged = gzipSync(simulatedBootLog({ secureBoot: false }).eventLog).toString('base64');
    const other = await renew(m, { evidence: (fresh) => ({ ...fresh!, event_log: forged }) });
    expectRefusal(other.res, 401, 'eventlog_replay_mismatch');
    const withLog = await renew(m);
    expect(withLog.res.status, withLog.res.text).toBe(200);
    expect(await facts(m)).toMatchObject({ attestation: { ok: true, rebooted: true } });
    // The counters are the issuer's now: the next renewal needs no log.
    const after = await renew(m);
    expect(after.res.status).toBe(200);
    expect(after.evidence!.event_log).toBeUndefined();
    expect(await facts(m)).toMatchObject({ attestation: { ok: true, rebooted: false } });
  }, 120_000);
});

describe('lock policy', () => {
  it('locks the instance, audits the lock with the diff, lists the certificate; unlock lifts it', async () => {
    await setTpmRules(h, rule('lock'));
    const m = await joinMachine();
    const serial = (await h.ctx.stores.instances.get(m.instanceId))!.currentSerial!;
    await extend16();
    try {
      const seq = await h.lastAuditSeq();
      const { res } = await renew(m);
      expectRefusal(res, 403, 'pcr_mismatch');
      expect(res.json.message).toMatch(/is locked/);
      const inst = (await h.ctx.stores.instances.get(m.instanceId))!;
      expect(inst.locked).toBe(true);
      expect(inst.lockReason).toMatch(/attestation failed \(pcr_mismatch\)/);
      const rows = await h.auditAfter(seq);
      expect(rows.map((a) => [a.action, a.outcome, a.code])).toEqual([
        ['renew', 'refused', 'pcr_mismatch'],
        ['lock', 'ok', null],
      ]);
      const events = (await Promise.all(rows.map((r) => eventsOfRow(r, async () => true)))).flat();
      expect(events.map((e) => e.type)).toEqual(['attestation_failed', 'instance_locked']);
      expect(events[1]!.data).toMatchObject({ by: 'system', cause: 'attestation_failed', pcr_diff: [{ pcr: 16 }] });
      const revoked = await revokedCertificates(h.ctx.stores, h.ctx.now());
      expect(revoked.find((e) => e.serial === serial)?.cause).toMatch(/^locked: attestation failed/);
      // Locked: even a good quote does not renew until a person unlocks.
      await reset16();
      expectRefusal((await renew(m)).res, 403, 'instance_locked');
    } finally {
      await reset16();
    }
    await runAdminOp(h.ctx.stores, 'unlock', { target: m.instanceId }, h.ctx.now());
    expect((await revokedCertificates(h.ctx.stores, h.ctx.now())).map((e) => e.serial)).not.toContain(serial);
    const ok = await renew(m);
    expect(ok.res.status, ok.res.text).toBe(200);
  });
});
