import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, createPublicKey, randomBytes, verify as nodeVerify } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CertifyCreation, Hash, VerifySignature } from '../../../src/tpm/commands/attestation.js';
import { Create } from '../../../src/tpm/commands/object.js';
import { TPM_ALG, TPM_RH, TPM_ST } from '../../../src/tpm/constants.js';
import { eccSignatureToDer, verifyTpmSignature } from '../../../src/tpm/crypto/signature.js';
import { objectName } from '../../../src/tpm/name.js';
import { marshal } from '../../../src/tpm/structures/codec.js';
import { publicKeySpki } from '../../../src/tpm/structures/keys.js';
import { isEccSignature, tpmtSignature } from '../../../src/tpm/structures/signature.js';
import { SCHEME_NULL } from '../../../src/tpm/structures/schemes.js';
import type { Tpm } from '../../../src/tpm/tpm.js';
import type { TpmKey } from '../../../src/tpm/tpm.js';
import { signingKeyTemplateEccP256 } from '../../../src/tpm/templates.js';
import { closeSim, openSimWithAk, tpm2 } from './sim.js';
import type { Sim } from './sim.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sha256 = (...b: Uint8Array[]): Buffer => b.reduce((h, x) => h.update(x), createHash('sha256')).digest();

describe('TPM attestation and signing against swtpm', () => {
  let sim: Sim;
  let tpm: Tpm;
  let srk: TpmKey;
  let ak: TpmKey;

  beforeAll(async () => void ({ sim, tpm, srk, ak } = await openSimWithAk()));
  afterAll(() => closeSim({ sim, tpm, srk, ak }));

  it('Quote: verifies in software and with tpm2_checkquote', async () => {
    await tpm.pcrExtend(16, [{ hashAlg: TPM_ALG.SHA256, digest: sha256(Buffer.from('sigil')) }]);
    const nonce = randomBytes(32);
    const { attest, signature } = await tpm.quote(ak, nonce, [{ hash: TPM_ALG.SHA256, pcrs: [0, 7, 16] }]);
    expect(attest.value.type).toBe(TPM_ST.ATTEST_QUOTE);
    expect(hex(attest.value.extraData)).toBe(hex(nonce));
    expect(verifyTpmSignature(ak.public.value, attest.bytes, signature)).toBe(true);
    // the quoted digest is H(PCR0 ‖ PCR7 ‖ PCR16) of the values PCR_Read returns
    const { values } = await tpm.pcrRead([{ hash: TPM_ALG.SHA256, pcrs: [0, 7, 16] }]);
    if (attest.value.type !== TPM_ST.ATTEST_QUOTE) throw new Error('not a quote');
    expect(hex(attest.value.attested.pcrDigest)).toBe(hex(sha256(...values.map((v) => v.digest))));
    // a flipped byte fails
    const bad = Buffer.from(attest.bytes);
    bad[bad.length - 1]! ^= 1;
    expect(verifyTpmSignature(ak.public.value, bad, signature)).toBe(false);

    await writeFile(
      join(sim.dir, 'ak.pem'),
      createPublicKey({ key: publicKeySpki(ak.public.value), format: 'der', type: 'spki' }).export({
        type: 'spki',
        format: 'pem',
      }),
    );
    await writeFile(join(sim.dir, 'quote.msg'), attest.bytes);
    await writeFile(join(sim.dir, 'quote.sig'), marshal(tpmtSignature, signature));
    await writeFile(join(sim.dir, 'pcrs.bin'), Buffer.concat(values.map((v) => v.digest)));
    const out = await tpm2(sim, 'tpm2_checkquote', [
      '-u',
      'ak.pem',
      '-m',
      'quote.msg',
      '-s',
      'quote.sig',
      '-g',
      'sha256',
      '-q',
      hex(nonce),
      '-l',
      'sha256:0,7,16',
      '-f',
      'pcrs.bin',
    ]);
    expect(out).toMatch(/sha256/);
    // and tpm2_checkquote rejects another nonce
    await expect(
      tpm2(sim, 'tpm2_checkquote', [
        '-u',
        'ak.pem',
        '-m',
        'quote.msg',
        '-s',
        'quote.sig',
        '-g',
        'sha256',
        '-q',
        hex(randomBytes(32)),
      ]),
    ).rejects.toThrow();
  });

  it('Certify: the AK attests the identity key it certifies', async () => {
    const blob = await tpm.createSigningKey(srk);
    await tpm.withTransient(tpm.load(srk, blob), async (key) => {
      const nonce = randomBytes(16);
      const { attest, signature } = await tpm.certify(key, ak, nonce);
      if (attest.value.type !== TPM_ST.ATTEST_CERTIFY) throw new Error('not a certify');
      expect(hex(attest.value.attested.name)).toBe(hex(objectName(blob.public)));
      expect(hex(attest.value.qualifiedSigner)).not.toBe('');
      expect(verifyTpmSignature(ak.public.value, attest.bytes, signature)).toBe(true);
    });
  });

  it('Sign: an ECDSA signature that node:crypto verifies (DER and P1363)', async () => {
    await tpm.withTransient(tpm.load(srk, await tpm.createSigningKey(srk)), async (key) => {
      const msg = Buffer.from('hello tpm');
      const sig = await tpm.sign(key, sha256(msg));
      if (!isEccSignature(sig)) throw new Error('not ECDSA');
      const spki = createPublicKey({ key: publicKeySpki(key.public.value), format: 'der', type: 'spki' });
      expect(nodeVerify('sha256', msg, spki, eccSignatureToDer(sig))).toBe(true);
      expect(verifyTpmSignature(key.public.value, msg, sig)).toBe(true);
    });
  });

  it('VerifySignature: the TPM checks a signature made by a loaded key', async () => {
    await tpm.withTransient(tpm.load(srk, await tpm.createSigningKey(srk)), async (key) => {
      const digest = sha256(Buffer.from('x'));
      const signature = await tpm.sign(key, digest);
      const { validation } = await tpm.run(VerifySignature, { keyHandle: key, digest, signature });
      expect(validation.tag).toBe(TPM_ST.VERIFIED);
    });
  });

  it('Hash: a restricted AK signs only with the TPM hashcheck ticket', async () => {
    const data = Buffer.from('external data');
    const { outHash, validation } = await tpm.run(Hash, { data, hashAlg: TPM_ALG.SHA256, hierarchy: TPM_RH.OWNER });
    expect(hex(outHash)).toBe(hex(sha256(data)));
    expect(validation.tag).toBe(TPM_ST.HASHCHECK);
  });

  it('CertifyCreation: the AK attests the creation data of a key this TPM made', async () => {
    const created = await tpm.run(Create, {
      parentHandle: srk,
      inSensitive: { value: { userAuth: new Uint8Array(0), data: new Uint8Array(0) } },
      inPublic: { value: signingKeyTemplateEccP256() },
      outsideInfo: new Uint8Array(0),
      creationPCR: [],
    });
    await tpm.withTransient(tpm.load(srk, { private: created.outPrivate, public: created.outPublic }), async (key) => {
      const r = await tpm.run(CertifyCreation, {
        signHandle: ak,
        objectHandle: key,
        qualifyingData: new Uint8Array(0),
        creationHash: created.creationHash,
        inScheme: SCHEME_NULL,
        creationTicket: created.creationTicket,
      });
      if (r.certifyInfo.value.type !== TPM_ST.ATTEST_CREATION) throw new Error('not creation info');
      expect(hex(r.certifyInfo.value.attested.creationHash)).toBe(hex(sha256(created.creationData.bytes)));
      expect(verifyTpmSignature(ak.public.value, r.certifyInfo.bytes, r.signature)).toBe(true);
    });
  });
});
