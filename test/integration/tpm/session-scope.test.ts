/**
 * keystore/tpm-access.ts TpmAccess.session: one connection for a burst of TPM operations (a join
 * round), operations inside it still one after another, nothing held once it ends.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TpmAccess } from '../../../src/keystore/tpm-access.js';
import { TpmSigner } from '../../../src/keystore/tpm.js';
import { SocketTransport } from '../../../src/tpm/transport/socket.js';
import { startSim, type Sim } from './sim.js';

let sim: Sim;
let connects = 0;
const realConnect = SocketTransport.connect.bind(SocketTransport);

beforeAll(async () => {
  sim = await startSim();
  SocketTransport.connect = (...a: Parameters<typeof realConnect>) => {
    connects++;
    return realConnect(...a);
  };
});
afterAll(async () => {
  SocketTransport.connect = realConnect;
  await sim?.stop();
});

describe('TpmAccess.session', () => {
  it('runs key creation, signatures, nested and concurrent operations on one connection', async () => {
    connects = 0;
    const access = new TpmAccess(sim.tcti);
    const out = await access.session(async () => {
      const key = await TpmSigner.create(access);
      // Concurrent signatures queue on the session's connection (each loads, signs, flushes).
      const sigs = await Promise.all([1, 2, 3].map(() => key.sign(randomBytes(64))));
      // A run inside a run of the same session runs directly (no deadlock).
      const nested = await access.run(async (tpm) => access.run(async (inner) => inner === tpm));
      return { key, sigs, nested };
    });
    expect(connects).toBe(1);
    expect(out.nested).toBe(true);
    expect(out.sigs).toHaveLength(3);
    // After the session: the key still works, on a connection of its own.
    await out.key.sign(randomBytes(64));
    expect(connects).toBe(2);
  });

  it('closes its connection when the burst fails, and the TPM is usable again at once', async () => {
    connects = 0;
    const access = new TpmAccess(sim.tcti);
    await expect(
      access.session(async () => {
        await access.run((tpm) => tpm.getRandom(8));
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    // swtpm serves one client at a time: this would hang if the session's socket were still open.
    const r = await access.run((tpm) => tpm.getRandom(8));
    expect(r).toHaveLength(8);
    expect(connects).toBe(2);
  });
});
