/**
 * Issue #16 defect: a SHA-1-only (TPM 1.2 format, TCG_PCR_EVENT) event log refused the join even
 * when no firmware profile of the rule reads the log. Real swtpm, real HTTPS join: the log is
 * judged only when a profile needs it — a PCR-pinning rule joins with it, a rule whose profile
 * reads the log refuses it (eventlog_invalid), and a crypto-agile log that does not replay is
 * still refused where a profile reads it (eventlog_replay_mismatch).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { EV } from '../../src/tpm/eventlog/types.js';
import {
  createLocalCa,
  createSwtpm,
  simulatedBootLog,
  simulateBoot,
  type SharedLocalCa,
  type SwtpmInstance,
} from '../helpers/swtpm.js';
import { expectTpmRefused, httpsClient, setTpmRules, tpmJoin, tpmRule, writeLog } from '../helpers/tpm-join.js';
import { startIssuer, type Harness } from './harness.js';

let h: Harness;
let client: HttpsIssuerClient;
let ca: SharedLocalCa;
let gw: SwtpmInstance;
let sha1Log: string;
let goodLog: string;

/** A TCG 1.2 (SHA-1-only) log as firmware of TPM 1.2 machines writes it: TCG_PCR_EVENT records, no Spec ID event. */
function sha1OnlyLog(): Buffer {
  const rec = (pcr: number, type: number, data: Buffer): Buffer => {
    const head = Buffer.alloc(32);
    head.writeUInt32LE(pcr, 0);
    head.writeUInt32LE(type, 4);
    head.fill(0x5a, 8, 28); // the SHA-1 digest
    head.writeUInt32LE(data.length, 28);
    return Buffer.concat([head, data]);
  };
  return Buffer.concat([
    rec(0, EV.EV_S_CRTM_VERSION, Buffer.from('1.0\0', 'utf16le')),
    rec(0, EV.EV_SEPARATOR, Buffer.alloc(4)),
  ]);
}

const ekCas = (): string => `ek_ca_files: [${ca.rootCert}, ${ca.issuerCert}]`;

beforeAll(async () => {
  ca = await createLocalCa();
  gw = await createSwtpm({ localCa: ca });
  await gw.start();
  goodLog = writeLog(gw, 'boot.log', (await simulateBoot(gw)).eventLog);
  sha1Log = writeLog(gw, 'tpm12.log', sha1OnlyLog());
  h = await startIssuer();
  client = httpsClient(h);
}, 180_000);

afterAll(async () => {
  client?.close();
  await h?.close();
  await gw?.destroy();
  ca?.destroy();
});

describe('tpm join: the event log is judged only when a profile reads it', () => {
  it('a SHA-1-only log does not stop a join whose profile pins PCRs only (the log is not judged)', async () => {
    await setTpmRules(h, tpmRule('pinned', `${ekCas()}\nfirmware_profiles: [lab-gateway-v1]`));
    const r = await tpmJoin(h, client, gw, { eventLog: sha1Log });
    const inst = await h.ctx.stores.instances.get(r.payload.result.instance_id);
    expect(inst!.facts).toMatchObject({ firmware_profile: 'lab-gateway-v1', event_log: false });
  });

  it('nor a join under a rule without firmware profiles', async () => {
    await setTpmRules(h, tpmRule('any-boot', ekCas()));
    const r = await tpmJoin(h, client, gw, { eventLog: sha1Log });
    expect((await h.ctx.stores.instances.get(r.payload.result.instance_id))!.facts).toMatchObject({
      firmware_profile: null,
      event_log: false,
    });
  });

  it('a profile that reads the log still refuses a SHA-1-only log: eventlog_invalid', async () => {
    await setTpmRules(h, tpmRule('measured', `${ekCas()}\nfirmware_profiles: [lab-gateway-measured-boot]`));
    const err = await expectTpmRefused(h, () => tpmJoin(h, client, gw, { eventLog: sha1Log }), 'eventlog_invalid');
    expect(err.message).toMatch(/SHA-1-only/);
    // …and accepts the crypto-agile log of the same boot.
    const ok = await tpmJoin(h, client, gw, { eventLog: goodLog });
    expect((await h.ctx.stores.instances.get(ok.payload.result.instance_id))!.facts).toMatchObject({
      firmware_profile: 'lab-gateway-measured-boot',
      event_log: true,
    });
  });

  it('a profile that reads the log refuses one that does not replay to the quote: eventlog_replay_mismatch', async () => {
    await setTpmRules(h, tpmRule('measured', `${ekCas()}\nfirmware_profiles: [lab-gateway-measured-boot]`));
    const forged = writeLog(gw, 'forged.log', simulatedBootLog({ secureBoot: false }).eventLog);
    const err = await expectTpmRefused(
      h,
      () => tpmJoin(h, client, gw, { eventLog: forged }),
      'eventlog_replay_mismatch',
    );
    expect(err.message).toMatch(/PCR 7/);
  });
});
