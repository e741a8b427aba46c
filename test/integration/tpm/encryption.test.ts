import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { NV_Read, NV_Write } from '../../../src/tpm/commands/nv.js';
import { Create } from '../../../src/tpm/commands/object.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import type { TpmKey } from '../../../src/tpm/tpm.js';
import { signingKeyTemplateEccP256 } from '../../../src/tpm/templates.js';
import type { TpmTransport } from '../../../src/tpm/transport/transport.js';
import { startSim } from './sim.js';
import type { Sim } from './sim.js';

/** Records what crosses the wire, to show secrets are not in it. */
class Recorder implements TpmTransport {
  sent: Buffer[] = [];
  received: Buffer[] = [];
  constructor(private readonly inner: TpmTransport) {}
  async send(cmd: Uint8Array): Promise<Uint8Array> {
    this.sent.push(Buffer.from(cmd));
    const r = await this.inner.send(cmd);
    this.received.push(Buffer.from(r));
    return r;
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  saw(secret: Uint8Array): boolean {
    return [...this.sent, ...this.received].some((b) => b.includes(Buffer.from(secret)));
  }
}

const EMPTY = new Uint8Array(0);
const INDEX = 0x01500030;

describe('parameter encryption (salted AES-CFB sessions) against swtpm', () => {
  let sim: Sim;
  let wire: Recorder;
  let tpm: Tpm;
  let srk: TpmKey;

  beforeAll(async () => {
    sim = await startSim();
    wire = new Recorder((await Tpm.open(sim.tcti)).transport);
    tpm = new Tpm(wire);
    srk = await tpm.createSrk();
  });
  afterAll(async () => {
    if (tpm && srk) await tpm.flush(srk).catch(() => undefined);
    await tpm?.close();
    await sim?.stop();
  });

  it('Create: the new key authValue travels encrypted (decrypt session authorizing the parent)', async () => {
    const userAuth = randomBytes(20);
    const created = await tpm.withSession(
      'hmac',
      { salt: { handle: srk.handle, public: srk.public.value }, decrypt: true },
      (s) =>
        tpm.run(Create, {
          parentHandle: { handle: srk.handle, name: srk.name, auth: s },
          inSensitive: { value: { userAuth, data: EMPTY } },
          inPublic: { value: signingKeyTemplateEccP256() },
          outsideInfo: EMPTY,
          creationPCR: [],
        }),
    );
    expect(wire.saw(userAuth)).toBe(false);
    // the TPM decrypted it correctly: the key signs with that authValue
    await tpm.withTransient(
      tpm.load(srk, { private: created.outPrivate, public: created.outPublic }, userAuth),
      (key) => tpm.sign(key, createHash('sha256').update('x').digest()),
    );
  });

  it('NV_Write / NV_Read with an HMAC authorization plus a separate decrypt / encrypt session', async () => {
    const nvAuth = Buffer.from('nv-secret');
    const info = await tpm.nvDefine(INDEX, 64, { authValue: nvAuth });
    const data = randomBytes(64);
    const salt = { handle: srk.handle, public: srk.public.value };
    // NV_Write has no response parameter and NV_Read no TPM2B command parameter first, so
    // one session encrypts the way in and another the way out.
    await tpm.withSession('hmac', {}, (auth) =>
      tpm.withSession('hmac', { salt, decrypt: true }, (dec) =>
        tpm.withSession('hmac', { salt, encrypt: true }, async (enc) => {
          await tpm.run(
            NV_Write,
            {
              authHandle: { handle: INDEX, name: info.name, authValue: nvAuth, auth },
              nvIndex: { handle: INDEX, name: info.name },
              data,
              offset: 0,
            },
            { sessions: [dec] },
          );
          const written = await tpm.nvReadPublic(INDEX);
          const { data: back } = await tpm.run(
            NV_Read,
            {
              authHandle: { handle: INDEX, name: written.name, authValue: nvAuth, auth },
              nvIndex: { handle: INDEX, name: written.name },
              size: 64,
              offset: 0,
            },
            { sessions: [enc] },
          );
          expect(Buffer.from(back).equals(data)).toBe(true);
        }),
      ),
    );
    expect(wire.saw(data)).toBe(false);
    await tpm.nvUndefine(INDEX);
  });

  it('without encryption the same data is visible on the wire (the check above means something)', async () => {
    const info = await tpm.nvDefine(INDEX, 32, {});
    const data = randomBytes(32);
    await tpm.nvWrite(INDEX, data);
    expect(wire.saw(data)).toBe(true);
    void info;
    await tpm.nvUndefine(INDEX);
  });
});
