import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { NV_ReadPublic } from '../../../src/tpm/commands/nv.js';
import { TPMA_NV, TPM_ALG } from '../../../src/tpm/constants.js';
import { TPM_RC, isTpmRc } from '../../../src/tpm/errors.js';
import { nvName } from '../../../src/tpm/name.js';
import type { Tpm } from '../../../src/tpm/tpm.js';
import { closeSim, openSimTpm } from './sim.js';
import type { Sim } from './sim.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const INDEX = 0x01500020;

describe('NV commands against swtpm', () => {
  let sim: Sim;
  let tpm: Tpm;

  beforeAll(async () => void ({ sim, tpm } = await openSimTpm()));
  afterAll(() => closeSim({ sim, tpm }));

  it('NV_DefineSpace defines an index whose Name is computed from its public area', async () => {
    const info = await tpm.nvDefine(INDEX, 2000, { authValue: Buffer.from('nvpass') });
    expect(info.public.value.dataSize).toBe(2000);
    expect(info.public.value.nameAlg).toBe(TPM_ALG.SHA256);
    expect(hex(info.name)).toBe(hex(nvName(info.public)));
  });

  it('NV_Write + NV_Read move more than TPM_PT_NV_BUFFER_MAX in chunks (owner and index auth)', async () => {
    expect(await tpm.nvBufferMax()).toBe(1024);
    const data = randomBytes(2000);
    await tpm.nvWrite(INDEX, data.subarray(0, 1500), { authValue: Buffer.from('nvpass') });
    await tpm.nvWrite(INDEX, data.subarray(1500), { authHandle: 0x40000001, offset: 1500 });
    expect(hex(await tpm.nvRead(INDEX, { authValue: Buffer.from('nvpass') }))).toBe(hex(data));
    expect(hex(await tpm.nvRead(INDEX, { authHandle: 0x40000001 }))).toBe(hex(data));
    const wrong = await tpm.nvRead(INDEX, { authValue: Buffer.from('nope') }).catch((e: unknown) => e);
    // a noDA index answers BAD_AUTH (no dictionary-attack count), not AUTH_FAIL
    expect(isTpmRc(wrong, TPM_RC.BAD_AUTH)).toBe(true);
  });

  it('NV_ReadPublic shows WRITTEN after the first write (and the Name changes with it)', async () => {
    const r = await tpm.run(NV_ReadPublic, { nvIndex: INDEX });
    expect(r.nvPublic.value.attributes & TPMA_NV.WRITTEN).toBeTruthy();
    expect(hex(r.nvName)).toBe(hex(nvName(r.nvPublic)));
  });

  it('NV_UndefineSpace removes it; reading it then is TPM_RC_HANDLE', async () => {
    await tpm.nvUndefine(INDEX);
    const err = await tpm.nvRead(INDEX).catch((e: unknown) => e);
    expect(isTpmRc(err, TPM_RC.HANDLE)).toBe(true);
  });
});
