import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TPM_RH } from '../../../src/tpm/constants.js';
import { eccSignatureToDer } from '../../../src/tpm/crypto/signature.js';
import { marshal, unmarshal } from '../../../src/tpm/structures/codec.js';
import { tpm2bPrivate } from '../../../src/tpm/structures/basic.js';
import { publicKeySpki } from '../../../src/tpm/structures/keys.js';
import { tpm2bPublic } from '../../../src/tpm/structures/public.js';
import { isEccSignature } from '../../../src/tpm/structures/signature.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import type { KeyBlob } from '../../../src/tpm/tpm.js';
import { startSim } from './sim.js';
import type { Sim } from './sim.js';

const run = promisify(execFile);

// --- a minimal TSS2 PRIVATE KEY codec for the test (draft-bottomley-tpm2-keys) -------------
function tlv(tag: number, body: Buffer): Buffer {
  const len =
    body.length < 0x80
      ? Buffer.from([body.length])
      : body.length < 0x100
        ? Buffer.from([0x81, body.length])
        : Buffer.from([0x82, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
function children(b: Buffer): { tag: number; body: Buffer }[] {
  const out: { tag: number; body: Buffer }[] = [];
  for (let i = 0; i < b.length;) {
    const tag = b[i]!;
    let len = b[i + 1]!;
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + b[i + 2 + k]!;
      hdr = 2 + n;
    }
    out.push({ tag, body: b.subarray(i + hdr, i + hdr + len) });
    i += hdr + len;
  }
  return out;
}
function writeTss2Key(blob: KeyBlob, parent: number): string {
  const oid = tlv(0x06, Buffer.from([0x67, 0x81, 0x05, 0x0a, 0x01, 0x03])); // 2.23.133.10.1.3 loadableKey
  const emptyAuth = tlv(0xa0, tlv(0x01, Buffer.from([0xff])));
  let p = Buffer.alloc(5);
  p.writeUInt32BE(parent, 1);
  while (p.length > 1 && p[0] === 0 && !(p[1]! & 0x80)) p = p.subarray(1); // minimal DER INTEGER
  const der = tlv(
    0x30,
    Buffer.concat([
      oid,
      emptyAuth,
      tlv(0x02, p),
      tlv(0x04, Buffer.from(marshal(tpm2bPublic, blob.public))),
      tlv(0x04, Buffer.from(marshal(tpm2bPrivate, blob.private))),
    ]),
  );
  return `-----BEGIN TSS2 PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END TSS2 PRIVATE KEY-----\n`;
}
function readTss2Key(pem: string): KeyBlob {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
  const fields = children(children(der)[0]!.body);
  const octets = fields.filter((f) => f.tag === 0x04);
  return { public: unmarshal(tpm2bPublic, octets[0]!.body), private: unmarshal(tpm2bPrivate, octets[1]!.body) };
}
// -----------------------------------------------------------------------------------------------

describe('interoperability of the SRK template with OpenSSL tpm2 provider keys', () => {
  let sim: Sim;
  let env: NodeJS.ProcessEnv;
  const openssl = (args: string[]) => run('openssl', args, { env, cwd: sim.dir });

  beforeAll(async () => {
    sim = await startSim();
    env = { ...process.env, TPM2OPENSSL_TCTI: sim.tcti };
  });
  afterAll(async () => {
    await sim?.stop();
  });

  it('a key tpm2-openssl made (parent TPM_RH_OWNER) loads and signs under createSrk()', async () => {
    await openssl(['genpkey', '-provider', 'tpm2', '-algorithm', 'EC', '-pkeyopt', 'group:P-256', '-out', 'ossl.pem']);
    const blob = readTss2Key(await readFile(join(sim.dir, 'ossl.pem'), 'utf8'));
    const tpm = await Tpm.open(sim.tcti);
    try {
      await tpm.withTransient(tpm.createSrk(), (srk) =>
        tpm.withTransient(tpm.load(srk, blob), async (key) => {
          const msg = Buffer.from('interop');
          const sig = await tpm.sign(key, createHash('sha256').update(msg).digest());
          if (!isEccSignature(sig)) throw new Error('not ECDSA');
          const pub = createPublicKey({ key: publicKeySpki(key.public.value), format: 'der', type: 'spki' });
          expect(nodeVerify('sha256', msg, pub, eccSignatureToDer(sig))).toBe(true);
        }),
      );
    } finally {
      await tpm.close();
    }
  });

  it('a key Sigil made under createSrk() signs through openssl -provider tpm2', async () => {
    const tpm = await Tpm.open(sim.tcti);
    let blob: KeyBlob;
    try {
      blob = await tpm.withTransient(tpm.createSrk(), (srk) => tpm.createSigningKey(srk));
    } finally {
      await tpm.close();
    }
    await writeFile(join(sim.dir, 'sigil.pem'), writeTss2Key(blob, TPM_RH.OWNER));
    await writeFile(join(sim.dir, 'msg.txt'), 'signed by openssl with a Sigil key');
    await openssl([
      'dgst',
      '-provider',
      'tpm2',
      '-provider',
      'default',
      '-propquery',
      '?provider=tpm2',
      '-sha256',
      '-sign',
      'sigil.pem',
      '-out',
      'msg.sig',
      'msg.txt',
    ]);
    const pub = createPublicKey({ key: publicKeySpki(blob.public.value), format: 'der', type: 'spki' });
    const ok = nodeVerify(
      'sha256',
      await readFile(join(sim.dir, 'msg.txt')),
      pub,
      await readFile(join(sim.dir, 'msg.sig')),
    );
    expect(ok).toBe(true);
  });
});
