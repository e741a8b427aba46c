/**
 * The factory CA with its key on a PKCS#11 token (SoftHSM2, initialised by the test in a temp
 * dir): `sigil factory init-ca --pkcs11-module …` generates the key on the token (no key file,
 * not extractable), `sigil factory batch --ca-key-uri pkcs11:…` issues IDevIDs that `openssl
 * verify` accepts, and a batch in which one TPM is dead reports that device, exits non-zero and
 * leaves the manifest with exactly the successful lines, each valid JSON; re-running the failed
 * serial later completes the manifest.
 */
import { execFileSync } from 'node:child_process';
import { verify, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireModule, findSlot, pkcs11js, releaseModule } from '../../src/keystore/pkcs11/module.js';
import { TpmSigner } from '../../src/keystore/tpm.js';
import { TpmAccess } from '../../src/keystore/tpm-access.js';
import { readTss2Pem } from '../../src/keystore/tss2-pem.js';
import { sigil, sigilJson, tempDir } from '../helpers/cli.js';
import { startFleet, type Fleet } from '../helpers/factory.js';
import { tpm2Tool } from '../helpers/swtpm.js';
import { openssl, opensslVerify } from '../helpers/openssl-pki.js';

const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const PIN = '2718-factory-pin';
const tmp = tempDir('sigil-factory-p11-');
const dir = (name: string): string => join(tmp.path, name);
const pinFile = dir('pin');
let fleet: Fleet;
let keyUri: string;
const manifest = dir('line/manifest.jsonl');
const caArgs = (): string[] => [
  '--ca-cert',
  dir('ca/factory-ca.pem'),
  '--ca-key-uri',
  keyUri,
  '--pin-file',
  pinFile,
  '--cn-template',
  'gw-{serial}',
];

function setupToken(): void {
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('softhsm2-util not found; install it with: sudo apt-get install -y softhsm2 opensc');
  }
  mkdirSync(dir('tokens'));
  const conf = dir('softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${dir('tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  // Read by SoftHSM at C_Initialize, in this process and in the `sigil` children (they inherit it).
  process.env.SOFTHSM2_CONF = conf;
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'factory', '--pin', PIN, '--so-pin', '1234'], {
    stdio: 'ignore',
  });
  writeFileSync(pinFile, `${PIN}\n`, { mode: 0o600 });
}

