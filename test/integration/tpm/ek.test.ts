import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ActivateCredential, MakeCredential } from '../../../src/tpm/commands/object.js';
import { PolicyOR, PolicySecret } from '../../../src/tpm/commands/session.js';
import { TPM_ALG, TPM_RH } from '../../../src/tpm/constants.js';
import { makeCredential } from '../../../src/tpm/crypto/credential.js';
import { EK_POLICY_C, ekPolicyA } from '../../../src/tpm/crypto/policy.js';
import { TPM_RC, isTpmRc } from '../../../src/tpm/errors.js';
import type { EkKind } from '../../../src/tpm/ek.js';
import { publicKeySpki } from '../../../src/tpm/structures/keys.js';
import { ekTemplateEccP384, ekTemplateRsa2048 } from '../../../src/tpm/templates.js';
import type { Tpm } from '../../../src/tpm/tpm.js';
import type { TpmKey } from '../../../src/tpm/tpm.js';
import { closeSim, openSimWithAk } from './sim.js';
import type { Sim } from './sim.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const EMPTY = new Uint8Array(0);

describe('EK, MakeCredential and ActivateCredential against swtpm', () => {
  let sim: Sim;
  let tpm: Tpm;
  let srk: TpmKey;
  let ak: TpmKey;

  beforeAll(async () => void ({ sim, tpm, srk, ak } = await openSimWithAk()));
  afterAll(() => closeSim({ sim, tpm, srk, ak }));

  it('NV_Read: the EK certificates swtpm_localca issued, for the EK public keys', async () => {
    const issuer = new X509Certificate(await readFile(join(sim.caDir, 'issuercert.pem')));
    for (const kind of ['rsa-2048', 'ecc-p384'] as const) {
      const cert = await tpm.readEkCertificate(kind);
      expect(cert?.kind).toBe(kind);
      const x509 = new X509Certificate(Buffer.from(cert!.der));
      expect(x509.verify(issuer.publicKey)).toBe(true);
      const ek = await tpm.readEkPublic(kind);
      expect(hex(x509.publicKey.export({ type: 'spki', format: 'der' }))).toBe(hex(publicKeySpki(ek.public.value)));
    }
    expect((await tpm.readEkCertificate())?.kind).toBe('rsa-2048');
    expect(await tpm.readEkCertificate('ecc-p256')).toBeUndefined();
  });

  it('CreatePrimary with the profile templates L-1 and H-3 recreates the persistent EKs', async () => {
    for (const [handle, template] of [
      [0x81010001, ekTemplateRsa2048()],
      [0x81010016, ekTemplateEccP384()],
    ] as const) {
      const persistent = await tpm.readPublic(handle);
      await tpm.withTransient(tpm.createPrimary(TPM_RH.ENDORSEMENT, template), async (created) => {
        expect(hex(created.name)).toBe(hex(persistent.name));
      });
    }
  });

  it('MakeCredential (TPM) → ActivateCredential with the RSA EK (PolicySecret session)', async () => {
    const ek = await tpm.readEkPublic('rsa-2048');
    const secret = randomBytes(32);
    const made = await tpm.run(MakeCredential, { handle: ek, credential: secret, objectName: ak.name });
    const got = await tpm.activateCredential(ak, ek, made.credentialBlob, made.secret);
    expect(hex(got)).toBe(hex(secret));
    expect(await tpm.getHandles(0x02000000)).toEqual([]); // the policy session is gone
  });

  for (const kind of ['rsa-2048', 'ecc-p256', 'ecc-p384'] as EkKind[]) {
    it(`software makeCredential → ActivateCredential with the ${kind} EK`, async () => {
      await tpm.withTransient(tpm.readEkPublic(kind), async (ek) => {
        const secret = randomBytes(16);
        const { credentialBlob, secret: encSecret } = makeCredential(ek.public.value, ak.name, secret);
        expect(hex(await tpm.activateCredential(ak, ek, credentialBlob, encSecret))).toBe(hex(secret));
        // bound to the AK's Name: another object cannot activate it
        const other = makeCredential(ek.public.value, srk.name, secret);
        const err = await tpm.activateCredential(ak, ek, other.credentialBlob, other.secret).catch((e: unknown) => e);
        expect(isTpmRc(err, TPM_RC.INTEGRITY)).toBe(true);
      });
    });
  }

  it('the P-384 EK also activates through its PolicyB (PolicySecret then PolicyOR)', async () => {
    const ek = await tpm.readEkPublic('ecc-p384');
    const secret = randomBytes(16);
    const cred = makeCredential(ek.public.value, ak.name, secret);
    const got = await tpm.withSession('policy', { hashAlg: TPM_ALG.SHA384 }, async (s) => {
      await tpm.run(PolicySecret, {
        authHandle: TPM_RH.ENDORSEMENT,
        policySession: s.handle,
        nonceTPM: s.nonceTPM,
        cpHashA: EMPTY,
        policyRef: EMPTY,
        expiration: 0,
      });
      await tpm.run(PolicyOR, {
        policySession: s.handle,
        pHashList: [ekPolicyA(TPM_ALG.SHA384), Buffer.from(EK_POLICY_C[TPM_ALG.SHA384]!, 'hex')],
      });
      return tpm.run(ActivateCredential, {
        activateHandle: ak,
        keyHandle: { handle: ek.handle, name: ek.name, auth: s },
        credentialBlob: cred.credentialBlob,
        secret: cred.secret,
      });
    });
    expect(hex(got.certInfo)).toBe(hex(secret));
  });
});
