/**
 * The PKCS#11 keystore against SoftHSM2, with a token initialised by the test in a temp dir:
 * keys are generated on the token and cannot be read out, signatures verify with node:crypto,
 * sessions recover, the PIN stays out of errors and references, and joins (x509 with a token
 * device key, token join with a token identity key) and a renewal work end to end over HTTPS.
 */
import { execFileSync } from 'node:child_process';
import { constants, createPublicKey, verify, X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { runJoinExchange } from '../../src/join/exchange.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { X509JoinAgent } from '../../src/join/x509/agent.js';
import { x509JoinAgentFromConfig } from '../../src/join/x509/config.js';
import {
  createPkcs11Signer,
  createSigner,
  loadSigner,
  parseKeyRef,
  Pkcs11Signer,
  removeKey,
  serializeKeyRef,
  type KeyRef,
  type Pkcs11KeyRef,
  type Signer,
} from '../../src/keystore/index.js';
import { acquireModule, findSlot, isModuleLoaded, pkcs11js, releaseModule } from '../../src/keystore/pkcs11/module.js';
import { spkiPin } from '../../src/pki/chain.js';
import { buildCsr } from '../../src/pki/csr.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { signJws } from '../../src/protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../../src/protocol/messages.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { newRequestId } from '../../src/util/secret.js';
import { tempDir } from '../helpers/cli.js';
import { OpensslPki, openssl } from '../helpers/openssl-pki.js';
import { startIssuer, type Harness } from './harness.js';
import { namedSigner } from '../../src/agent/named-signer.js';

const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const PIN = '4711-secret-pin';
const SO_PIN = '5678';

const tmp = tempDir('sigil-pkcs11-');
const pinFile = joinPath(tmp.path, 'pin');
const base = (): Omit<Pkcs11KeyRef, 'storage' | 'keyLabel' | 'keyId'> => ({
  module: MODULE,
  tokenLabel: 'sigil',
  pinFile,
});

function setupToken(): void {
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('softhsm2-util not found; install it with: sudo apt-get install -y softhsm2 opensc');
  }
  const tokens = joinPath(tmp.path, 'tokens');
  mkdirSync(tokens);
  const conf = joinPath(tmp.path, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  // SoftHSM reads SOFTHSM2_CONF at C_Initialize; vitest runs this file in its own process.
  process.env.SOFTHSM2_CONF = conf;
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'sigil', '--pin', PIN, '--so-pin', SO_PIN], {
    env: process.env,
    stdio: 'ignore',
  });
  writeFileSync(pinFile, `${PIN}\n`, { mode: 0o600 });
}

/** Private-key attributes, read with a session of our own. */
function privateKeyAttributes(
  ref: Pkcs11KeyRef,
  types: number[],
): Array<{ type: number; value?: Buffer; error?: string }> {
  const P = pkcs11js();
  const lib = acquireModule(MODULE);
  const session = lib.C_OpenSession(findSlot(lib, 'sigil'), P.CKF_SERIAL_SESSION);
  try {
    try {
      lib.C_Login(session, P.CKU_USER, PIN);
    } catch {
      // already logged in through another session of this process
    }
    lib.C_FindObjectsInit(session, [
      { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
      { type: P.CKA_LABEL, value: ref.keyLabel! },
    ]);
    const [key] = lib.C_FindObjects(session, 1);
    lib.C_FindObjectsFinal(session);
    return types.map((type) => {
      try {
        return { type, value: lib.C_GetAttributeValue(session, key!, [{ type }])[0]!.value };
      } catch (e) {
        return { type, error: (e as Error).message };
      }
    });
  } finally {
    lib.C_CloseSession(session);
    releaseModule(MODULE);
  }
}

let h: Harness;
let client: HttpsIssuerClient;
let pki: OpensslPki;

beforeAll(async () => {
  setupToken();
  h = await startIssuer();
  client = new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin: spkiPin(Buffer.from(h.rootPem)) });
  pki = new OpensslPki(joinPath(tmp.path, 'pki'));
}, 60_000);

