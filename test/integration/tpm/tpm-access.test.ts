/**
 * keystore/tpm-access.ts TpmAccess: the per-TCTI state (operation queue, the SRK's saved
 * context) belongs to the object, so two holders in one process share nothing — and one
 * holder's keys and operations share its SRK and its queue.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TpmAccess, TpmAccesses } from '../../../src/keystore/tpm-access.js';
import { TpmSigner } from '../../../src/keystore/tpm.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import { startSim, type Sim } from './sim.js';

let sim: Sim;
let srksCreated = 0;
let open = 0;
let maxOpen = 0;
const realCreateSrk = Tpm.prototype.createSrk;
const realOpen = Tpm.open.bind(Tpm);
const realClose = Tpm.prototype.close;

beforeAll(async () => {
  sim = await startSim();
  Tpm.prototype.createSrk = function (this: Tpm, ...a: Parameters<typeof realCreateSrk>) {
    srksCreated++;
    return realCreateSrk.apply(this, a);
  };
  Tpm.open = async (...a: Parameters<typeof realOpen>) => {
    const tpm = await realOpen(...a);
    maxOpen = Math.max(maxOpen, ++open);
    return tpm;
  };
  Tpm.prototype.close = function (this: Tpm) {
    open--;
    return realClose.call(this);
  };
});
afterAll(async () => {
  Tpm.prototype.createSrk = realCreateSrk;
  Tpm.open = realOpen;
  Tpm.prototype.close = realClose;
  await sim?.stop();
});

describe('TpmAccess', () => {
  it('keeps the SRK per holder: a second key of the same holder reuses it, another holder makes its own', async () => {
    const a = new TpmAccess(sim.tcti);
    const b = new TpmAccess(sim.tcti);
    srksCreated = 0;
    const k1 = await TpmSigner.create(a);
    expect(k1.access).toBe(a);
    expect(srksCreated).toBe(1);
    await TpmSigner.create(a);
    await k1.sign(randomBytes(32));
    expect(srksCreated).toBe(1); // ContextLoad of the saved SRK, not CreatePrimary
    await TpmSigner.create(b);
    expect(srksCreated).toBe(2); // nothing of a's is b's
    a.forgetSrk();
    await TpmSigner.create(a);
    expect(srksCreated).toBe(3);
    // A key rebuilt from its reference for a holder uses that holder's TPM state.
    expect(TpmSigner.fromRef(k1.ref, b).access).toBe(b);
    expect(() => TpmSigner.fromRef(k1.ref, new TpmAccess('swtpm:host=127.0.0.1,port=1'))).toThrow(TypeError);
  });

  it('runs one holder’s operations one connection at a time, in order', async () => {
    const a = new TpmAccess(sim.tcti);
    maxOpen = 0;
    const order: number[] = [];
    await Promise.all([1, 2, 3, 4].map((i) => a.run(async (tpm) => (await tpm.getRandom(8), order.push(i)))));
    expect(order).toEqual([1, 2, 3, 4]);
    expect(maxOpen).toBe(1);
  });

  it('a session of one holder is reused by another holder of the same TCTI in the same async flow (no second connection)', async () => {
    const a = new TpmAccess(sim.tcti);
    const b = new TpmAccess(sim.tcti);
    maxOpen = 0;
    const same = await a.session(async () => a.run(async (ta) => b.run(async (tb) => tb === ta)));
    expect(same).toBe(true);
    expect(maxOpen).toBe(1);
  });
});

describe('TpmAccesses', () => {
  it('gives one holder the same TpmAccess for a TCTI every time, and another holder its own', () => {
    const mine = new TpmAccesses();
    const theirs = new TpmAccesses();
    expect(mine.for(sim.tcti)).toBe(mine.for(sim.tcti));
    expect(mine.for(sim.tcti).tcti).toBe(sim.tcti);
    expect(mine.for('swtpm:host=127.0.0.1,port=1')).not.toBe(mine.for(sim.tcti));
    expect(theirs.for(sim.tcti)).not.toBe(mine.for(sim.tcti));
  });
});
