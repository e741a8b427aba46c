/**
 * A factory line end to end: 20 swtpm devices from one manufacturer CA are provisioned in one
 * `sigil factory batch` (IDevID key created in and persisted by each TPM, IDevID certificate
 * from a `sigil factory init-ca` CA), the manifest is imported with `sigil ctl devices import`,
 * and every device joins with `x509`, its device key signing the challenge inside its TPM
 * (`key_uri: "tpm:handle=…;tcti=…"`), against an issuer over real HTTPS. Then the refusals, each
 * with its own code and one audit row, and `openssl verify` on every IDevID chain.
 *
 * Then tpm+x509: the same rule with `require_tpm` (EK certificate from the manufacturer CA,
 * and the EK the factory recorded), so every join also proves, by credential activation and
 * TPM2_Certify of the IDevID key by a fresh AK, that the IDevID key sits in that TPM.
 */
import { createHash, createPublicKey, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { openFactoryCa } from '../../src/factory/ca.js';
import { provisionDevice } from '../../src/factory/provision.js';
import { runJoinExchange, type JoinExchangeResult } from '../../src/join/exchange.js';
import type { JoinMethodAgent } from '../../src/join/types.js';
import { X509JoinAgent } from '../../src/join/x509/agent.js';
import { x509JoinAgentFromConfig } from '../../src/join/x509/config.js';
import { DeviceTpmBinding } from '../../src/join/x509/tpm-agent.js';
import { x509MachineId } from '../../src/join/x509/server.js';
import { SoftwareSigner, type DeviceSigner } from '../../src/keystore/index.js';
import { TpmAccesses } from '../../src/keystore/tpm-access.js';
import { TpmPersistentSigner } from '../../src/keystore/tpm-persistent.js';
import { spkiPin } from '../../src/pki/chain.js';
import type { Jws } from '../../src/protocol/jws.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { Tpm } from '../../src/tpm/tpm.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { sigil, sigilJson, tempDir } from '../helpers/cli.js';
import { factoryCaDir, startFleet, tpmDeviceAgent, type Fleet } from '../helpers/factory.js';
import type { OpensslCaDir } from '../helpers/openssl-pki.js';
import { openssl, OpensslPki, opensslVerify } from '../helpers/openssl-pki.js';
import { tpm2Tool } from '../helpers/swtpm.js';
import { expectJoinRefusedBy, startIssuer, type Harness } from '../integration/harness.js';

/** The test's TPMs as one agent holds them: one TpmAccess per TCTI (keystore/tpm-access.ts TpmAccesses). */
const tpmAccess = new TpmAccesses();
const openTpmKey = (tcti: string, handle: number): Promise<TpmPersistentSigner> =>
  TpmPersistentSigner.open({ tcti, handle }, tpmAccess.for(tcti));

const N = 20;
const tmp = tempDir('sigil-fleet-');
const dir = (name: string): string => join(tmp.path, name);
const serial = (i: number): string => `GW-${String(i + 1).padStart(4, '0')}`;

let fleet: Fleet;
let h: Harness;
let client: HttpsIssuerClient;
let caDir: OpensslCaDir;
const caCert = dir('ca/factory-ca.pem');
const caKey = dir('ca/factory-ca.key');
const manifest = dir('line/manifest.jsonl');
const crlFile = dir('factory.crl');
const certOf = (i: number): string => dir(`line/idevid/${serial(i)}.pem`);
const t0 = Date.now();

const RULE = (requireTpm = false): string => `kind: join_rule
name: factory
spec:
  method: x509
  bot: gw
  x509:
    ca_files: [${caCert}]
    crl_files: [${crlFile}]
    allow: [ { subject_cn: "gw-*", san_uri: "urn:sigil:device:*" } ]
    registered_only: true
${requireTpm ? `    require_tpm: { ek_ca_files: [${fleet.ca.rootCert}, ${fleet.ca.issuerCert}] }\n` : ''}`;

async function exchange(method: JoinMethodAgent, opts: { sent?: Jws[] } = {}): Promise<JoinExchangeResult> {
  return runJoinExchange({
    method,
    identity: SoftwareSigner.generate(),
    send: (env) => {
      opts.sent?.push(env);
      return client.post('join', env);
    },
    rootPem: () => client.ensureRoot(),
    now: () => h.ctx.now(),
  });
}

const expectJoinRefused = (method: JoinMethodAgent, code: string): Promise<SigilError> =>
  expectJoinRefusedBy(h, 'x509', () => exchange(method), code);

/** `sigil factory provision` of one more IDevID (another handle) into its own manifest. */
async function provisionExtra(
  tpmIndex: number,
  s: string,
  handle: string,
  out: string,
  ca: { cert: string; key: string } = { cert: caCert, key: caKey },
): Promise<string> {
  const r = await sigilJson([
    'factory',
    'provision',
    '--tpm',
    fleet.tpms[tpmIndex]!.tcti,
    '--ca-cert',
    ca.cert,
    '--ca-key',
    ca.key,
    '--serial',
    s,
    '--handle',
    handle,
    '--out',
    out,
    '--cn-template',
    'gw-{serial}',
  ]);
  return r.cert_file as string;
}

beforeAll(async () => {
  const [f, harness] = await Promise.all([startFleet(N, dir('tpms')), startIssuer()]);
  fleet = f;
  h = harness;
  client = new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin: spkiPin(Buffer.from(h.rootPem)) });
  // Learn the pinned root once: concurrent first contacts each replace the client's https.Agent.
  await client.ensureRoot();
  const init = await sigilJson([
    'factory',
    'init-ca',
    '--out',
    dir('ca'),
    '--cn',
    'Acme Gateway Factory CA',
    '--org',
    'Acme',
  ]);
  expect(init).toMatchObject({ cert_file: caCert, key_file: caKey, subject: 'O=Acme, CN=Acme Gateway Factory CA' });
  caDir = factoryCaDir(dir('ca-openssl'), caCert, caKey);
  caDir.gencrl(crlFile);
  await runAdminOp(h.ctx.stores, 'apply', { yaml: RULE() });
}, 180_000);

