import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import {
  PolicyAuthValue,
  PolicyGetDigest,
  PolicyOR,
  PolicyPassword,
  PolicySecret,
} from '../../../src/tpm/commands/session.js';
import { Sign } from '../../../src/tpm/commands/attestation.js';
import { Create } from '../../../src/tpm/commands/object.js';
import { TPMA_OBJECT, TPM_ALG, TPM_RH } from '../../../src/tpm/constants.js';
import { EK_POLICY_C, ekPolicyA, ekPolicyB, policyAuthValue, policyStart } from '../../../src/tpm/crypto/policy.js';
import { TPM_RC, TpmError, isTpmRc } from '../../../src/tpm/errors.js';
import { PASSWORD } from '../../../src/tpm/session.js';
import type { Session } from '../../../src/tpm/session.js';
import { akTemplateEccP256, signingKeyTemplateEccP256 } from '../../../src/tpm/templates.js';
import { NULL_HASHCHECK } from '../../../src/tpm/structures/tickets.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import type { TpmKey } from '../../../src/tpm/tpm.js';
import { startSim } from './sim.js';
import type { Sim } from './sim.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const digest = createHash('sha256').update('msg').digest();
const EMPTY = new Uint8Array(0);
const ECDSA = { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 } as const;

describe('TPM sessions against swtpm', () => {
  let sim: Sim;
  let tpm: Tpm;
  let srk: TpmKey;
  let key: TpmKey;
  const auth = Buffer.from('s3cret');

  beforeAll(async () => {
    sim = await startSim();
    tpm = await Tpm.open(sim.tcti);
    srk = await tpm.createSrk();
    // noDA: the wrong-password checks below must not drive swtpm into dictionary-attack lockout
    const template = signingKeyTemplateEccP256();
    template.objectAttributes |= TPMA_OBJECT.noDA;
    key = await tpm.load(srk, await tpm.create(srk, template, { userAuth: auth }), auth);
  });
  afterAll(async () => {
    if (tpm) for (const k of [key, srk]) if (k) await tpm.flush(k).catch(() => undefined);
    await tpm?.close();
    await sim?.stop();
  });

  const sign = (session: Session, authValue: Uint8Array) =>
    tpm.run(Sign, {
      keyHandle: { handle: key.handle, name: key.name, authValue, auth: session },
      digest,
      inScheme: ECDSA,
      validation: NULL_HASHCHECK,
    });

  it('StartAuthSession (HMAC, unbound, unsalted) authorizes with the key authValue; nonces roll', async () => {
    await tpm.withSession('hmac', {}, async (s) => {
      const n0 = hex(s.nonceTPM);
      await sign(s, auth);
      const n1 = hex(s.nonceTPM);
      await sign(s, auth);
      expect(new Set([n0, n1, hex(s.nonceTPM)]).size).toBe(3);
      // a wrong authValue fails in session 1, decoded from the format-one code
      const err = await sign(s, Buffer.from('wrong')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TpmError);
      expect(isTpmRc(err, TPM_RC.BAD_AUTH)).toBe(true);
      expect((err as TpmError).decoded.session).toBe(1);
    });
    // trailing zeros of an authValue are not part of it (Part 1 §19.6.4)
    await tpm.withSession('hmac', {}, (s) => sign(s, Buffer.concat([auth, Buffer.alloc(3)])));
  });

  it('a bound session (KDFa session key) authorizes its bind entity and another entity', async () => {
    await tpm.withSession('hmac', { bind: { handle: key.handle, name: key.name, authValue: auth } }, async (s) => {
      const { signature } = await sign(s, auth);
      expect(signature.sigAlg).toBe(TPM_ALG.ECDSA);
      // the SRK is not the bind entity: its (empty) authValue joins the HMAC key
      const created = await tpm.run(Create, {
        parentHandle: { handle: srk.handle, name: srk.name, auth: s },
        inSensitive: { value: { userAuth: EMPTY, data: EMPTY } },
        inPublic: { value: akTemplateEccP256() },
        outsideInfo: EMPTY,
        creationPCR: [],
      });
      expect(created.outPrivate.length).toBeGreaterThan(0);
    });
  });

  it('a salted session (ECC SRK salt via KDFe, RSA EK salt via OAEP) authorizes', async () => {
    await tpm.withSession('hmac', { salt: { handle: srk.handle, public: srk.public.value } }, (s) => sign(s, auth));
    const ek = await tpm.readEkPublic('rsa-2048');
    await tpm.withSession('hmac', { salt: { handle: ek.handle, public: ek.public.value } }, (s) => sign(s, auth));
  });

  it('PolicySecret + PolicyGetDigest: trial digests equal the EK profile PolicyA / PolicyB', async () => {
    for (const alg of [TPM_ALG.SHA256, TPM_ALG.SHA384]) {
      await tpm.withSession('trial', { hashAlg: alg }, async (s) => {
        await tpm.run(PolicySecret, {
          authHandle: TPM_RH.ENDORSEMENT,
          policySession: s.handle,
          nonceTPM: EMPTY,
          cpHashA: EMPTY,
          policyRef: EMPTY,
          expiration: 0,
        });
        expect(hex((await tpm.run(PolicyGetDigest, { policySession: s.handle })).policyDigest)).toBe(
          hex(ekPolicyA(alg)),
        );
        await tpm.run(PolicyOR, {
          policySession: s.handle,
          pHashList: [ekPolicyA(alg), Buffer.from(EK_POLICY_C[alg]!, 'hex')],
        });
        expect(hex((await tpm.run(PolicyGetDigest, { policySession: s.handle })).policyDigest)).toBe(
          hex(ekPolicyB(alg)),
        );
      });
    }
    expect(hex(ekPolicyA(TPM_ALG.SHA256))).toBe('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa');
  });

  it('PolicyAuthValue / PolicyPassword sessions authorize a key whose policy demands its authValue', async () => {
    const template = signingKeyTemplateEccP256();
    template.objectAttributes &= ~TPMA_OBJECT.userWithAuth; // USER role only through the policy
    template.objectAttributes |= TPMA_OBJECT.noDA;
    template.authPolicy = policyAuthValue(TPM_ALG.SHA256, policyStart(TPM_ALG.SHA256));
    const pw = Buffer.from('policy-pw');
    await tpm.withTransient(tpm.load(srk, await tpm.create(srk, template, { userAuth: pw }), pw), async (k) => {
      const signWith = (session: Session, authValue: Uint8Array) =>
        tpm.run(Sign, {
          keyHandle: { handle: k.handle, name: k.name, authValue, auth: session },
          digest,
          inScheme: ECDSA,
          validation: NULL_HASHCHECK,
        });
      await tpm.withSession('policy', {}, async (s) => {
        await tpm.run(PolicyAuthValue, { policySession: s.handle });
        s.policyAuthValue = true; // the HMAC key now includes the authValue (Part 1 §19.6.5)
        const err = await signWith(s, Buffer.from('nope')).catch((e: unknown) => e);
        expect(isTpmRc(err, TPM_RC.BAD_AUTH)).toBe(true);
        await signWith(s, pw); // a failed authorization leaves the policy state; success resets it
      });
      await tpm.withSession('policy', {}, async (s) => {
        await tpm.run(PolicyPassword, { policySession: s.handle });
        s.policyPassword = true; // the authValue travels in the clear instead of an HMAC
        await signWith(s, pw);
      });
      // a password session cannot: userWithAuth is clear
      const err = await signWith(PASSWORD, pw).catch((e: unknown) => e);
      expect(isTpmRc(err, TPM_RC.AUTH_UNAVAILABLE)).toBe(true);
    });
  });

  it('a session used by a failing command is flushed by the helper', async () => {
    let handle = 0;
    await expect(
      tpm.withSession('hmac', {}, async (s) => {
        handle = s.handle;
        await sign(s, Buffer.from('wrong'));
      }),
    ).rejects.toThrow(/BAD_AUTH/);
    const loaded = await tpm.getHandles(0x02000000);
    expect(loaded).not.toContain(handle);
  });
});
