/**
 * The tpm join's cryptography against independent implementations, on real swtpm TPMs:
 *   - a quote made by `tpm2_quote` passes Sigil's quote verification (Sigil's own quotes pass
 *     `tpm2_checkquote` in test/integration/tpm/attest.test.ts);
 *   - a credential from Sigil's software MakeCredential is activated by
 *     `tpm2_activatecredential`, and one from `tpm2_makecredential` by Sigil;
 *   - EK certificates from swtpm_localca: `openssl verify` and Sigil agree on the manufacturer
 *     CA, and both refuse a TPM whose EK certificate chains elsewhere;
 *   - the TSS2 PRIVATE KEY Sigil writes: `openssl pkey -provider tpm2` derives the SPKI Sigil
 *     computed, and `openssl s_server -provider tpm2` (behind tpm2-abrmd) serves the
 *     Sigil-issued certificate with it to `openssl s_client -CAfile bundle.pem` (Verify return
 *     code: 0).
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes, X509Certificate, createPublicKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { verifyQuote } from '../../src/attest/quote.js';
import { encodePublic, parsePublic, parseSignedAttest } from '../../src/attest/structures.js';
import { checkEkForRule, readEk } from '../../src/join/ek-trust.js';
import { readTss2Pem } from '../../src/keystore/tss2-pem.js';
import { TpmSigner } from '../../src/keystore/tpm.js';
import { OWNER_PARENT, TpmAccess } from '../../src/keystore/tpm-access.js';
import { akTemplate } from '../../src/join/tpm/agent.js';
import { TPM_ALG } from '../../src/tpm/constants.js';
import { makeCredential } from '../../src/tpm/crypto/credential.js';
import { hash } from '../../src/tpm/crypto/hash.js';
import { objectName } from '../../src/tpm/name.js';
import { tpm2bEncryptedSecret, tpm2bIdObject } from '../../src/tpm/structures/basic.js';
import { marshal } from '../../src/tpm/structures/codec.js';
import { TpmReader } from '../../src/tpm/marshal.js';
import type { HttpsIssuerClient } from '../../src/transport/https/client.js';
import {
  createLocalCa,
  createSwtpm,
  readPcrs,
  simulateBoot,
  tpm2Tool,
  type SharedLocalCa,
  type SwtpmInstance,
} from '../helpers/swtpm.js';
import { startTabrmd } from '../helpers/tabrmd.js';
import { httpsClient, setTpmRules, tpmJoin, tpmRule } from '../helpers/tpm-join.js';
import { startIssuer, type Harness } from './harness.js';

const run = promisify(execFile);
const OPENSSL_TPM2 = 'apt-get install -y tpm2-openssl';

let ca: SharedLocalCa;
let foreignCa: SharedLocalCa;
let tpm: SwtpmInstance;
let foreign: SwtpmInstance;
let h: Harness;
let client: HttpsIssuerClient;

const f = (name: string): string => join(tpm.dir, name);
const tools = async (tool: string, args: string[]): Promise<string> => {
  const out = (await tpm2Tool(tpm, tool, args)).stdout;
  // swtpm has no resource manager and tpm2-tools leave their transients loaded: flush them.
  await tpm2Tool(tpm, 'tpm2_flushcontext', ['-t']);
  return out;
};

/** tpm2-tools' credential file: 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET. */
function writeCredentialFile(path: string, blob: Uint8Array, secret: Uint8Array): void {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(0xbadcc0de, 0);
  head.writeUInt32BE(1, 4);
  writeFileSync(path, Buffer.concat([head, marshal(tpm2bIdObject, blob), marshal(tpm2bEncryptedSecret, secret)]));
}
function readCredentialFile(path: string): { blob: Uint8Array; secret: Uint8Array } {
  const b = readFileSync(path);
  expect(b.readUInt32BE(0)).toBe(0xbadcc0de);
  const r = new TpmReader(b.subarray(8), 'credential file');
  return { blob: r.tpm2b('TPM2B_ID_OBJECT'), secret: r.tpm2b('TPM2B_ENCRYPTED_SECRET') };
}

