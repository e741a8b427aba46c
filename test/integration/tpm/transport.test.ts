import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { TPM_ALG } from '../../../src/tpm/constants.js';
import { verifyTpmSignature } from '../../../src/tpm/crypto/signature.js';
import { DeviceTransport } from '../../../src/tpm/transport/device.js';
import { TctiTransport } from '../../../src/tpm/transport/tcti.js';
import { SocketTransport } from '../../../src/tpm/transport/socket.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import { startSim } from './sim.js';
import type { Sim } from './sim.js';

/** The same short conversation over any transport: SRK, AK, quote, verify, flush. */
async function conversation(tpm: Tpm): Promise<void> {
  const srk = await tpm.createSrk();
  try {
    await tpm.withTransient(tpm.load(srk, await tpm.createAk(srk)), async (ak) => {
      const nonce = createHash('sha256').update('n').digest();
      const q = await tpm.quote(ak, nonce, [{ hash: TPM_ALG.SHA256, pcrs: [0] }]);
      expect(verifyTpmSignature(ak.public.value, q.attest.bytes, q.signature)).toBe(true);
    });
  } finally {
    await tpm.flush(srk);
  }
}

describe('TPM transports', () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = await startSim();
  });
  afterAll(async () => {
    await sim?.stop();
  });

  it('socket (TCP): concurrent sends are serialized, one command in flight', async () => {
    const tpm = await Tpm.open(sim.tcti);
    expect(tpm.transport).toBeInstanceOf(SocketTransport);
    try {
      const all = await Promise.all(Array.from({ length: 25 }, () => tpm.getRandom(16)));
      expect(new Set(all.map((b) => Buffer.from(b).toString('hex'))).size).toBe(25);
      await conversation(tpm);
    } finally {
      await tpm.close();
    }
  });

  it('TCTI loader (libtss2-tctildr via koffi) with swtpm:host=…,port=…', async () => {
    const tpm = await Tpm.open(sim.tcti, { native: true });
    expect(tpm.transport).toBeInstanceOf(TctiTransport);
    try {
      await conversation(tpm);
      expect((await Promise.all([tpm.getRandom(8), tpm.getRandom(8)])).length).toBe(2);
    } finally {
      await tpm.close();
    }
  });

  it('a TCTI that cannot initialise is a clear error', async () => {
    await expect(TctiTransport.open('mssim:host=127.0.0.1,port=1')).rejects.toThrow(
      /TCTI "mssim:host=127.0.0.1,port=1" could not be initialised/,
    );
  });

  it('socket (unix): swtpm:path=…', async () => {
    const unixSim = await startSim({ unix: true });
    try {
      const tpm = await Tpm.open(unixSim.tcti);
      try {
        await conversation(tpm);
      } finally {
        await tpm.close();
      }
    } finally {
      await unixSim.stop();
    }
  });

  it('device: a missing device is config_invalid naming it', async () => {
    const path = '/dev/sigil-no-such-tpm';
    expect(existsSync(path)).toBe(false);
    await expect(DeviceTransport.open(path)).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining(path),
    });
  });

  it('a dead connection fails pending and later commands with unavailable', async () => {
    const tpm = await Tpm.open(sim.tcti);
    await tpm.close();
    await expect(tpm.getRandom(4)).rejects.toMatchObject({ code: 'tpm_unavailable' });
  });
});
