import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ContextLoad, ContextSave } from '../../../src/tpm/commands/context.js';
import { TPM_HT, TPM_RH, TPMA_OBJECT } from '../../../src/tpm/constants.js';
import { TPM_RC, isTpmRc } from '../../../src/tpm/errors.js';
import { objectName } from '../../../src/tpm/name.js';
import { unmarshal } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject, publicKeySpki } from '../../../src/tpm/structures/keys.js';
import { tpm2bPublic } from '../../../src/tpm/structures/public.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import type { TpmKey } from '../../../src/tpm/tpm.js';
import { generateKeyPairSync } from 'node:crypto';
import { startSim, tpm2 } from './sim.js';
import type { Sim } from './sim.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('TPM object commands against swtpm', () => {
  let sim: Sim;
  let tpm: Tpm;
  let srk: TpmKey;

  beforeAll(async () => {
    sim = await startSim();
    // A key made by tpm2-tools, persisted, before Sigil connects (swtpm serves one client at a time).
    await tpm2(sim, 'tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-c', 'primary.ctx']);
    await tpm2(sim, 'tpm2_evictcontrol', ['-C', 'o', '-c', 'primary.ctx', '0x81000123']);
    await tpm2(sim, 'tpm2_flushcontext', ['-t']);
    tpm = await Tpm.open(sim.tcti);
    srk = await tpm.createSrk();
  });
  afterAll(async () => {
    await tpm?.flush(srk).catch(() => undefined);
    await tpm?.close();
    await sim?.stop();
  });

  it('CreatePrimary makes the SRK; its Name is nameAlg ‖ H(public)', async () => {
    expect(srk.handle >>> 24).toBe(TPM_HT.TRANSIENT);
    expect(hex(srk.name)).toBe(hex(objectName(srk.public)));
    expect(srk.public.value.objectAttributes).toBe(0x00030472);
    // deterministic: a second CreatePrimary with the same template gives the same key
    await tpm.withTransient(tpm.createSrk(), async (again) => expect(hex(again.name)).toBe(hex(srk.name)));
  });

  it('ReadPublic of a tpm2-tools key gives the Name tpm2_readpublic prints', async () => {
    await tpm.close();
    const printed = await tpm2(sim, 'tpm2_readpublic', ['-c', '0x81000123', '-o', 'pub.bin']);
    tpm = await Tpm.open(sim.tcti);
    const name = /^name: ([0-9a-f]+)$/m.exec(printed)?.[1];
    const key = await tpm.readPublic(0x81000123);
    expect(hex(key.name)).toBe(name);
    // tpm2_readpublic -o writes a TPM2B_PUBLIC: same bytes as ours
    const file = await readFile(join(sim.dir, 'pub.bin'));
    expect(hex(unmarshal(tpm2bPublic, file).bytes)).toBe(hex(key.public.bytes));
    await tpm.evict(key);
  });

  it('Create + Load: a signing key under the SRK', async () => {
    const blob = await tpm.createSigningKey(srk);
    expect(blob.public.value.objectAttributes).toBe(0x00040072);
    await tpm.withTransient(tpm.load(srk, blob), async (key) => {
      expect(hex(key.name)).toBe(hex(objectName(blob.public)));
      expect(publicKeySpki(key.public.value).length).toBe(91);
    });
  });

  it('LoadExternal of a software public key gives the Name computed in software', async () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pub = publicFromKeyObject(publicKey);
    await tpm.withTransient(tpm.loadExternal(pub), async (key) => {
      expect(hex(key.name)).toBe(hex(objectName(pub)));
    });
  });

  it('FlushContext frees the handle: a second flush is TPM_RC_HANDLE', async () => {
    const key = await tpm.load(srk, await tpm.createAk(srk));
    await tpm.flush(key);
    const err = await tpm.flush(key).catch((e: unknown) => e);
    expect(isTpmRc(err, TPM_RC.HANDLE)).toBe(true);
    expect((err as Error).message).toMatch(/TPM2_FlushContext failed: TPM_RC_HANDLE/);
  });

  it('EvictControl persists and removes a key', async () => {
    const persisted = await tpm.withTransient(tpm.load(srk, await tpm.createAk(srk)), (k) =>
      tpm.persist(k, 0x81000100),
    );
    expect((await tpm.readPublic(0x81000100)).name).toEqual(persisted.name);
    expect(await tpm.getHandles(0x81000000)).toContain(0x81000100);
    await tpm.evict(persisted);
    expect(await tpm.getHandles(0x81000000)).not.toContain(0x81000100);
  });

  it('ContextSave + ContextLoad round-trip a transient key', async () => {
    const key = await tpm.load(srk, await tpm.createAk(srk));
    const { context } = await tpm.run(ContextSave, { saveHandle: key.handle });
    await tpm.flush(key);
    const { loadedHandle } = await tpm.run(ContextLoad, { context });
    await tpm.withTransient({ handle: loadedHandle }, async () => {
      expect(hex((await tpm.readPublic(loadedHandle)).name)).toBe(hex(key.name));
    });
  });

  it('the EK template and the SRK differ in hierarchy: an owner primary is not the EK', async () => {
    const ek = await tpm.readEkPublic('rsa-2048');
    expect(ek.handle).toBe(0x81010001);
    expect(ek.public.value.objectAttributes & TPMA_OBJECT.adminWithPolicy).toBeTruthy();
    expect(TPM_RH.ENDORSEMENT).toBe(0x4000000b);
  });
});
