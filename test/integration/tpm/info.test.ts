import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { GetCapability } from '../../../src/tpm/commands/capability.js';
import { Shutdown, Startup } from '../../../src/tpm/commands/startup.js';
import { TPM_ALG, TPM_CAP, TPM_PT, TPM_SU } from '../../../src/tpm/constants.js';
import { TPM_RC, isTpmRc } from '../../../src/tpm/errors.js';
import type { Tpm } from '../../../src/tpm/tpm.js';
import { closeSim, openSimTpm } from './sim.js';
import type { Sim } from './sim.js';

const sha256 = (...b: Uint8Array[]): Buffer => b.reduce((h, x) => h.update(x), createHash('sha256')).digest();

describe('TPM information, random and PCR commands against swtpm', () => {
  let sim: Sim;
  let tpm: Tpm;

  beforeAll(async () => void ({ sim, tpm } = await openSimTpm()));
  afterAll(() => closeSim({ sim, tpm }));

  it('Startup on a started TPM answers TPM_RC_INITIALIZE, decoded', async () => {
    const err = await tpm.run(Startup, { startupType: TPM_SU.CLEAR }).catch((e: unknown) => e);
    expect(isTpmRc(err, TPM_RC.INITIALIZE)).toBe(true);
    expect((err as Error).message).toBe('TPM2_Startup failed: TPM_RC_INITIALIZE (rc 0x00000100)');
  });

  it('GetCapability: properties, PCR banks, handles', async () => {
    expect(await tpm.getProperty(TPM_PT.PCR_COUNT)).toBe(24);
    expect(await tpm.getProperty(TPM_PT.MANUFACTURER)).toBe(0x49424d00); // "IBM\0"
    const { capabilityData } = await tpm.run(GetCapability, {
      capability: TPM_CAP.PCRS,
      property: 0,
      propertyCount: 1,
    });
    if (capabilityData.capability !== TPM_CAP.PCRS) throw new Error('wrong capability');
    const sha256Bank = capabilityData.assignedPcr.find((s) => s.hash === TPM_ALG.SHA256);
    expect(Buffer.from(sha256Bank!.pcrSelect).toString('hex')).toBe('ffffff');
    expect(await tpm.getHandles(0x81000000)).toEqual(expect.arrayContaining([0x81010001, 0x81010016]));
    expect(await tpm.getHandles(0x01000000)).toEqual(expect.arrayContaining([0x01c00002, 0x01c00016, 0x01c08000]));
  });

  it('GetRandom returns fresh bytes, more than one digest via several calls', async () => {
    const a = await tpm.getRandom(100);
    const b = await tpm.getRandom(100);
    expect(a.length).toBe(100);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });

  it('PCR_Read reads all 24 SHA-256 PCRs (several rounds of 8)', async () => {
    const all = Array.from({ length: 24 }, (_, i) => i);
    const { values } = await tpm.pcrRead([{ hash: TPM_ALG.SHA256, pcrs: all }]);
    expect(values.map((v) => v.pcr)).toEqual(all);
    expect(values[0]!.digest.length).toBe(32);
    // SHA-1 is not allocated (active_pcr_banks = sha256): nothing comes back
    expect((await tpm.pcrRead([{ hash: TPM_ALG.SHA1, pcrs: [0] }])).values).toEqual([]);
  });

  it('PCR_Extend: new = H(old ‖ digest)', async () => {
    const before = (await tpm.pcrRead([{ hash: TPM_ALG.SHA256, pcrs: [23] }])).values[0]!.digest;
    const d = sha256(Buffer.from('event'));
    await tpm.pcrExtend(23, [{ hashAlg: TPM_ALG.SHA256, digest: d }]);
    const after = (await tpm.pcrRead([{ hash: TPM_ALG.SHA256, pcrs: [23] }])).values[0]!.digest;
    expect(Buffer.from(after).toString('hex')).toBe(sha256(before, d).toString('hex'));
  });

  it('Shutdown(STATE) is accepted and the TPM keeps answering', async () => {
    await tpm.run(Shutdown, { shutdownType: TPM_SU.STATE });
    expect((await tpm.getRandom(8)).length).toBe(8);
  });
});
