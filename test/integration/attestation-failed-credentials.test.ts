/**
 * A TPM machine whose latest attestation failed under `on_attestation_failure: refuse` gets no
 * credentials of any kind until a quote matches again (review of issue #16). Before, a renewal
 * refused with `pcr_mismatch` left the instance unlocked and its identity valid, and the
 * `credential` and `workload` operations — which checked only expiry, locks and generation —
 * went on issuing JWT-SVIDs and SSH certificates (which no CRL can revoke) and database
 * certificates. Real swtpm, real issuer over HTTPS; the PCR is extended and reset with tpm2-tools.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCredentialRequest, type CredentialAskFields } from '../../src/agent/credential-request.js';
import { namedSigner } from '../../src/agent/named-signer.js';
import { renewalBinding } from '../../src/attest/binding.js';
import type { AgentSettings } from '../../src/join/registry.js';
import { saveAk } from '../../src/join/tpm/ak-store.js';
import { freshTpmEvidence, saveJoinAttestation } from '../../src/join/tpm/fresh-evidence.js';
import { attestRenewalKey } from '../../src/join/tpm/key-attestation.js';
import type { TpmJoinAgent } from '../../src/join/tpm/agent.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import { TpmSigner } from '../../src/keystore/tpm.js';
import { buildCsr } from '../../src/pki/csr.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { signJws } from '../../src/protocol/jws.js';
import { TYP_REQUEST } from '../../src/protocol/messages.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { formatAuthorizedKey, sshPublicKeyFromKeyObject } from '../../src/ssh/public-key.js';
import type { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { newRequestId } from '../../src/util/secret.js';
import { installLabProfiles } from '../helpers/firmware-boot.js';
import {
  createLocalCa,
  createSwtpm,
  simulateBoot,
  tpm2Tool,
  type SharedLocalCa,
  type SwtpmInstance,
} from '../helpers/swtpm.js';
import { httpsClient, setTpmRules, tpmJoin, tpmRule, writeLog } from '../helpers/tpm-join.js';
import { expectRefusal, startIssuer, type Harness, type HttpResult } from './harness.js';
import { applyWorkloadPolicy, workloadEnvelope } from './workload-issuer-rig.js';
import { MemorySettings } from '../helpers/memory-settings.js';

let h: Harness;
let client: HttpsIssuerClient;
let ca: SharedLocalCa;
let gw: SwtpmInstance;
let logPath: string;
let restoreProfiles: (() => void) | undefined;

const ROLE = `kind: role
name: edge
spec:
  max_ttl: 24h
  allowed_outputs: [identity, jwt, ssh_user, database]
  jwt_audiences: [vault]
  ssh_logins: [deploy]
  db_users: [app]
`;

beforeAll(async () => {
  restoreProfiles = installLabProfiles(mkdtempSync(join(tmpdir(), 'sigil-attfail-profiles-')));
  ca = await createLocalCa();
  gw = await createSwtpm({ localCa: ca });
  await gw.start();
  logPath = writeLog(gw, 'boot.log', (await simulateBoot(gw)).eventLog);
  h = await startIssuer();
  client = httpsClient(h);
  await runAdminOp(h.ctx.stores, 'apply', { yaml: ROLE });
  await applyWorkloadPolicy(h);
}, 180_000);

afterAll(async () => {
  restoreProfiles?.();
  client?.close();
  await h?.close();
  await gw?.destroy();
  ca?.destroy();
});

interface Current {
  signer: TpmSigner;
  chain: string[];
}

/** A renewal to a new TPM key carrying a fresh quote of the machine's PCRs now. */
async function renewWithQuote(
  agent: TpmJoinAgent,
  joinRequestId: string,
  settings: AgentSettings,
  current: Current,
): Promise<{ res: HttpResult; requestId: string; next: TpmSigner }> {
  const next = await TpmSigner.create(current.signer.access);
  const requestId = newRequestId();
  const payload = {
    v: 1,
    op: 'renew',
    request_id: requestId,
    timestamp: h.ctx.now(),
    ...namedSigner(current.chain),
    csr: toPem('CERTIFICATE REQUEST', await buildCsr(next)),
    key_storage: 'tpm',
    key_attestation: await attestRenewalKey({ ak: agent.attestationKey(joinRequestId)!, key: next, requestId }),
    attestation: await freshTpmEvidence(agent, settings, renewalBinding(requestId, next.publicKeySpki())),
  };
  const x5c = current.chain.map((c) => fromPem(c, 'CERTIFICATE'));
  const res = await h.post('renew', await signJws(current.signer, TYP_REQUEST, payload, x5c));
  return { res, requestId, next };
}

