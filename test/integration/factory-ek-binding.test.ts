/**
 * `sigil factory provision` proves that the IDevID key it certifies is in the TPM whose EK it
 * records (security review of issue #16): a fresh AK's credential is activated with that EK, and
 * the AK certifies the key, before the factory CA signs. Here a man in the middle on the TCTI — a
 * TCP proxy that sends the EK reads to a genuine TPM A and everything else to another TPM B —
 * used to get a factory-signed IDevID for a key in B, recorded under A's EK. Real swtpm.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { openFactoryCa } from '../../src/factory/ca.js';
import { initFactoryCa } from '../../src/factory/init-ca.js';
import { provisionDevice } from '../../src/factory/provision.js';
import { publicKeySpki } from '../../src/tpm/structures/keys.js';
import { Tpm } from '../../src/tpm/tpm.js';
import { createLocalCa, createSwtpm, type SharedLocalCa, type SwtpmInstance } from '../helpers/swtpm.js';

let dir: string;
let mca: SharedLocalCa;
let a: SwtpmInstance; // genuine, EK certificate from the manufacturer CA
let b: SwtpmInstance; // the attacker's TPM (no EK certificate at all)
let proxy: Server;
let proxyPort = 0;
let caCert = '';
let caKey = '';

/** Read one TPM command/response (size in bytes 2..6 of the header) from a socket stream. */
function framer(sock: Socket, onFrame: (b: Buffer) => void): void {
  let buf = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 10 && buf.length >= buf.readUInt32BE(2)) {
      const n = buf.readUInt32BE(2);
      onFrame(buf.subarray(0, n));
      buf = buf.subarray(n);
    }
  });
}

/** EK reads (NV_Read/NV_ReadPublic of 0x01c0xxxx, ReadPublic of 0x8101xxxx) go to A; the rest to B. */
function toA(cmd: Buffer, aHandles: Set<number>): boolean {
  const cc = cmd.readUInt32BE(6);
  if (cc === 0x131 /* CreatePrimary */ && cmd.readUInt32BE(10) === 0x4000000b /* TPM_RH_ENDORSEMENT */) return true;
  if (cc === 0x165 /* FlushContext (handle in parameters) */ && aHandles.has(cmd.readUInt32BE(10))) return true;
  const h1 = cmd.length >= 14 ? cmd.readUInt32BE(10) : 0;
  const h2 = cmd.length >= 18 ? cmd.readUInt32BE(14) : 0;
  if (cc === 0x173 /* ReadPublic */ && (h1 & 0xffff0000) >>> 0 === 0x81010000) return true;
  if (cc === 0x169 /* NV_ReadPublic */ && (h1 & 0xffff0000) === 0x01c00000) return true;
  if (
    cc === 0x14e /* NV_Read: authHandle, nvIndex */ &&
    ((h2 & 0xffff0000) === 0x01c00000 || (h1 & 0xffff0000) === 0x01c00000)
  )
    return true;
  return false;
}

function startProxy(): Promise<void> {
  proxy = createServer((client) => {
    const ua = createConnection({ host: '127.0.0.1', port: a.port });
    const ub = createConnection({ host: '127.0.0.1', port: b.port });
    const queue: Socket[] = [];
    const aHandles = new Set<number>();
    let lastA = 0;
    const back = (frame: Buffer): void => void client.write(frame);
    framer(ua, (frame) => {
      // Remember A's transient EK handle (CreatePrimary answers it first) so its flush goes to A.
      if (lastA === 0x131 && frame.readUInt32BE(6) === 0) aHandles.add(frame.readUInt32BE(10));
      back(frame);
    });
    framer(ub, back);
    framer(client, (cmd) => {
      const a2 = toA(cmd, aHandles);
      const up = a2 ? ua : ub;
      if (a2) lastA = cmd.readUInt32BE(6);
      queue.push(up);
      up.write(cmd);
    });
    const end = (): void => {
      ua.destroy();
      ub.destroy();
      client.destroy();
    };
    client.on('close', end);
    client.on('error', end);
    ua.on('error', end);
    ub.on('error', end);
  });
  return new Promise((res) =>
    proxy.listen(0, '127.0.0.1', () => {
      proxyPort = (proxy.address() as { port: number }).port;
      res();
    }),
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-factory-ek-binding-'));
  mca = await createLocalCa({ dir: join(dir, 'mca') });
  a = await createSwtpm({ localCa: mca, dir: join(dir, 'a') });
  b = await createSwtpm({ ekCerts: false, dir: join(dir, 'b') });
  await Promise.all([a.start(), b.start()]);
  const r = await initFactoryCa({ outDir: join(dir, 'factory-ca') });
  caCert = r.cert_file;
  caKey = r.key_file!;
  await startProxy();
}, 180_000);

