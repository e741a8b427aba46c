/**
 * Forgeries a hostile agent can make around GENUINE TPM evidence, with real swtpm TPMs, over real
 * HTTPS, each refused with its code and one audit row (test/helpers/tpm-join.ts rewrites the
 * answer to the challenge the way such an agent would):
 *   - forged pcr_values: a machine booted with secure boot off quotes its real PCRs (a genuine
 *     quote), then reports the golden PCR 7 of lab-gateway-v1 in pcr_values. Only the PCR digest
 *     check (attest/quote.ts checkPcrDigest) stands between it and a join as a trusted boot.
 *   - an unquoted PCR value reported beside the quoted ones (join/tpm/server.ts reportedPcrs).
 *   - a Certify over another object: the AK certifies a second TPM key, not the identity key the
 *     join names (attest/certify.ts certify_key_mismatch).
 *   - a duplicable AK (fixedTPM and fixedParent clear; a TPM will not clear fixedTPM alone under a
 *     fixedTPM parent, TPM_RC_ATTRIBUTES): the TPM itself reports the attributes in the public area
 *     that credential activation binds to the EK.
 * The single-bit attribute cases the TPM refuses to create are in test/unit/attest/attribute-attacks.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeSignedAttest } from '../../src/attest/structures.js';
import { akTemplate } from '../../src/join/tpm/agent.js';
import { OWNER_PARENT, TpmAccess } from '../../src/keystore/tpm-access.js';
import { TpmSigner } from '../../src/keystore/tpm.js';
import { TPMA_OBJECT } from '../../src/tpm/constants.js';
import type { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { createLocalCa, createSwtpm, simulateBoot, type SharedLocalCa, type SwtpmInstance } from '../helpers/swtpm.js';
import { expectTpmRefused, httpsClient, setTpmRules, tpmJoin, tpmRule } from '../helpers/tpm-join.js';
import { startIssuer, type Harness } from './harness.js';

/** PCR 7 (SHA-256) of the default simulated boot, which firmware-profiles/lab-gateway-v1.yaml pins. */
const GOLDEN_PCR7 = 'e57982bc341134d20d7c93139b68bc108becc4522123ac085644feca2e338a18';

let h: Harness;
let client: HttpsIssuerClient;
let ca: SharedLocalCa;
let gw: SwtpmInstance; // default boot: matches the profile
let insecure: SwtpmInstance; // booted with secure boot off: PCR 7 differs

const RACKS = (): string =>
  tpmRule('racks', `ek_ca_files: [${ca.rootCert}, ${ca.issuerCert}]\nfirmware_profiles: [lab-gateway-v1]`);

beforeAll(async () => {
  ca = await createLocalCa();
  [gw, insecure] = await Promise.all([createSwtpm({ localCa: ca }), createSwtpm({ localCa: ca })]);
  await Promise.all([gw.start(), insecure.start()]);
  await simulateBoot(gw);
  await simulateBoot(insecure, { secureBoot: false });
  h = await startIssuer();
  client = httpsClient(h);
  await setTpmRules(h, RACKS());
}, 180_000);

afterAll(async () => {
  client?.close();
  await h?.close();
  await Promise.all([gw, insecure].map((t) => t?.destroy()));
  ca?.destroy();
});

describe('attack: forged evidence around a genuine quote', () => {
  it('the insecure machine reports its PCR 7 truthfully and is refused by the profile (the baseline)', async () => {
    const err = await expectTpmRefused(h, () => tpmJoin(h, client, insecure), 'pcr_mismatch');
    expect(err.message).toMatch(/PCR 7/);
  });

  it('forged pcr_values: the golden PCR 7 reported under a quote of the real one is pcr_digest_mismatch', async () => {
    let reported = '';
    const err = await expectTpmRefused(
      h,
      () =>
        tpmJoin(h, client, insecure, {
          tamper: (a) => {
            const values = a.pcr_values as Array<{ bank: string; pcr: number; digest: string }>;
            const forged = values.map((v) => (v.bank === 'sha256' && v.pcr === 7 ? { ...v, digest: GOLDEN_PCR7 } : v));
            expect(forged).not.toEqual(values); // PCR 7 was selected and really differed
            reported = JSON.stringify(forged);
            return { ...a, pcr_values: forged };
          },
        }),
      'pcr_digest_mismatch',
    );
    expect(reported).toContain(GOLDEN_PCR7);
    expect(err.message).toMatch(/do not hash to the digest the TPM quoted/);
  });

  it('a PCR the issuer did not ask for, reported beside the quoted ones, is pcr_digest_mismatch', async () => {
    // The digest covers only the quoted selection, so an extra value would slip into the
    // instance's recorded facts (pcrs) unverified if the issuer did not refuse it outright.
    const err = await expectTpmRefused(
      h,
      () =>
        tpmJoin(h, client, gw, {
          tamper: (a) => ({
            ...a,
            pcr_values: [...(a.pcr_values as unknown[]), { bank: 'sha256', pcr: 23, digest: 'ab'.repeat(32) }],
          }),
        }),
      'pcr_digest_mismatch',
    );
    expect(err.message).toMatch(/sha256 PCR 23 is reported but was not asked for/);
  });

  it('a Certify over another TPM object by the same AK is certify_key_mismatch', async () => {
    const access = new TpmAccess(gw.tcti);
    const ak = await access.run((tpm) => access.withParent(tpm, OWNER_PARENT, (srk) => tpm.create(srk, akTemplate())));
    const decoy = await TpmSigner.create(access); // TPM-resident too, but not the key the CSR names
    const err = await expectTpmRefused(
      h,
      () =>
        tpmJoin(
          h,
          client,
          gw,
          {
            agent: { ak },
            tamper: async (a, challenge) => {
              const nonce = Buffer.from(challenge.nonce, 'base64url');
              const certify = await access.run(async (tpm) => {
                const loaded = await access.withParent(tpm, OWNER_PARENT, (srk) => tpm.load(srk, ak));
                return tpm.withTransient(loaded, (k) => decoy.loadWith(tpm, (key) => tpm.certify(key, k, nonce)));
              });
              return { ...a, certify: encodeSignedAttest(certify) };
            },
          },
          access,
        ),
      'certify_key_mismatch',
    );
    expect(err.message).toMatch(/names another TPM object than key_public/);
  });

  it('a duplicable AK (created without fixedTPM and fixedParent) is ak_attributes_invalid naming both', async () => {
    const t = akTemplate();
    const err = await expectTpmRefused(
      h,
      () =>
        tpmJoin(h, client, gw, {
          agent: {
            akTemplate: {
              ...t,
              objectAttributes: t.objectAttributes & ~(TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent),
            },
          },
        }),
      'ak_attributes_invalid',
    );
    expect(err.message).toMatch(/lacks fixedTPM, fixedParent:/);
  });

  it('the genuine gateway joins with the same rule (every refusal above is the forgery, not the setup)', async () => {
    const r = await tpmJoin(h, client, gw);
    expect(r.payload.result.instance_id).toMatch(/^tpm-/);
  });
});