afterAll(async () => {
  client?.close();
  await h?.close();
  await fleet?.destroy();
  tmp.cleanup();
  if (process.env.SIGIL_TEST_VERBOSE) process.stdout.write(`factory fleet: ${Date.now() - t0} ms\n`);
});

describe('a factory line of 20 TPM devices', () => {
  it('provisions all 20 in one batch: one manifest line each, the IDevID key persisted in each TPM', async () => {
    const csv = dir('devices.csv');
    writeFileSync(csv, ['serial,tcti', ...fleet.tpms.map((t, i) => `${serial(i)},"${t.tcti}"`), ''].join('\n'));
    const r = await sigil(
      [
        'factory',
        'batch',
        '--csv',
        csv,
        '--ca-cert',
        caCert,
        '--ca-key',
        caKey,
        '--out',
        manifest,
        '--cn-template',
        'gw-{serial}',
        '--org',
        'Acme',
        '--parallel',
        '4',
        '--format',
        'json',
      ],
      { timeoutMs: 120_000 },
    );
    expect(r.stderr.split('\n').filter((l) => l.startsWith('failed') || l.startsWith('error'))).toEqual([]);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ total: N, ok: N, failed: 0 });
    // Not a TTY: one plain progress line per device on stderr.
    expect(r.stderr.split('\n').filter((l) => l.startsWith('ok '))).toHaveLength(N);

    const lines = readFileSync(manifest, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.serial).sort()).toEqual(fleet.tpms.map((_, i) => serial(i)));
    const ekHashes = new Set(lines.map((l) => l.ek_public_hash));
    expect(ekHashes.size).toBe(N); // 20 different TPMs
    for (const l of lines) {
      expect(l).toMatchObject({
        ek_kind: 'rsa-2048',
        ek_cert_issuer: expect.stringContaining('swtpm-localca'),
        persistent_handle: '0x81000100',
        idevid_fingerprint: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      });
    }
    // ek_public_hash is what openssl says of the EK certificate's key (sha256 of its SPKI DER).
    const ekDer = dir('ek-0.der');
    await tpm2Tool(fleet.tpms[0]!, 'tpm2_nvread', ['0x01c00002', '-C', 'o', '-o', ekDer]);
    const ekSpki = createPublicKey(openssl(['x509', '-inform', 'der', '-in', ekDer, '-noout', '-pubkey'])).export({
      type: 'spki',
      format: 'der',
    });
    expect(lines.find((l) => l.serial === serial(0)).ek_public_hash).toBe(
      `sha256:${createHash('sha256').update(ekSpki).digest('hex')}`,
    );
    // tpm2-tools agrees on the IDevID key: generated in the TPM, bound to it, a plain signing key.
    const { stdout: pub } = await tpm2Tool(fleet.tpms[0]!, 'tpm2_readpublic', ['-c', '0x81000100']);
    expect(pub).toMatch(/value: fixedtpm\|fixedparent\|sensitivedataorigin\|userwithauth\|noda\|sign\n/);
    // The key at 0x81000100 of device 1 is the key of its certificate, and cannot be exported.
    const signer = await openTpmKey(fleet.tpms[0]!.tcti, 0x81000100);
    expect(signer.exportable).toBe(false);
    expect(
      signer
        .publicKeySpki()
        .equals(
          Buffer.from(new X509Certificate(readFileSync(certOf(0))).publicKey.export({ type: 'spki', format: 'der' })),
        ),
    ).toBe(true);

    const imp = await sigilJson(['ctl', '--data-dir', h.dir, 'devices', 'import', manifest, '--rule', 'factory']);
    expect(imp).toMatchObject({ lines: N, created: N, updated: 0, unchanged: 0 });
  });

  it('openssl verify -CAfile factory-ca.pem accepts every IDevID chain Sigil issued', () => {
    const files = fleet.tpms.map((_, i) => certOf(i));
    const v = opensslVerify(['-CAfile', caCert, '-purpose', 'sslclient', '-x509_strict', ...files]);
    expect(
      v.out
        .trim()
        .split('\n')
        .filter((l) => l.endsWith(': OK')),
    ).toHaveLength(N);
    const idevid = new X509Certificate(readFileSync(certOf(4)));
    expect(idevid.subject.split('\n')).toEqual(['O=Acme', 'serialNumber=GW-0005', 'CN=gw-GW-0005']);
    expect(idevid.subjectAltName).toBe('URI:urn:sigil:device:GW-0005');
    expect(idevid.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']); // node's keyUsage is the EKU list
    const text = openssl(['x509', '-in', certOf(4), '-noout', '-text']);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(Date.parse(idevid.validTo) - Date.now()).toBeGreaterThan(19.9 * 365 * 86_400_000);
  });

  it('every device joins with x509, its challenge signed inside its TPM', async () => {
    const results: JoinExchangeResult[] = [];
    for (let i = 0; i < N; i += 4) {
      results.push(
        ...(await Promise.all(
          fleet.tpms.slice(i, i + 4).map((t, k) => exchange(tpmDeviceAgent(certOf(i + k), t.tcti))),
        )),
      );
    }
    expect(results).toHaveLength(N);
    expect(new Set(results.map((r) => r.payload.result.instance_id)).size).toBe(N);
    for (const [i, r] of results.entries()) {
      expect(r.challenges).toBe(1);
      const spki = Buffer.from(createPublicKey(readFileSync(certOf(i))).export({ type: 'spki', format: 'der' }));
      expect(r.payload.result.instance_id).toBe(x509MachineId(spki));
      expect((await h.ctx.stores.instances.get(r.payload.result.instance_id))!.facts).toMatchObject({
        x509_rule: 'factory',
        device_serial: serial(i),
        x509_key: 'ec-p256',
        x509_proof_alg: 'ES256',
      });
    }
  });
});