afterAll(async () => {
  proxy?.close();
  await Promise.all([a, b].map((t) => t?.destroy()));
  mca?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function keyAt(tcti: string, handle: number): Promise<Buffer | undefined> {
  const tpm = await Tpm.open(tcti);
  try {
    return publicKeySpki((await tpm.readPublic(handle)).public.value);
  } catch {
    return undefined;
  } finally {
    await tpm.close();
  }
}

describe('factory provisioning binds the IDevID key to the EK it records', () => {
  it("a TCTI man in the middle gets no IDevID for a key outside the recorded EK's TPM, and nothing is left behind", async () => {
    const ca = openFactoryCa({ certFile: caCert, key: { keyFile: caKey } });
    const tpm = await Tpm.open(`swtpm:host=127.0.0.1,port=${proxyPort}`);
    const manifest = join(dir, 'line', 'manifest.jsonl');
    let err: unknown;
    try {
      await provisionDevice({ tpm, ca, serial: 'GW-MITM-1', manifest, certDir: join(dir, 'line', 'idevid') });
    } catch (e) {
      err = e;
    } finally {
      await tpm.close();
      ca.close();
    }
    expect(err).toBeInstanceOf(SigilError);
    expect((err as SigilError).code).toBe('tpm_error');
    expect((err as SigilError).message).toMatch(
      /did not prove that the IDevID key is in the TPM whose EK it reported \(tpm_/,
    );
    await new Promise((r) => setTimeout(r, 200)); // swtpm serves one connection at a time
    // No manifest line (the manifest file itself is checked writable, and so created, up front).
    expect(existsSync(manifest) ? readFileSync(manifest, 'utf8') : '').toBe('');
    expect(await keyAt(a.tcti, 0x81000100)).toBeUndefined();
    expect(await keyAt(b.tcti, 0x81000100)).toBeUndefined();
  }, 120_000);

  it('with --ek-ca-file, a TPM without an EK certificate, or with one of another maker, gets no IDevID', async () => {
    const ca = openFactoryCa({ certFile: caCert, key: { keyFile: caKey } });
    const attempt = async (tcti: string, serial: string, ekCaFiles: string[]): Promise<SigilError | string> => {
      const tpm = await Tpm.open(tcti);
      try {
        const r = await provisionDevice({
          tpm,
          ca,
          serial,
          handle: 0x81000105,
          manifest: join(dir, `line-${serial}`, 'manifest.jsonl'),
          certDir: join(dir, `line-${serial}`, 'idevid'),
          ekCaFiles,
        });
        return r.line.ek_cert_issuer ?? 'no issuer';
      } catch (e) {
        if (e instanceof SigilError) return e;
        throw e;
      } finally {
        await tpm.close();
      }
    };
    const manufacturer = [mca.rootCert, mca.issuerCert];
    try {
      const none = (await attempt(b.tcti, 'GW-NOCERT-1', manufacturer)) as SigilError;
      expect(none.code).toBe('ek_untrusted');
      expect(none.message).toMatch(/has no rsa-2048 EK certificate in NV, and --ek-ca-file requires one/);
      // Another CA than the maker's (here the factory's own): the EK certificate does not chain to it.
      const foreign = await attempt(a.tcti, 'GW-FOREIGN-1', [caCert]);
      expect(foreign).toBeInstanceOf(SigilError);
      expect((foreign as SigilError).code, (foreign as SigilError).message).toMatch(/^ek_/);
      // The maker's CA: provisioned.
      expect(typeof (await attempt(a.tcti, 'GW-MAKER-1', manufacturer))).toBe('string');
    } finally {
      ca.close();
    }
  }, 120_000);

  it('the same TPM, connected directly, is provisioned (the refusal above is the splice)', async () => {
    const ca = openFactoryCa({ certFile: caCert, key: { keyFile: caKey } });
    const tpm = await Tpm.open(a.tcti);
    try {
      const r = await provisionDevice({
        tpm,
        ca,
        serial: 'GW-DIRECT-1',
        manifest: join(dir, 'line-direct', 'manifest.jsonl'),
        certDir: join(dir, 'line-direct', 'idevid'),
      });
      expect(r.line.ek_cert_issuer).toBeDefined();
    } finally {
      await tpm.close();
      ca.close();
    }
    expect(await keyAt(a.tcti, 0x81000100)).toBeDefined();
  }, 120_000);
});
