import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { makeCredential } from '../../../src/tpm/crypto/credential.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import type { TpmKey } from '../../../src/tpm/tpm.js';
import { startSim } from './sim.js';
import type { Sim } from './sim.js';

/** swtpm has 3 object slots and no resource manager: any leak shows as TPM_RC_OBJECT_MEMORY (0x902). */
describe('no transient object or session leaks (swtpm, no resource manager)', () => {
  let sim: Sim;
  let tpm: Tpm;
  let srk: TpmKey;

  beforeAll(async () => {
    sim = await startSim();
    tpm = await Tpm.open(sim.tcti);
    srk = await tpm.createSrk();
  });
  afterAll(async () => {
    if (tpm && srk) await tpm.flush(srk).catch(() => undefined);
    await tpm?.close();
    await sim?.stop();
  });

  it('200 × create + load + sign + flush', async () => {
    const digest = createHash('sha256').update('x').digest();
    for (let i = 0; i < 200; i++) {
      const blob = await tpm.createSigningKey(srk);
      await tpm.withTransient(tpm.load(srk, blob), (key) => tpm.sign(key, digest));
    }
    expect(await tpm.getHandles(0x80000000)).toEqual([srk.handle]);
  });

  it('30 × activateCredential, a third of them failing, leave no session or EK behind', async () => {
    await tpm.withTransient(tpm.load(srk, await tpm.createAk(srk)), async (ak) => {
      for (let i = 0; i < 30; i++) {
        await tpm.withTransient(tpm.readEkPublic(i % 2 === 0 ? 'rsa-2048' : 'ecc-p256'), async (ek) => {
          const boundTo = i % 3 === 0 ? srk.name : ak.name;
          const cred = makeCredential(ek.public.value, boundTo, randomBytes(16));
          await tpm.activateCredential(ak, ek, cred.credentialBlob, cred.secret).catch((e: unknown) => {
            if (i % 3 !== 0) throw e;
          });
        });
      }
    });
    expect(await tpm.getHandles(0x80000000)).toEqual([srk.handle]);
    expect(await tpm.getHandles(0x02000000)).toEqual([]); // loaded HMAC and policy sessions
  });
});