afterAll(async () => {
  client?.close();
  await h?.close();
  tmp.cleanup();
});

describe('PKCS#11 keystore on SoftHSM2', () => {
  it('generates a P-256 key on the token that signs, verifies with node:crypto, and cannot be read out', async () => {
    const { signer, ref } = await createPkcs11Signer(base());
    try {
      expect(signer.storage).toBe('pkcs11');
      expect(signer.exportable).toBe(false);
      expect(signer.algorithm).toBe('ES256');
      const data = Buffer.from('sigil pkcs11 test');
      const sig = await signer.sign(data);
      const pub = createPublicKey({ key: signer.publicKeySpki(), format: 'der', type: 'spki' });
      expect(pub.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
      expect(verify('sha256', data, { key: pub, dsaEncoding: 'der' }, sig)).toBe(true);

      const P = pkcs11js();
      const [value, extractable, sensitive, neverExtractable] = privateKeyAttributes(ref as Pkcs11KeyRef, [
        P.CKA_VALUE,
        P.CKA_EXTRACTABLE,
        P.CKA_SENSITIVE,
        P.CKA_NEVER_EXTRACTABLE,
      ]);
      expect(value!.error).toBe('CKR_ATTRIBUTE_SENSITIVE');
      expect(extractable!.value).toEqual(Buffer.from([0]));
      expect(sensitive!.value).toEqual(Buffer.from([1]));
      expect(neverExtractable!.value).toEqual(Buffer.from([1]));

      // The reference is enough to find the key again (the agent stores it), and holds no PIN.
      const json = serializeKeyRef(ref);
      expect(json).not.toContain(PIN);
      const again = loadSigner(parseKeyRef(json));
      expect(again.publicKeySpki().equals(signer.publicKeySpki())).toBe(true);
      const sig2 = await again.sign(data);
      expect(verify('sha256', data, { key: pub, dsaEncoding: 'der' }, sig2)).toBe(true);
      again.close?.();
    } finally {
      signer.close?.();
    }
    // The last signer on the module closed: C_Finalize ran and the module is unloaded.
    expect(isModuleLoaded(MODULE)).toBe(false);
  });

  it('reopens its session when the token dropped it (CKR_SESSION_HANDLE_INVALID)', async () => {
    const { signer } = await createPkcs11Signer(base());
    try {
      const lib = acquireModule(MODULE);
      lib.C_CloseAllSessions(findSlot(lib, 'sigil'));
      releaseModule(MODULE);
      const data = Buffer.from('after the reset');
      const sig = await signer.sign(data);
      expect(
        verify(
          'sha256',
          data,
          { key: createPublicKey({ key: signer.publicKeySpki(), format: 'der', type: 'spki' }), dsaEncoding: 'der' },
          sig,
        ),
      ).toBe(true);
    } finally {
      signer.close?.();
    }
  });

  it('signs with RSA keys on the token (PS256 and RS256) for device keys', async () => {
    execFileSync(
      'pkcs11-tool',
      [
        '--module',
        MODULE,
        '--token-label',
        'sigil',
        '--login',
        '--pin',
        PIN,
        '--keypairgen',
        '--key-type',
        'rsa:2048',
        '--label',
        'rsa-device',
        '--id',
        'a1b2',
      ],
      { env: process.env, stdio: 'ignore' },
    );
    const data = Buffer.from('device challenge');
    for (const rsa of ['PS256', 'RS256'] as const) {
      const s = Pkcs11Signer.open({ storage: 'pkcs11', ...base(), keyLabel: 'rsa-device' }, { rsa });
      try {
        expect(s.algorithm).toBe(rsa);
        const pub = createPublicKey({ key: s.publicKeySpki(), format: 'der', type: 'spki' });
        const padding =
          rsa === 'PS256'
            ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
            : { padding: constants.RSA_PKCS1_PADDING };
        expect(verify('sha256', data, { key: pub, ...padding }, await s.sign(data))).toBe(true);
      } finally {
        s.close();
      }
    }
    // An RSA key cannot be an identity key (JWS envelopes are ES256/ES384).
    expect(() => loadSigner({ storage: 'pkcs11', ...base(), keyId: 'a1b2' })).toThrow(/identity keys must be ECDSA/);
  });

  it('keeps the PIN out of errors: a wrong PIN, a missing PIN variable, a pin-value URI', () => {
    const wrong = joinPath(tmp.path, 'wrong-pin');
    writeFileSync(wrong, '999999-not-it\n', { mode: 0o600 });
    let err: unknown;
    try {
      Pkcs11Signer.open({
        storage: 'pkcs11',
        module: MODULE,
        tokenLabel: 'sigil',
        keyLabel: 'rsa-device',
        pinFile: wrong,
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SigilError);
    expect((err as SigilError).code).toBe('config_invalid');
    expect((err as SigilError).message).toMatch(/CKR_PIN_INCORRECT/);
    expect((err as SigilError).message).not.toContain('999999');
    expect(String((err as Error).stack)).not.toContain('999999');
    // The same wrong PIN is not presented to the token again (tokens lock after a few); a corrected PIN file is.
    expect(() =>
      Pkcs11Signer.open({
        storage: 'pkcs11',
        module: MODULE,
        tokenLabel: 'sigil',
        keyLabel: 'rsa-device',
        pinFile: wrong,
      }),
    ).toThrow(/refused this PIN before/);
    // Remembered per token, not per key or per load: another key on it is not tried with that PIN either,
    // although the module was finalised in between (the failed opens released it).
    expect(() =>
      Pkcs11Signer.open({
        storage: 'pkcs11',
        module: MODULE,
        tokenLabel: 'sigil',
        keyLabel: 'another-key',
        pinFile: wrong,
      }),
    ).toThrow(/refused this PIN before/);
    writeFileSync(wrong, `${PIN}\n`, { mode: 0o600 });
    Pkcs11Signer.open({
      storage: 'pkcs11',
      module: MODULE,
      tokenLabel: 'sigil',
      keyLabel: 'rsa-device',
      pinFile: wrong,
    }).close();

    expect(() =>
      Pkcs11Signer.open({
        storage: 'pkcs11',
        module: MODULE,
        tokenLabel: 'sigil',
        keyLabel: 'x',
        pinEnv: 'SIGIL_TEST_NO_SUCH_PIN',
      }),
    ).toThrow(/SIGIL_TEST_NO_SUCH_PIN.*not set/);
    process.env.SIGIL_TEST_PIN = PIN;
    const viaEnv = Pkcs11Signer.open({
      storage: 'pkcs11',
      module: MODULE,
      tokenLabel: 'sigil',
      keyLabel: 'rsa-device',
      pinEnv: 'SIGIL_TEST_PIN',
    });
    viaEnv.close();
    expect(() =>
      x509JoinAgentFromConfig({ cert: '/nonexistent', key_uri: `pkcs11:token=sigil;object=k?pin-value=${PIN}` }),
    ).toThrow(/pin-value is refused/);
    expect(() =>
      Pkcs11Signer.open({ storage: 'pkcs11', module: MODULE, tokenLabel: 'nope', keyLabel: 'x', pinFile }),
    ).toThrow(/no PKCS#11 token labelled "nope" \(tokens present: "sigil"/);
    expect(() => Pkcs11Signer.open({ storage: 'pkcs11', ...base(), keyLabel: 'no-such-key' })).toThrow(
      /no private key "no-such-key"/,
    );
  });
});

describe('joins and renewals with keys on the token, over HTTPS', () => {
  it('x509 join: device key and identity key both on the token; the agent config form works too', async () => {
    // The factory CA is plain openssl; the device key is generated on the token and certified via a CSR it signed.
    const root = pki.root('root', '/O=Acme/CN=Acme Factory Root', 'ec');
    const device = Pkcs11Signer.generate({ ...base(), keyLabel: 'idevid' });
    const csrFile = pki.path('idevid.csr');
    writeFileSync(
      csrFile,
      toPem('CERTIFICATE REQUEST', await buildCsr(device as unknown as Signer, { commonName: 'gw-hsm-1' })),
    );
    const leaf = pki.leaf('idevid', root, '/O=Acme/CN=gw-hsm-1', { csr: csrFile });
    expect(openssl(['verify', '-CAfile', root.cert, leaf.cert])).toContain('OK');
    await runAdminOp(h.ctx.stores, 'apply', {
      yaml: `kind: join_rule\nname: hsm\nspec:\n  method: x509\n  bot: gw\n  x509:\n    ca_files: [${root.cert}]\n    allow: [ { subject_cn: "gw-hsm-*" } ]\n`,
    });

    const { signer: identity, ref } = await createPkcs11Signer(base());
    try {
      const r = await runJoinExchange({
        method: new X509JoinAgent({ chain: [fromPem(leaf.pem)], key: device }),
        identity,
        send: (env) => client.post('join', env),
        rootPem: () => client.ensureRoot(),
      });
      expect(r.challenges).toBe(1);
      const svid = new X509Certificate(r.payload.result.chain[0]!);
      expect(svid.publicKey.export({ type: 'spki', format: 'der' }).equals(identity.publicKeySpki())).toBe(true);
      expect((await h.ctx.stores.instances.get(r.payload.result.instance_id))!.facts).toMatchObject({
        x509_rule: 'hsm',
        x509_subject: 'CN=gw-hsm-1',
      }); // the subject of the token-signed CSR
      expect((ref as Pkcs11KeyRef).keyLabel).toMatch(/^sigil-/);
    } finally {
      device.close();
      identity.close?.();
    }

    // The agent.yaml form: key_uri + pkcs11.module + pin_file.
    const fromConfig = x509JoinAgentFromConfig({
      cert: leaf.cert,
      key_uri: 'pkcs11:token=sigil;object=idevid;type=private',
      pkcs11: { module: MODULE, pin_file: pinFile },
    });
    try {
      const r2 = await runJoinExchange({
        method: fromConfig,
        identity: createSigner('software').signer,
        send: (env) => client.post('join', env),
        rootPem: () => client.ensureRoot(),
      });
      expect(r2.payload.result.generation).toBe(2);
    } finally {
      fromConfig.close();
    }
  });

  it('token join with a token-resident identity key, then a renewal to a new token key; the old key is removed', async () => {
    const token = await h.token();
    const { signer: identity, ref } = await createPkcs11Signer(base());
    const joined = await runJoinExchange({
      method: new TokenJoinAgent(token),
      identity,
      send: (env) => client.post('join', env),
      rootPem: () => client.ensureRoot(),
    });
    expect(joined.challenges).toBe(0);
    expect(joined.payload.result.generation).toBe(1);

    // Renew: CSR of a new token key, envelope signed by the current token key with its chain.
    const { signer: next, ref: nextRef } = await createPkcs11Signer(base());
    const requestId = newRequestId();
    const payload = {
      v: PROTOCOL_VERSION,
      op: 'renew',
      request_id: requestId,
      timestamp: h.ctx.now(),
      ...namedSigner(joined.payload.result.chain),
      csr: toPem('CERTIFICATE REQUEST', await buildCsr(next)),
      key_storage: 'pkcs11',
    };
    const env = await signJws(
      identity,
      TYP_REQUEST,
      payload,
      joined.payload.result.chain.map((c) => fromPem(c, 'CERTIFICATE')),
    );
    const renewed = verifyResponse(await client.post('renew', env), 'renew', requestId, await client.ensureRoot());
    expect(renewed.result.generation).toBe(2);
    expect(
      new X509Certificate(renewed.result.chain[0]!).publicKey
        .export({ type: 'spki', format: 'der' })
        .equals(next.publicKeySpki()),
    ).toBe(true);

    identity.close?.();
    expect(removeKey(ref as KeyRef)).toBe(true);
    expect(() => loadSigner(ref)).toThrow(/no private key/);
    // Removing again (after a crash between removing and recording it) is not an error.
    expect(removeKey(ref as KeyRef)).toBe(false);
    next.close?.();
    removeKey(nextRef);
  });
});