/** A loopback port nobody listens on: a TPM that is switched off. */
function deadPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** CKA_VALUE of the CA's private key, read with a session of our own: must be refused. */
function readCaKeyValue(label: string): string {
  const P = pkcs11js();
  const lib = acquireModule(MODULE);
  const session = lib.C_OpenSession(findSlot(lib, 'factory'), P.CKF_SERIAL_SESSION);
  try {
    lib.C_Login(session, P.CKU_USER, PIN);
    lib.C_FindObjectsInit(session, [
      { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
      { type: P.CKA_LABEL, value: label },
    ]);
    const [key] = lib.C_FindObjects(session, 2);
    lib.C_FindObjectsFinal(session);
    try {
      lib.C_GetAttributeValue(session, key!, [{ type: P.CKA_VALUE }]);
      return 'readable';
    } catch (e) {
      return (e as Error).message;
    }
  } finally {
    lib.C_CloseSession(session);
    releaseModule(MODULE);
  }
}

beforeAll(async () => {
  setupToken();
  fleet = await startFleet(5, dir('tpms'), 2);
}, 120_000);

afterAll(async () => {
  await fleet?.destroy();
  tmp.cleanup();
});

describe('a factory CA on a PKCS#11 token', () => {
  it('init-ca generates the CA key on the token: no key file, CKA_VALUE unreadable, the PIN nowhere in the output', async () => {
    const r = await sigil([
      'factory',
      'init-ca',
      '--out',
      dir('ca'),
      '--pkcs11-module',
      MODULE,
      '--token-label',
      'factory',
      '--key-label',
      'acme-factory-ca',
      '--pin-file',
      pinFile,
      '--cn',
      'Acme HSM Factory CA',
      '--format',
      'json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      cert_file: dir('ca/factory-ca.pem'),
      key_uri: `pkcs11:token=factory;object=acme-factory-ca?module-path=${MODULE}`,
      subject: 'O=Sigil Factory, CN=Acme HSM Factory CA',
    });
    keyUri = out.key_uri;
    expect(existsSync(dir('ca/factory-ca.key'))).toBe(false);
    expect(r.stdout).not.toContain(PIN);
    expect(readCaKeyValue('acme-factory-ca')).toBe('CKR_ATTRIBUTE_SENSITIVE');
    expect(openssl(['x509', '-in', out.cert_file, '-noout', '-text'])).toMatch(
      /CA:TRUE, pathlen:0[\s\S]*Certificate Sign, CRL Sign/,
    );
    // A second CA with the same label on the token is refused rather than shadowing the first.
    const again = await sigil([
      'factory',
      'init-ca',
      '--out',
      dir('ca2'),
      '--pkcs11-module',
      MODULE,
      '--token-label',
      'factory',
      '--key-label',
      'acme-factory-ca',
      '--pin-file',
      pinFile,
    ]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error\[conflict\]: token "factory" already holds a key labelled "acme-factory-ca"/);
  });

  it('a batch with one dead TPM: that device is reported, the rest are provisioned, the manifest holds exactly their lines', async () => {
    const dead = `swtpm:host=127.0.0.1,port=${await deadPort()}`;
    const devices = [
      ['HSM-0001', fleet.tpms[0]!.tcti],
      ['HSM-0002', dead],
      ['HSM-0003', fleet.tpms[1]!.tcti],
      ['HSM-0004', fleet.tpms[2]!.tcti],
    ];
    const csv = dir('batch.csv');
    writeFileSync(csv, `serial,tcti\n${devices.map(([s, t]) => `${s},"${t}"`).join('\n')}\n`);
    const r = await sigil(
      ['factory', 'batch', '--csv', csv, ...caArgs(), '--out', manifest, '--parallel', '2', '--format', 'json'],
      { timeoutMs: 90_000 },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^failed {2}HSM-0002 {2}tpm_unavailable: cannot connect to the TPM/m);
    // --format json: the closing error is one JSON line too (cli/output.ts).
    const closing = JSON.parse(r.stderr.trim().split('\n').at(-1)!) as { error: { code: string; message: string } };
    expect(closing.error).toMatchObject({
      code: 'batch_incomplete',
      message: '1 of 4 devices failed: HSM-0002 (tpm_unavailable); the manifest holds the 3 that succeeded',
    });
    expect(r.stderr).not.toContain(PIN);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ total: 4, ok: 3, failed: 1 });
    expect(summary.devices.find((d: { serial: string }) => d.serial === 'HSM-0002')).toMatchObject({
      ok: false,
      code: 'tpm_unavailable',
    });

    const text = readFileSync(manifest, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const lines = text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { serial: string; idevid_fingerprint: string });
    expect(lines.map((l) => l.serial).sort()).toEqual(['HSM-0001', 'HSM-0003', 'HSM-0004']);
    for (const l of lines) {
      const cert = dir(`line/idevid/${l.serial}.pem`);
      const v = opensslVerify(['-CAfile', dir('ca/factory-ca.pem'), '-purpose', 'sslclient', cert]);
      expect(v.ok, v.out).toBe(true);
      expect(
        `sha256:${openssl(['x509', '-in', cert, '-noout', '-fingerprint', '-sha256']).trim().split('=')[1]!.replace(/:/g, '').toLowerCase()}`,
      ).toBe(l.idevid_fingerprint);
    }
    expect(existsSync(dir('line/idevid/HSM-0002.pem'))).toBe(false);

    // The line fixes the dead board's TPM; the failed serial alone completes the manifest.
    const retry = dir('retry.csv');
    writeFileSync(retry, `serial,tcti\nHSM-0002,"${fleet.tpms[3]!.tcti}"\n`);
    const again = await sigilJson(['factory', 'batch', '--csv', retry, ...caArgs(), '--out', manifest, '--tss2-key']);
    expect(again).toMatchObject({ total: 1, ok: 1, failed: 0 });
    // --tss2-key: the same TPM key as a TSS2 PRIVATE KEY (blobs under the SRK) loads and signs.
    const tss2 = readTss2Pem(readFileSync(dir('line/idevid/HSM-0002.tss2.pem'), 'utf8'));
    const signer = TpmSigner.fromBlob(new TpmAccess(fleet.tpms[3]!.tcti), tss2.blob, tss2.parent);
    const data = Buffer.from('802.1X EAP-TLS handshake');
    const idevidKey = new X509Certificate(readFileSync(dir('line/idevid/HSM-0002.pem'))).publicKey;
    expect(verify('sha256', data, { key: idevidKey, dsaEncoding: 'der' }, await signer.sign(data))).toBe(true);
    expect(
      readFileSync(manifest, 'utf8')
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as { serial: string }).serial),
    ).toEqual([...lines.map((l) => l.serial), 'HSM-0002']);

    // Provisioning a serial again is refused (TPM handle taken, serial in the manifest), changing nothing.
    const dup = await sigil([
      'factory',
      'provision',
      '--tpm',
      fleet.tpms[0]!.tcti,
      '--serial',
      'HSM-0001',
      ...caArgs(),
      '--out',
      manifest,
    ]);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(
      /^error\[device_already_provisioned\]: device HSM-0001 is already in .*manifest\.jsonl \(line [1-3]\)/,
    );
    expect(readFileSync(manifest, 'utf8').trimEnd().split('\n')).toHaveLength(4);
  });

  it('a device that fails after its key was made persistent leaves nothing behind: no key at the handle, no line, no file', async () => {
    const blocker = dir('a-file');
    writeFileSync(blocker, 'not a directory\n');
    const lines = readFileSync(manifest, 'utf8');
    const r = await sigil([
      'factory',
      'provision',
      '--tpm',
      fleet.tpms[4]!.tcti,
      '--serial',
      'HSM-0005',
      ...caArgs(),
      '--out',
      manifest,
      '--cert-out',
      blocker,
      '--nv-index',
      '0x01c90000',
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error\[\w+\]: .*a-file/m);
    expect(readFileSync(manifest, 'utf8')).toBe(lines);
    await expect(tpm2Tool(fleet.tpms[4]!, 'tpm2_readpublic', ['-c', '0x81000100'])).rejects.toThrow(/failed/);
    await expect(tpm2Tool(fleet.tpms[4]!, 'tpm2_nvreadpublic', ['0x01c90000'])).rejects.toThrow(/failed/);
    // So the device can be provisioned again, without --force.
    const ok = await sigilJson([
      'factory',
      'provision',
      '--tpm',
      fleet.tpms[4]!.tcti,
      '--serial',
      'HSM-0005',
      ...caArgs(),
      '--out',
      manifest,
      '--nv-index',
      '0x01c90000',
    ]);
    expect(ok).toMatchObject({ serial: 'HSM-0005', persistent_handle: '0x81000100', nv_index: '0x01c90000' });
    expect(readFileSync(manifest, 'utf8').trimEnd().split('\n')).toHaveLength(5);
  });

  it('refuses a CA key that does not match the CA certificate, before touching any TPM', async () => {
    const other = await sigilJson(['factory', 'init-ca', '--out', dir('other-ca')]);
    const r = await sigil([
      'factory',
      'provision',
      '--tpm',
      'swtpm:host=127.0.0.1,port=1',
      '--serial',
      'X-1',
      '--ca-cert',
      other.cert_file,
      '--ca-key-uri',
      keyUri,
      '--pin-file',
      pinFile,
      '--out',
      dir('x.jsonl'),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^error\[config_invalid\]: the factory CA key does not belong to .*factory-ca\.pem \(their public keys differ\)$/m,
    );
    expect(existsSync(dir('x.jsonl'))).toBe(false);
  });
});