describe('refusals, each with its own code and one audit row', () => {
  it('a device that is not in the imported manifest: device_not_registered', async () => {
    const cert = await provisionExtra(0, 'GW-9001', '0x81000101', dir('line/extra.jsonl'));
    await expectJoinRefused(tpmDeviceAgent(cert, fleet.tpms[0]!.tcti, 0x81000101), 'device_not_registered');
  });

  it('a revoked device (CRL signed by the factory CA): x509_revoked', async () => {
    caDir.revoke({ name: 'GW-0004', cert: certOf(3), key: '', pem: '' });
    caDir.gencrl(crlFile);
    const e = await expectJoinRefused(tpmDeviceAgent(certOf(3), fleet.tpms[3]!.tcti), 'x509_revoked');
    expect(e.message).toContain(crlFile);
    await exchange(tpmDeviceAgent(certOf(4), fleet.tpms[4]!.tcti)); // its neighbours still join
  });

  it('an IDevID from a CA the rule does not trust: x509_untrusted_ca', async () => {
    const rogue = await sigilJson(['factory', 'init-ca', '--out', dir('rogue-ca'), '--cn', 'Rogue Factory CA']);
    const cert = await provisionExtra(1, 'GW-9002', '0x81000102', dir('line/rogue.jsonl'), {
      cert: rogue.cert_file,
      key: rogue.key_file,
    });
    await expectJoinRefused(tpmDeviceAgent(cert, fleet.tpms[1]!.tcti, 0x81000102), 'x509_untrusted_ca');
  });

  it('--ek-ca-file: an EK certificate that does not chain to the given maker CA gets no IDevID (exit 1, ek_ code)', async () => {
    const r = await sigil([
      'factory',
      'provision',
      '--tpm',
      fleet.tpms[3]!.tcti,
      '--ca-cert',
      caCert,
      '--ca-key',
      caKey,
      '--serial',
      'GW-9004',
      '--handle',
      '0x81000104',
      '--out',
      dir('line/ek-ca.jsonl'),
      '--ek-ca-file',
      caCert, // the factory's own CA: not the TPM maker's
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[ek_[a-z_]+\]/);
  });

  it('an expired IDevID (registered, key in the TPM): x509_cert_expired', async () => {
    const ca = openFactoryCa({ certFile: caCert, key: { keyFile: caKey } });
    const tpm = await Tpm.open(fleet.tpms[2]!.tcti);
    const expiredManifest = dir('line/expired.jsonl');
    let certFile: string;
    try {
      const r = await provisionDevice({
        tpm,
        ca,
        serial: 'GW-9003',
        manifest: expiredManifest,
        certDir: dir('line/expired'),
        handle: 0x81000103,
        profile: { cnTemplate: 'gw-{serial}', validityYears: 1 },
        now: () => new Date(Date.now() - 3 * 365 * 86_400_000),
      });
      expect(r.line.idevid_not_after < new Date().toISOString()).toBe(true);
      certFile = r.certFile;
    } finally {
      // swtpm serves one connection at a time: the device needs its TPM back.
      await tpm.close();
      ca.close();
    }
    await sigilJson(['ctl', '--data-dir', h.dir, 'devices', 'import', expiredManifest, '--rule', 'factory']);
    await expectJoinRefused(tpmDeviceAgent(certFile, fleet.tpms[2]!.tcti, 0x81000103), 'x509_cert_expired');
  });

  it('a challenge signed by another TPM key than the certificate names: x509_proof_invalid', async () => {
    // Device 6 shows its own chain, but the signature comes from device 7's TPM.
    const other = await openTpmKey(fleet.tpms[6]!.tcti, 0x81000100);
    const leafSpki = Buffer.from(createPublicKey(readFileSync(certOf(5))).export({ type: 'spki', format: 'der' }));
    const impostor: DeviceSigner = {
      storage: 'tpm',
      exportable: false,
      algorithm: 'ES256',
      publicKeySpki: () => leafSpki,
      sign: (d) => other.sign(d),
    };
    await expectJoinRefused(X509JoinAgent.fromPem(readFileSync(certOf(5), 'utf8'), impostor), 'x509_proof_invalid');
  });

  it('a replayed challenge response: challenge_reused', async () => {
    const sent: Jws[] = [];
    await exchange(tpmDeviceAgent(certOf(7), fleet.tpms[7]!.tcti), { sent });
    const answer = JSON.parse(Buffer.from(sent[1]!.payload, 'base64url').toString('utf8')).evidence as Record<
      string,
      unknown
    >;
    const replay: JoinMethodAgent = { name: 'x509', canReattest: true, evidence: () => Promise.resolve(answer) };
    await expectJoinRefused(replay, 'challenge_reused');
  });
});

describe('tpm+x509: the IDevID key proven to sit in the TPM of the EK the factory recorded', () => {
  const live = (i: number): boolean => i !== 3; // device 4 is revoked
  const manifestLine = (i: number): { ek_public_hash: string } =>
    readFileSync(manifest, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .find((l) => l.serial === serial(i));

  beforeAll(async () => {
    await runAdminOp(h.ctx.stores, 'apply', { yaml: RULE(true) });
  });

  it('every device joins again with tpm+x509: same instance, next generation, EK facts from the TPM', async () => {
    const idx = fleet.tpms.map((_, i) => i).filter(live);
    for (let k = 0; k < idx.length; k += 4) {
      await Promise.all(
        idx.slice(k, k + 4).map(async (i) => {
          const spki = Buffer.from(createPublicKey(readFileSync(certOf(i))).export({ type: 'spki', format: 'der' }));
          const before = (await h.ctx.stores.instances.get(x509MachineId(spki)))!;
          const r = await exchange(tpmDeviceAgent(certOf(i), fleet.tpms[i]!.tcti));
          expect(r.challenges).toBe(1);
          expect(r.payload.result.instance_id).toBe(before.id);
          expect(r.payload.result.generation).toBe(before.generation + 1);
          const inst = (await h.ctx.stores.instances.get(before.id))!;
          expect(inst.facts).toMatchObject({
            x509_key_storage: 'tpm',
            ek_public_hash: manifestLine(i).ek_public_hash,
            device_serial: serial(i),
            ek_cert_issuer: expect.stringContaining('swtpm-localca'),
          });
        }),
      );
    }
  });

  it('a device key without its TPM binding: x509_tpm_binding_invalid', async () => {
    const agent = x509JoinAgentFromConfig({
      cert: certOf(0),
      tpm: { handle: 0x81000100, tcti: fleet.tpms[0]!.tcti, attest: false },
    });
    await expectJoinRefused(agent, 'x509_tpm_binding_invalid');
  });

  it("an IDevID registered with another TPM's EK: x509_ek_mismatch", async () => {
    // Device 9 gets a second IDevID, but its manifest line names device 10's EK.
    const extra = dir('line/ek-swap.jsonl');
    const cert = await provisionExtra(8, 'GW-9004', '0x81000104', extra);
    const line = JSON.parse(readFileSync(extra, 'utf8'));
    writeFileSync(extra, `${JSON.stringify({ ...line, ek_public_hash: manifestLine(9).ek_public_hash })}\n`);
    await sigilJson(['ctl', '--data-dir', h.dir, 'devices', 'import', extra, '--rule', 'factory']);
    const e = await expectJoinRefused(tpmDeviceAgent(cert, fleet.tpms[8]!.tcti, 0x81000104), 'x509_ek_mismatch');
    expect(e.message).toContain(manifestLine(9).ek_public_hash);
  });

  it('an EK the rule does not trust: ek_untrusted', async () => {
    await runAdminOp(h.ctx.stores, 'apply', {
      yaml: RULE(true).replace(`${fleet.ca.rootCert}, ${fleet.ca.issuerCert}`, caCert),
    });
    try {
      await expectJoinRefused(tpmDeviceAgent(certOf(1), fleet.tpms[1]!.tcti), 'ek_untrusted');
    } finally {
      await runAdminOp(h.ctx.stores, 'apply', { yaml: RULE(true) });
    }
  });

  it("require_tpm.ek_crl_files is checked like a tpm rule's: a CRL from swtpm_localca (no cRLSign) fails closed, ek_crl_unavailable", async () => {
    // swtpm_localca's issuing CA has KeyUsage keyCertSign only, so no CRL it signs can be believed
    // (RFC 5280 §6.3.3 (f)); test/integration/tpm-join.test.ts has ek_revoked with a CA that may.
    const ekCrl = new OpensslPki(dir('ek-crl'))
      .caDir({ name: 'ek-ca', cert: fleet.ca.issuerCert, key: fleet.ca.signingKey, pem: '' })
      .gencrl(dir('ek.crl'));
    await runAdminOp(h.ctx.stores, 'apply', {
      yaml: RULE(true).replace(`${fleet.ca.issuerCert}] }`, `${fleet.ca.issuerCert}], ek_crl_files: [${ekCrl}] }`),
    });
    try {
      const e = await expectJoinRefused(tpmDeviceAgent(certOf(1), fleet.tpms[1]!.tcti), 'ek_crl_unavailable');
      expect(e.retryable).toBe(true);
      expect(e.message).toMatch(/whose KeyUsage lacks cRLSign/);
    } finally {
      await runAdminOp(h.ctx.stores, 'apply', { yaml: RULE(true) });
    }
  });

  it('an AK from another TPM than the EK (the binding cannot be answered): credential_mismatch', async () => {
    // Device 11 shows its own chain, EK and IDevID key, but an AK made in device 12's TPM.
    const own = tpmDeviceAgent(certOf(10), fleet.tpms[10]!.tcti);
    const other = new DeviceTpmBinding(await openTpmKey(fleet.tpms[11]!.tcti, 0x81000100));
    const plain = X509JoinAgent.fromPem(
      readFileSync(certOf(10), 'utf8'),
      await openTpmKey(fleet.tpms[10]!.tcti, 0x81000100),
    );
    const cheat: JoinMethodAgent = {
      name: 'x509',
      canReattest: true,
      evidence: async (ctx) => {
        const ev = (await own.evidence(ctx)) as { chain: string[]; tpm: Record<string, string> };
        return { ...ev, tpm: { ...ev.tpm, ak_public: (await other.evidence(ctx.requestId)).ak_public } };
      },
      // Neither TPM can activate this credential; the device can only guess the secret.
      respond: async (c, ctx) => ({
        ...(await plain.respond({ ...c, data: {} }, ctx)),
        tpm: { activated: randomBytes(32).toString('base64'), certify: { attest: 'AAAA', signature: 'AAAA' } },
      }),
    };
    await expectJoinRefused(cheat, 'credential_mismatch');
  });

  it("a TPM key that is not the certificate's key presented as the DevID: certify_key_mismatch", async () => {
    // Device 1 holds two keys: its IDevID (0x81000100) and GW-9001's (0x81000101).
    const wrong = new DeviceTpmBinding(await openTpmKey(fleet.tpms[0]!.tcti, 0x81000101));
    const agent = X509JoinAgent.fromPem(
      readFileSync(certOf(0), 'utf8'),
      await openTpmKey(fleet.tpms[0]!.tcti, 0x81000100),
      undefined,
      wrong,
    );
    await expectJoinRefused(agent, 'certify_key_mismatch');
  });
});