/** What the issuer answers each kind of credential request, and a workload entries listing, signed by `current`. */
async function askEverything(current: Current): Promise<Record<string, number>> {
  const ask = async (fields: CredentialAskFields): Promise<number> => {
    const built = await buildCredentialRequest({
      current: current.signer,
      chainPem: current.chain,
      now: h.ctx.now(),
      fields,
    });
    return (await h.post('credential', built.envelope)).status;
  };
  const sshKey = formatAuthorizedKey(sshPublicKeyFromKeyObject(generateKeyPairSync('ed25519').publicKey).blob);
  const workload = await workloadEnvelope(
    { signer: current.signer, chainPem: current.chain },
    { action: 'entries' },
    h.ctx.now(),
  );
  return {
    jwt: await ask({ kind: 'jwt', audiences: ['vault'] }),
    ssh_user: await ask({ kind: 'ssh_user', public_key: sshKey }),
    database: await ask({
      kind: 'database',
      db_user: 'app',
      csr: toPem('CERTIFICATE REQUEST', await buildCsr(SoftwareSigner.generate())),
    }),
    workload: (await h.post('workload', workload.envelope)).status,
  };
}

describe('attestation failed (refuse): no credentials until a quote matches again', () => {
  it('refuses every credential kind and the workload operation after pcr_mismatch, and issues again after a matching renewal', async () => {
    await setTpmRules(
      h,
      tpmRule(
        'attested',
        `ek_ca_files: [${ca.rootCert}, ${ca.issuerCert}]\nfirmware_profiles: [lab-attested]\non_attestation_failure: refuse`,
      ),
    );
    const joined = await tpmJoin(h, client, gw, { eventLog: logPath, agent: { eventLog: logPath } });
    const settings = new MemorySettings();
    saveAk(settings, joined.agent.attestationKey(joined.requestId)!);
    saveJoinAttestation(settings, joined.agent.joinAttestation(joined.requestId));
    const instanceId = joined.payload.result.instance_id;
    let current: Current = { signer: joined.identity, chain: joined.payload.result.chain };

    // While the boot matches, everything is issued (the refusals below are the failure, not the setup).
    expect(await askEverything(current)).toEqual({ jwt: 200, ssh_user: 200, database: 200, workload: 200 });

    // The boot changes: a PCR of the profile is extended.
    await tpm2Tool(gw, 'tpm2_pcrextend', [`16:sha256=${'ab'.repeat(32)}`]);
    try {
      const refused = await renewWithQuote(joined.agent, joined.requestId, settings, current);
      expectRefusal(refused.res, 403, 'pcr_mismatch');
      const inst = (await h.ctx.stores.instances.get(instanceId))!;
      expect(inst.locked).toBe(false);
      expect(inst.facts.attestation).toMatchObject({ ok: false, check: 'pcr_mismatch' });

      // The identity is still within its dates, but nothing more is issued on it.
      expect(await askEverything(current)).toEqual({ jwt: 403, ssh_user: 403, database: 403, workload: 403 });
      const built = await buildCredentialRequest({
        current: current.signer,
        chainPem: current.chain,
        now: h.ctx.now(),
        fields: { kind: 'jwt', audiences: ['vault'] },
      });
      const res = await h.post('credential', built.envelope);
      expectRefusal(res, 403, 'pcr_mismatch');
      expect((res.json as { message: string }).message).toMatch(
        /last attestation of instance .* failed \(pcr_mismatch\): no credentials/,
      );
    } finally {
      await tpm2Tool(gw, 'tpm2_pcrreset', ['16']);
    }

    // The boot matches again: a renewal with a fresh quote succeeds, and credentials follow.
    const renewed = await renewWithQuote(joined.agent, joined.requestId, settings, current);
    expect(renewed.res.status).toBe(200);
    const next = h.identityFrom(renewed.res, 'renew', renewed.requestId, renewed.next);
    current = { signer: renewed.next, chain: next.chainPem };
    expect(await askEverything(current)).toEqual({ jwt: 200, ssh_user: 200, database: 200, workload: 200 });
  }, 120_000);
});