async function openssl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run('openssl', args, { env: { ...process.env, ...env }, cwd: tpm.dir, maxBuffer: 1 << 22 });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    if (/tpm2/.test(err.stderr ?? '') && /provider|module/i.test(err.stderr ?? ''))
      throw new Error(`OpenSSL tpm2 provider missing (${OPENSSL_TPM2}): ${err.stderr}`);
    throw e;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

beforeAll(async () => {
  ca = await createLocalCa();
  foreignCa = await createLocalCa({ manufacturer: 'Rogue Silicon' });
  [tpm, foreign] = await Promise.all([createSwtpm({ localCa: ca }), createSwtpm({ localCa: foreignCa })]);
  await Promise.all([tpm.start(), foreign.start()]);
  await simulateBoot(tpm);
  h = await startIssuer();
  client = httpsClient(h);
}, 180_000);

afterAll(async () => {
  client?.close();
  await h?.close();
  await Promise.all([tpm?.destroy(), foreign?.destroy()]);
  ca?.destroy();
  foreignCa?.destroy();
});

describe('tpm join cryptography against tpm2-tools and openssl', () => {
  it("a quote made by tpm2_quote passes Sigil's quote and PCR digest checks", async () => {
    await tools('tpm2_createak', [
      '-C',
      '0x81010001',
      '-c',
      f('ak.ctx'),
      '-G',
      'ecc',
      '-g',
      'sha256',
      '-s',
      'ecdsa',
      '-u',
      f('ak.pub'),
      '-n',
      f('ak.name'),
    ]);
    const nonce = randomBytes(32);
    await tools('tpm2_quote', [
      '-c',
      f('ak.ctx'),
      '-l',
      'sha256:0,4,7',
      '-q',
      nonce.toString('hex'),
      '-m',
      f('q.msg'),
      '-s',
      f('q.sig'),
      '-g',
      'sha256',
    ]);
    const ak = parsePublic(readFileSync(f('ak.pub')).toString('base64'), 'ak.pub');
    const quote = parseSignedAttest(
      { attest: readFileSync(f('q.msg')).toString('base64'), signature: readFileSync(f('q.sig')).toString('base64') },
      'quote',
      'quote_invalid',
    );
    const selection = [{ bank: 'sha256' as const, pcrs: [0, 4, 7] }];
    const q = verifyQuote(quote, ak, nonce, selection);
    const pcrs = await readPcrs(tpm, 'sha256', [0, 4, 7]);
    expect(
      Buffer.from(hash(TPM_ALG.SHA256, ...[0, 4, 7].map((p) => pcrs.get(p)!))).equals(
        Buffer.from(q.attested.pcrDigest),
      ),
    ).toBe(true);
    expect(() => verifyQuote(quote, ak, randomBytes(32), selection)).toThrow(
      expect.objectContaining({ code: 'quote_nonce_mismatch' }),
    );
    expect(() => verifyQuote(quote, ak, nonce, [{ bank: 'sha256', pcrs: [0, 7] }])).toThrow(
      expect.objectContaining({ code: 'quote_invalid' }),
    );
  });

  it("Sigil's software MakeCredential is activated by tpm2_activatecredential", async () => {
    await tools('tpm2_readpublic', ['-c', '0x81010001', '-o', f('ek.pub')]);
    await tools('tpm2_createak', [
      '-C',
      '0x81010001',
      '-c',
      f('ak2.ctx'),
      '-G',
      'ecc',
      '-g',
      'sha256',
      '-s',
      'ecdsa',
      '-u',
      f('ak2.pub'),
      '-n',
      f('ak2.name'),
    ]);
    const ek = parsePublic(readFileSync(f('ek.pub')).toString('base64'), 'ek.pub');
    const secret = randomBytes(32);
    const cred = makeCredential(ek.value, readFileSync(f('ak2.name')), secret);
    writeCredentialFile(f('sigil.cred'), cred.credentialBlob, cred.secret);
    await tools('tpm2_startauthsession', ['--policy-session', '-S', f('s.ctx')]);
    await tpm2Tool(tpm, 'tpm2_policysecret', ['-S', f('s.ctx'), '-c', 'e']);
    await tpm2Tool(tpm, 'tpm2_activatecredential', [
      '-c',
      f('ak2.ctx'),
      '-C',
      '0x81010001',
      '-i',
      f('sigil.cred'),
      '-o',
      f('sigil.out'),
      '-P',
      `session:${f('s.ctx')}`,
    ]);
    await tpm2Tool(tpm, 'tpm2_flushcontext', [f('s.ctx')]);
    await tpm2Tool(tpm, 'tpm2_flushcontext', ['-t']);
    expect(readFileSync(f('sigil.out')).equals(secret)).toBe(true);
  });

  it('a credential made by tpm2_makecredential is activated by Sigil', async () => {
    await tools('tpm2_readpublic', ['-c', '0x81010001', '-o', f('ek.pub')]);
    const access = new TpmAccess(tpm.tcti);
    const akBlob = await access.run((t) => access.withParent(t, OWNER_PARENT, (srk) => t.create(srk, akTemplate())));
    const secret = randomBytes(32);
    writeFileSync(f('secret.bin'), secret);
    await run('tpm2_makecredential', [
      '-T',
      'none',
      '-e',
      f('ek.pub'),
      '-s',
      f('secret.bin'),
      '-n',
      Buffer.from(objectName(akBlob.public)).toString('hex'),
      '-o',
      f('tools.cred'),
    ]);
    const cred = readCredentialFile(f('tools.cred'));
    const got = await access.run(async (t) => {
      const ak = await access.withParent(t, OWNER_PARENT, (srk) => t.load(srk, akBlob));
      return t.withTransient(ak, (k) =>
        t.withTransient(t.readEkPublic('rsa-2048'), (ek) => t.activateCredential(k, ek, cred.blob, cred.secret)),
      );
    });
    expect(Buffer.from(got).equals(secret)).toBe(true);
  });

  it('EK certificates from swtpm_localca: openssl verify and Sigil agree; a foreign manufacturer is refused by both', async () => {
    const rule = { name: 'racks', bot: 'gw', config: { ek_ca_files: [...ca.caFiles] } };
    for (const [t, trusted] of [
      [tpm, true],
      [foreign, false],
    ] as const) {
      for (const [index, kind] of [
        ['0x01c00002', 'rsa-2048'],
        ['0x01c00016', 'ecc-p384'],
      ] as const) {
        const der = join(t.dir, `ek-${kind}.der`);
        await tpm2Tool(t, 'tpm2_nvread', [index, '-o', der]);
        const raw = readFileSync(der);
        const cert = new X509Certificate(raw.subarray(0, 4 + raw.readUInt16BE(2)));
        writeFileSync(`${der}.pem`, cert.toString());
        const ov = await run('openssl', [
          'verify',
          '-CAfile',
          ca.rootCert,
          '-untrusted',
          ca.issuerCert,
          `${der}.pem`,
        ]).then(
          (r) => r.stdout,
          (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`,
        );
        expect(ov.includes(': OK'), `openssl verify ${kind}: ${ov}`).toBe(trusted);
        const ekPub = await new TpmAccess(t.tcti).run((x) =>
          x.withTransient(x.readEkPublic(kind), async (k) => k.public),
        );
        const ek = readEk({ ek_public: encodePublic(ekPub), ek_cert: cert.raw.toString('base64') });
        const sigil = await checkEkForRule(ek, rule, new Date()).then(
          () => 'ok',
          (e: unknown) => (e as SigilError).code,
        );
        expect(sigil).toBe(trusted ? 'ok' : 'ek_untrusted');
      }
    }
  });

  it('the EK hash recipes of docs/join-tpm.md (openssl over the EK certificate, tpm2_readpublic -f der) give the hash the issuer records', async () => {
    await setTpmRules(h, tpmRule('racks', `ek_ca_files: [${ca.rootCert}, ${ca.issuerCert}]`));
    const joined = await tpmJoin(h, client, tpm);
    const recorded = (await h.ctx.stores.instances.get(joined.payload.result.instance_id))!.facts.ek_public_hash;
    const sh = (cmd: string): Promise<string> =>
      run('bash', ['-c', cmd], { cwd: tpm.dir, env: { ...process.env, ...tpm.env } }).then(
        (r) => r.stdout.split(/\s/)[0]!,
      );
    const fromCert = await sh(
      'tpm2_nvread 0x01c00002 -o ek.der 2>/dev/null && openssl x509 -inform DER -in ek.der -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum',
    );
    const fromPublic = await sh(
      'tpm2_readpublic -c 0x81010001 -f der -o ek.spki.der >/dev/null && sha256sum ek.spki.der',
    );
    await tpm2Tool(tpm, 'tpm2_flushcontext', ['-t']);
    expect(`sha256:${fromCert}`).toBe(recorded);
    expect(`sha256:${fromPublic}`).toBe(recorded);
  });

  it('the TSS2 key Sigil writes serves the Sigil-issued certificate through openssl s_server -provider tpm2', async () => {
    await setTpmRules(h, tpmRule('racks', `ek_ca_files: [${ca.rootCert}, ${ca.issuerCert}]`));
    const joined = await tpmJoin(h, client, tpm);
    const key = joined.identity;
    writeFileSync(f('svid.tss2.pem'), key.toTss2Pem());
    writeFileSync(f('svid.pem'), joined.payload.result.chain[0]!);
    writeFileSync(f('chain.pem'), joined.payload.result.chain.slice(1).join(''));
    writeFileSync(f('bundle.pem'), joined.payload.result.bundle.join(''));
    // Our own reader gets the blobs back.
    expect(readTss2Pem(readFileSync(f('svid.tss2.pem'), 'utf8'))).toMatchObject({
      parent: OWNER_PARENT,
      emptyAuth: true,
    });
    // OpenSSL derives the same public key (straight on swtpm: one key, one command sequence).
    await openssl(
      [
        'pkey',
        '-provider',
        'tpm2',
        '-provider',
        'default',
        '-in',
        'svid.tss2.pem',
        '-pubout',
        '-outform',
        'DER',
        '-out',
        'svid.pub.der',
      ],
      { TPM2OPENSSL_TCTI: tpm.tcti },
    );
    expect(readFileSync(f('svid.pub.der')).equals(key.publicKeySpki())).toBe(true);
    expect(
      createPublicKey({ key: readFileSync(f('svid.pub.der')), format: 'der', type: 'spki' }).equals(
        new X509Certificate(readFileSync(f('svid.pem'))).publicKey,
      ),
    ).toBe(true);

    const broker = await startTabrmd(tpm.tcti);
    try {
      const port = await freePort();
      const server = spawn(
        'openssl',
        [
          's_server',
          '-provider',
          'tpm2',
          '-provider',
          'default',
          '-propquery',
          '?provider=tpm2',
          '-accept',
          `127.0.0.1:${port}`,
          '-cert',
          'svid.pem',
          '-cert_chain',
          'chain.pem',
          '-key',
          'svid.tss2.pem',
          '-naccept',
          '1',
        ],
        {
          cwd: tpm.dir,
          env: broker.env,
          stdio: ['pipe', 'pipe', 'pipe'],
        },
      );
      let serverOut = '';
      server.stdout.on('data', (d: Buffer) => (serverOut += d.toString()));
      server.stderr.on('data', (d: Buffer) => (serverOut += d.toString()));
      for (let i = 0; i < 200 && !serverOut.includes('ACCEPT'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(serverOut, serverOut).toContain('ACCEPT');
      const out = await new Promise<string>((resolve) => {
        const c = spawn(
          'openssl',
          ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', 'bundle.pem', '-verify_return_error'],
          { cwd: tpm.dir, stdio: ['pipe', 'pipe', 'pipe'] },
        );
        let text = '';
        c.stdout.on('data', (d: Buffer) => (text += d.toString()));
        c.stderr.on('data', (d: Buffer) => (text += d.toString()));
        c.on('close', () => resolve(text));
        setTimeout(() => c.stdin.end('Q\n'), 500);
      });
      server.kill('SIGTERM');
      expect(out, `${out}\n--- server ---\n${serverOut}`).toMatch(/Verify return code: 0 \(ok\)/);
      expect(out).toContain(`subject=O = example.org, CN = ${joined.payload.result.instance_id}`);
    } finally {
      await broker.stop();
    }
    // The agent-side key still signs once the broker is gone (Sigil talks to swtpm directly again),
    // rebuilt from its reference as after an agent restart.
    const again = TpmSigner.fromRef(key.ref, new TpmAccess(key.ref.tcti));
    expect((await again.sign(Buffer.from('after tabrmd'))).length).toBeGreaterThan(60);
  });
});
