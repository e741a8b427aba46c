/**
 * x509 join end to end, in process, over real HTTPS on loopback: device chains made by plain
 * `openssl` (an enterprise root + intermediate, EC P-256/P-384 and RSA keys), the two-round
 * challenge exchange (join/exchange.ts) through the agent's HTTPS client, every refusal with its
 * own code and one audit row, and `openssl verify` agreeing with Sigil on every chain.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign as cryptoSign,
  X509Certificate,
} from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { runJoinExchange, type JoinExchangeResult } from '../../src/join/exchange.js';
import type { JoinMethodAgent } from '../../src/join/types.js';
import { X509JoinAgent } from '../../src/join/x509/agent.js';
import { x509JoinAgentFromConfig } from '../../src/join/x509/config.js';
import { x509MachineId } from '../../src/join/x509/server.js';
import { PemKeySigner, SoftwareSigner, type DeviceSigner } from '../../src/keystore/index.js';
import { spkiPin } from '../../src/pki/chain.js';
import type { Jws } from '../../src/protocol/jws.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { sigil, tempDir } from '../helpers/cli.js';
import { OpensslPki, opensslVerify, type Issued } from '../helpers/openssl-pki.js';
import {
  expectJoinRefusedBy,
  expectRefusal,
  joinPayload,
  sign as signEnvelope,
  startIssuer,
  type Harness,
} from './harness.js';

const tmp = tempDir('sigil-x509-');
const pki = new OpensslPki(joinPath(tmp.path, 'pki'));
let h: Harness;
let client: HttpsIssuerClient;

// --- the PKI, all made with openssl ---------------------------------------------------------
let root: Issued; // Acme enterprise root (EC P-384)
let inter: Issued; // Acme device CA (RSA 2048), pathlen 0, with an `openssl ca` dir for CRLs
const leaves: Record<string, Issued> = {};
let crlFile: string;
let labRoot: Issued; // a second enterprise root for path edge cases (no CRL, not registered_only)
const lab: Record<string, Issued> = {};

function buildPki(): void {
  root = pki.root('root', '/O=Acme Enterprise/CN=Acme Root CA', 'ec384');
  inter = pki.intermediate('inter', root, '/O=Acme Enterprise/OU=Devices/CN=Acme Device CA', 'rsa');
  const ca = pki.caDir(inter);
  const subj = (cn: string, serial: string): string => `/O=Acme/OU=Gateways/serialNumber=${serial}/CN=${cn}`;
  leaves.ec = pki.leaf('gw-ec-01', inter, subj('gw-ec-01', 'GW0001'), {
    kind: 'ec',
    san: 'DNS:gw-ec-01.devices.acme.test',
  });
  leaves.rsa = pki.leaf('gw-rsa-02', inter, subj('gw-rsa-02', 'GW0002'), {
    kind: 'rsa',
    ext: [
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = clientAuth',
    ],
  });
  leaves.p384 = pki.leaf('gw-p384-03', inter, subj('gw-p384-03', 'GW0003'), { kind: 'ec384' });
  leaves.unregistered = pki.leaf('gw-unreg-04', inter, subj('gw-unreg-04', 'GW0004'), { kind: 'ec' });
  leaves.revoked = pki.leaf('gw-revoked-05', inter, subj('gw-revoked-05', 'GW0005'), { kind: 'ec' });
  // Validity entirely in the past, made by `openssl ca -startdate/-enddate` (no faketime needed).
  leaves.expired = ca.issueDated(
    'gw-expired-06',
    subj('gw-expired-06', 'GW0006'),
    '20200101000000Z',
    '20210101000000Z',
  );
  leaves.notAllowed = pki.leaf('db-07', inter, subj('db-07', 'DB0007'), { kind: 'ec' });
  // A real device whose manifest line was edited on its way to the issuer: registered under
  // another device's serial (GW0001, leaves.ec's).
  leaves.renamed = pki.leaf('gw-renamed-09', inter, subj('gw-renamed-09', 'GW0009'), { kind: 'ec' });
  // One that names its serial only in the URI SAN sigil factory writes (no subject serialNumber).
  leaves.sanNamed = pki.leaf('gw-san-11', inter, '/O=Acme/OU=Gateways/CN=gw-san-11', {
    kind: 'ec',
    san: 'URI:urn:sigil:device:GW0011',
  });
  ca.revoke(leaves.revoked);
  crlFile = ca.gencrl(pki.path('inter.crl'));

  const rogueRoot = pki.root('rogue-root', '/O=Rogue/CN=Rogue Root CA', 'ec');
  leaves.rogue = pki.leaf('gw-rogue', rogueRoot, subj('gw-rogue-08', 'GW0008'), { kind: 'ec' });

  labRoot = pki.root('lab-root', '/O=Acme Lab/CN=Acme Lab Root', 'ec');
  lab.inter = pki.intermediate('lab-inter', labRoot, '/O=Acme Lab/CN=Lab Issuing CA', 'ec');
  lab.nc = pki.intermediate('lab-nc', labRoot, '/O=Acme Lab/CN=Lab Constrained CA', 'ec', [
    'basicConstraints = critical,CA:TRUE,pathlen:0',
    'nameConstraints = critical,permitted;DNS:.good.lab.test',
  ]);
  lab.ncOk = pki.leaf('lab-nc-ok', lab.nc, '/O=Acme Lab/CN=lab-nc-ok', { san: 'DNS:dev1.good.lab.test' });
  lab.ncBad = pki.leaf('lab-nc-bad', lab.nc, '/O=Acme Lab/CN=lab-nc-bad', { san: 'DNS:dev1.bad.lab.test' });
  lab.pl0 = pki.intermediate('lab-pl0', labRoot, '/O=Acme Lab/CN=Lab pathlen0 CA', 'ec', [
    'basicConstraints = critical,CA:TRUE,pathlen:0',
  ]);
  lab.sub = pki.intermediate('lab-sub', lab.pl0, '/O=Acme Lab/CN=Lab Sub CA', 'ec', [
    'basicConstraints = critical,CA:TRUE',
  ]);
  lab.plLeaf = pki.leaf('lab-pl-leaf', lab.sub, '/O=Acme Lab/CN=lab-pl-leaf');
  lab.noDs = pki.leaf('lab-no-ds', lab.inter, '/O=Acme Lab/CN=lab-no-ds', {
    kind: 'rsa',
    ext: ['basicConstraints = critical,CA:FALSE', 'keyUsage = critical,keyEncipherment'],
  });
  lab.crit = pki.leaf('lab-crit', lab.inter, '/O=Acme Lab/CN=lab-crit', {
    ext: [
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature',
      '1.3.6.1.4.1.55555.1 = critical,ASN1:UTF8String:must-understand',
    ],
  });
  lab.weak = pki.leaf('lab-weak', lab.inter, '/O=Acme Lab/CN=lab-weak', { kind: 'rsa1024' });
  lab.sha1 = pki.leaf('lab-sha1', lab.inter, '/O=Acme Lab/CN=lab-sha1', { md: 'sha1' });
  // A CA with the very name of the lab issuing CA but another key: its leaf names the right issuer.
  lab.forged = pki.root('lab-forged', '/O=Acme Lab/CN=Lab Issuing CA', 'ec');
  lab.forgedLeaf = pki.leaf('lab-forged-leaf', lab.forged, '/O=Acme Lab/CN=lab-forged-leaf');
  // An end-entity certificate used as if it were a CA.
  lab.notCa = pki.leaf('lab-not-ca', lab.inter, '/O=Acme Lab/CN=lab-not-ca');
  lab.underNotCa = pki.leaf('lab-under-not-ca', lab.notCa, '/O=Acme Lab/CN=lab-under-not-ca');
}

const RULES = (): string => `
kind: join_rule
name: factory
spec:
  method: x509
  bot: gw
  x509:
    ca_files: [${root.cert}]
    crl_files: [${crlFile}]
    allow: [ { subject_cn: "gw-*" } ]
    registered_only: true
---
kind: join_rule
name: lab
spec:
  method: x509
  bot: gw
  x509:
    ca_files: [${labRoot.cert}]
`;

// --- the agent side ---------------------------------------------------------------------------

/** Run the whole exchange over the agent's HTTPS client, with a fresh software identity key. */
async function exchange(
  method: JoinMethodAgent,
  opts: { sent?: Jws[]; requestId?: string } = {},
): Promise<JoinExchangeResult & { identity: SoftwareSigner }> {
  const identity = SoftwareSigner.generate();
  const r = await runJoinExchange({
    method,
    identity,
    send: (env) => {
      opts.sent?.push(env);
      return client.post('join', env);
    },
    rootPem: () => client.ensureRoot(),
    now: () => h.ctx.now(),
    ...(opts.requestId ? { requestId: opts.requestId } : {}),
  });
  return { ...r, identity };
}

/** A device signer over any RSA key file (PemKeySigner itself refuses keys under 2048 bits). */
function rawRsaSigner(keyFile: string): DeviceSigner {
  const key = createPrivateKey(readFileSync(keyFile));
  return {
    storage: 'software',
    exportable: true,
    algorithm: 'RS256',
    publicKeySpki: () => Buffer.from(createPublicKey(key).export({ type: 'spki', format: 'der' })),
    sign: (data) => Promise.resolve(cryptoSign('sha256', data, key)),
  };
}

function agentFor(leaf: Issued, opts: { rsa?: 'PS256' | 'RS256'; chain?: Issued[] } = {}): X509JoinAgent {
  const chain = [leaf.pem, ...(opts.chain ?? [inter]).map((c) => c.pem)].join('');
  return X509JoinAgent.fromPem(chain, PemKeySigner.fromFile(leaf.key, opts.rsa ? { rsa: opts.rsa } : {}));
}

/** Expect the exchange to be refused with `code`, and exactly one new audit row saying so. */
const expectJoinRefused = (method: JoinMethodAgent, code: string): Promise<SigilError> =>
  expectJoinRefusedBy(h, 'x509', () => exchange(method), code);

beforeAll(async () => {
  buildPki();
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', { yaml: RULES() });
  client = new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin: spkiPin(Buffer.from(h.rootPem)) });
  // Register the factory devices with the real CLI (local mode beside the running issuer).
  const manifest = joinPath(tmp.path, 'manifest.jsonl');
  const registered = [leaves.ec!, leaves.rsa!, leaves.p384!, leaves.revoked!, leaves.expired!, leaves.notAllowed!];
  writeFileSync(
    manifest,
    registered
      .map((l, i) =>
        JSON.stringify({
          serial: `GW000${i + 1}`,
          idevid_fingerprint: pki.fingerprint(l.cert),
          provisioned_at: '2025-01-01T00:00:00Z',
        }),
      )
      .join('\n') +
      '\n' +
      JSON.stringify({ serial: 'GW0001', idevid_fingerprint: pki.fingerprint(leaves.renamed!.cert) }) +
      '\n' +
      JSON.stringify({ serial: 'GW0002', idevid_fingerprint: pki.fingerprint(leaves.sanNamed!.cert) }) +
      '\n',
  );
  const r = await sigil([
    'ctl',
    '--data-dir',
    h.dir,
    'devices',
    'import',
    manifest,
    '--rule',
    'factory',
    '--format',
    'json',
  ]);
  expect(r.stderr).toBe('');
  expect(JSON.parse(r.stdout)).toMatchObject({ lines: 8, created: 8, updated: 0, unchanged: 0, rule: 'factory' });
}, 120_000);

afterAll(async () => {
  client?.close();
  await h?.close();
  tmp.cleanup();
});

describe('x509 join with an openssl-made enterprise PKI', () => {
  it('joins an EC P-256 device in two rounds; the instance id comes from the device key', async () => {
    const sent: Jws[] = [];
    const r = await exchange(agentFor(leaves.ec!), { sent });
    expect(r.challenges).toBe(1);
    expect(sent).toHaveLength(2);
    const spki = Buffer.from(new X509Certificate(leaves.ec!.pem).publicKey.export({ type: 'spki', format: 'der' }));
    expect(r.payload.result.instance_id).toBe(x509MachineId(spki));
    expect(r.payload.result.spiffe_id).toBe(`spiffe://example.org/bot/gw/${x509MachineId(spki)}`);
    expect(r.payload.result.generation).toBe(1);
    // The SVID is for the identity key, not the device key.
    const svid = new X509Certificate(r.payload.result.chain[0]!);
    expect(svid.publicKey.export({ type: 'spki', format: 'der' }).equals(r.identity.publicKeySpki())).toBe(true);
    const inst = (await h.ctx.stores.instances.get(r.payload.result.instance_id))!;
    expect(inst.joinMethod).toBe('x509');
    expect(inst.facts).toMatchObject({
      x509_rule: 'factory',
      x509_subject: 'O=Acme, OU=Gateways, serialNumber=GW0001, CN=gw-ec-01',
      device_serial: 'GW0001',
      x509_key: 'ec-p256',
      x509_proof_alg: 'ES256',
    });
    const audit = (await h.ctx.stores.audit.list()).filter((a) => a.action === 'join' && a.outcome === 'ok').at(-1)!;
    expect(audit.details).toMatchObject({
      x509_rule: 'factory',
      x509_fingerprint: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
    });
  });

  it('joins RSA devices with PSS and with PKCS#1 v1.5, and a P-384 device, via the agent config', async () => {
    const pss = await exchange(
      x509JoinAgentFromConfig({ cert: leaves.rsa!.cert, chain: inter.cert, key: leaves.rsa!.key }),
    );
    expect((await h.ctx.stores.instances.get(pss.payload.result.instance_id))!.facts).toMatchObject({
      x509_proof_alg: 'PS256',
      x509_key: 'rsa',
    });
    const pkcs1 = await exchange(
      x509JoinAgentFromConfig({ cert: leaves.rsa!.cert, chain: inter.cert, key: leaves.rsa!.key, rsa_scheme: 'pkcs1' }),
    );
    expect(pkcs1.payload.result.instance_id).toBe(pss.payload.result.instance_id);
    expect(pkcs1.payload.result.generation).toBe(2);
    const p384 = await exchange(agentFor(leaves.p384!));
    expect((await h.ctx.stores.instances.get(p384.payload.result.instance_id))!.facts).toMatchObject({
      x509_proof_alg: 'ES384',
      x509_key: 'ec-p384',
    });
  });

  it('re-attests by itself after the identity expired: same instance, next generation', async () => {
    const agent = agentFor(leaves.ec!);
    const first = await exchange(agent);
    const before = first.payload.result;
    h.clock.offsetMs = before.not_after - Date.now() + 60 * 60_000; // an hour past expiry
    try {
      const again = await exchange(agent);
      expect(again.payload.result.instance_id).toBe(before.instance_id);
      expect(again.payload.result.generation).toBe(before.generation + 1);
      expect(again.payload.result.not_before).toBeGreaterThan(before.not_after);
    } finally {
      h.clock.offsetMs = 0;
    }
  });

  it('refuses a device that is not in the imported manifest: device_not_registered', async () => {
    const e = await expectJoinRefused(agentFor(leaves.unregistered!), 'device_not_registered');
    expect(e.message).toContain('sigil ctl --data-dir <issuer-data-dir> devices import');
  });

  it('refuses a device registered under a serial its certificate does not name (an edited manifest): device_serial_mismatch', async () => {
    const e = await expectJoinRefused(agentFor(leaves.renamed!), 'device_serial_mismatch');
    expect(e.message).toMatch(/names device serial GW0009, but the imported manifest registered .* as device GW0001/);
    // The serial named only in sigil factory's URI SAN (urn:sigil:device:GW0011) is checked too.
    const san = await expectJoinRefused(agentFor(leaves.sanNamed!), 'device_serial_mismatch');
    expect(san.message).toMatch(/names device serial GW0011, but .* as device GW0002/);
  });

  it('refuses a revoked device (CRL from `openssl ca -gencrl`): x509_revoked', async () => {
    const e = await expectJoinRefused(agentFor(leaves.revoked!), 'x509_revoked');
    expect(e.message).toContain(crlFile);
  });

  it('refuses a chain from an untrusted CA: x509_untrusted_ca', async () => {
    await expectJoinRefused(
      X509JoinAgent.fromPem(leaves.rogue!.pem, PemKeySigner.fromFile(leaves.rogue!.key)),
      'x509_untrusted_ca',
    );
  });

  it('refuses an expired device certificate: x509_cert_expired', async () => {
    await expectJoinRefused(agentFor(leaves.expired!), 'x509_cert_expired');
  });

  it('refuses a certificate outside the allow list: x509_not_allowed', async () => {
    await expectJoinRefused(agentFor(leaves.notAllowed!), 'x509_not_allowed');
  });

  it('refuses a challenge signed by another key: x509_proof_invalid', async () => {
    // A device that shows gw-ec-01's chain but holds some other key.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const impostor: DeviceSigner = {
      storage: 'software',
      exportable: true,
      algorithm: 'ES256',
      publicKeySpki: () => Buffer.from(createPublicKey(leaves.ec!.pem).export({ type: 'spki', format: 'der' })),
      sign: (data) => Promise.resolve(cryptoSign('sha256', data, { key: privateKey, dsaEncoding: 'der' })),
    };
    await expectJoinRefused(X509JoinAgent.fromPem(leaves.ec!.pem + inter.pem, impostor), 'x509_proof_invalid');
  });

  it('a challenge answers one join only: a replayed answer is challenge_reused; the identical request is answered idempotently', async () => {
    const sent: Jws[] = [];
    const r = await exchange(agentFor(leaves.p384!), { sent });
    // The very same final envelope again: the stored response (same serial), nothing new.
    const before = await h.counts();
    const same = await h.post('join', sent[1]);
    expect(same.status).toBe(200);
    expect(h.identityFrom(same, 'join', r.requestId, r.identity).result.serial).toBe(r.payload.result.serial);
    expect(await h.counts()).toEqual(before);
    // The captured answer in a new request (new id, new key): refused.
    const answer = JSON.parse(Buffer.from(sent[1]!.payload, 'base64url').toString('utf8')).evidence as Record<
      string,
      unknown
    >;
    const replay: JoinMethodAgent = { name: 'x509', canReattest: true, evidence: () => Promise.resolve(answer) };
    await expectJoinRefused(replay, 'challenge_reused');
  });

  it('an answer for another request or key is challenge_invalid; an expired challenge is challenge_expired', async () => {
    // Ask for a challenge, then answer it from a different request id.
    let challenge: Record<string, unknown> | undefined;
    const sniff: JoinMethodAgent = {
      name: 'x509',
      canReattest: true,
      evidence: (ctx) => agentFor(leaves.ec!).evidence(ctx),
      respond: async (c, ctx) => {
        challenge = await agentFor(leaves.ec!).respond(c, ctx);
        throw new SigilError('internal', 'stop after the challenge');
      },
    };
    await expect(exchange(sniff)).rejects.toThrow('stop after the challenge');
    const answer: JoinMethodAgent = { name: 'x509', canReattest: true, evidence: () => Promise.resolve(challenge!) };
    await expectJoinRefused(answer, 'challenge_invalid');

    let chal2: { c: unknown } | undefined;
    const slow: JoinMethodAgent = {
      name: 'x509',
      canReattest: true,
      evidence: (ctx) => agentFor(leaves.ec!).evidence(ctx),
      respond: (c, ctx) => {
        chal2 = { c };
        h.clock.offsetMs = 61_000; // the device took longer than the challenge lives
        return agentFor(leaves.ec!).respond(c, ctx);
      },
    };
    try {
      await expectJoinRefused(slow, 'challenge_expired');
    } finally {
      h.clock.offsetMs = 0;
    }
    expect(chal2).toBeDefined();
  });

  it('refuses when the CRL went stale, fail closed: x509_crl_unavailable (retryable)', async () => {
    h.clock.offsetMs = 8 * 86_400_000; // past the CRL's nextUpdate (7 days)
    try {
      const e = await expectJoinRefused(agentFor(leaves.ec!), 'x509_crl_unavailable');
      expect(e.retryable).toBe(true);
      expect(e.message).toMatch(/stale/);
    } finally {
      h.clock.offsetMs = 0;
    }
  });

  it('rejects a round-1 request with a malformed chain with a plain refusal body', async () => {
    const bad: JoinMethodAgent = {
      name: 'x509',
      canReattest: true,
      evidence: () => Promise.resolve({ chain: ['bm90IGEgY2VydA=='] }),
    };
    const e = await expectJoinRefused(bad, 'x509_chain_malformed');
    expect(e.message).toContain('device certificate');
    // The wire form is the documented refusal, nothing leaked.
    const { payload, signer } = await joinPayload({ method: 'x509', evidence: { chain: 'nope' } });
    expectRefusal(await h.post('join', await signEnvelope(signer, payload)), 400, 'x509_chain_malformed');
  });
});

describe('path validation edge cases, cross-checked with `openssl verify`', () => {
  const cases = (): Array<{
    name: string;
    leaf: Issued;
    chain: Issued[];
    anchor: Issued;
    expect: 'ok' | string;
    crl?: string;
  }> => [
    {
      name: 'EC leaf under the factory CA',
      leaf: leaves.ec!,
      chain: [inter],
      anchor: root,
      expect: 'ok',
      crl: crlFile,
    },
    {
      name: 'RSA leaf under the factory CA',
      leaf: leaves.rsa!,
      chain: [inter],
      anchor: root,
      expect: 'ok',
      crl: crlFile,
    },
    { name: 'revoked leaf', leaf: leaves.revoked!, chain: [inter], anchor: root, expect: 'x509_revoked', crl: crlFile },
    {
      name: 'expired leaf',
      leaf: leaves.expired!,
      chain: [inter],
      anchor: root,
      expect: 'x509_cert_expired',
      crl: crlFile,
    },
    { name: 'untrusted CA', leaf: leaves.rogue!, chain: [], anchor: root, expect: 'x509_untrusted_ca' },
    { name: 'within name constraints', leaf: lab.ncOk!, chain: [lab.nc!], anchor: labRoot, expect: 'ok' },
    {
      name: 'name constraints violated',
      leaf: lab.ncBad!,
      chain: [lab.nc!],
      anchor: labRoot,
      expect: 'x509_name_constraints',
    },
    {
      name: 'pathLen exceeded',
      leaf: lab.plLeaf!,
      chain: [lab.sub!, lab.pl0!],
      anchor: labRoot,
      expect: 'x509_path_length_exceeded',
    },
    {
      name: 'leaf without digitalSignature',
      leaf: lab.noDs!,
      chain: [lab.inter!],
      anchor: labRoot,
      expect: 'x509_key_usage',
    },
    {
      name: 'unknown critical extension',
      leaf: lab.crit!,
      chain: [lab.inter!],
      anchor: labRoot,
      expect: 'x509_critical_extension',
    },
    { name: 'RSA-1024 leaf', leaf: lab.weak!, chain: [lab.inter!], anchor: labRoot, expect: 'x509_weak_key' },
    {
      name: 'SHA-1 signature',
      leaf: lab.sha1!,
      chain: [lab.inter!],
      anchor: labRoot,
      expect: 'x509_signature_algorithm',
    },
    {
      name: 'issuer name right, signature wrong',
      leaf: lab.forgedLeaf!,
      chain: [lab.inter!],
      anchor: labRoot,
      expect: 'x509_cert_signature_invalid',
    },
    {
      name: 'issued by a non-CA',
      leaf: lab.underNotCa!,
      chain: [lab.notCa!, lab.inter!],
      anchor: labRoot,
      expect: 'x509_not_ca',
    },
  ];

  it('every case: Sigil refuses with the code naming the check, and openssl agrees on accept/refuse', async () => {
    const rows: string[] = [];
    for (const c of cases()) {
      const agent = X509JoinAgent.fromPem(
        [c.leaf.pem, ...c.chain.map((x) => x.pem)].join(''),
        c.leaf === lab.weak ? rawRsaSigner(c.leaf.key) : PemKeySigner.fromFile(c.leaf.key),
      );
      let sigilOutcome = 'ok';
      if (c.expect === 'ok') await exchange(agent);
      else sigilOutcome = (await expectJoinRefused(agent, c.expect)).code;
      const untrusted = pki.path(`untrusted-${c.leaf.name}.pem`);
      writeFileSync(untrusted, c.chain.map((x) => x.pem).join('') || c.anchor.pem);
      // -purpose sslclient makes openssl check the leaf's KeyUsage (digitalSignature) and EKU.
      // -auth_level 2: keys of at least 112-bit strength (RSA >= 2048), Sigil's key size limit.
      const v = opensslVerify([
        '-auth_level',
        '2',
        '-CAfile',
        c.anchor.cert,
        '-untrusted',
        untrusted,
        '-purpose',
        'sslclient',
        ...(c.crl ? ['-crl_check', '-CRLfile', c.crl] : []),
        c.leaf.cert,
      ]);
      rows.push(
        `${c.name}: sigil=${sigilOutcome} openssl=${v.ok ? 'ok' : (v.out.split('\n').find((l) => l.startsWith('error')) ?? 'refused')}`,
      );
      expect(v.ok, `openssl and Sigil disagree on "${c.name}": ${v.out}`).toBe(c.expect === 'ok');
    }
    expect(rows).toHaveLength(cases().length);
    if (process.env.SIGIL_TEST_VERBOSE) process.stdout.write(`${rows.join('\n')}\n`);
  });

  it('the issuer reads CA files when a rule is used, naming an unreadable one', async () => {
    const yaml = `kind: join_rule\nname: zz-broken\nspec:\n  method: x509\n  bot: gw\n  x509:\n    ca_files: [${joinPath(tmp.path, 'missing-ca.pem')}]\n`;
    await runAdminOp(h.ctx.stores, 'apply', { yaml });
    try {
      // A device no other rule trusts: the broken rule's problem is what stops it.
      const e = await expectJoinRefused(
        X509JoinAgent.fromPem(leaves.rogue!.pem, PemKeySigner.fromFile(leaves.rogue!.key)),
        'join_rule_unusable',
      );
      expect(e.message).toContain('missing-ca.pem');
      // Devices another rule accepts are unaffected.
      await exchange(agentFor(leaves.ec!));
    } finally {
      await h.ctx.stores.resources.delete('join_rule', 'zz-broken');
    }
  });
});

describe('sigil ctl devices import', () => {
  it('is idempotent, all or nothing, and names malformed lines', async () => {
    const good = JSON.stringify({ serial: 'X1', idevid_fingerprint: `sha256:${'ab'.repeat(32)}` });
    const file = joinPath(tmp.path, 'm2.jsonl');
    writeFileSync(file, `${good}\n`);
    const first = await sigil(['ctl', '--data-dir', h.dir, 'devices', 'import', file, '--format', 'json']);
    expect(JSON.parse(first.stdout)).toMatchObject({ created: 1 });
    const again = await sigil(['ctl', '--data-dir', h.dir, 'devices', 'import', file, '--format', 'json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ lines: 1, created: 0, updated: 0, unchanged: 1 });

    const bad = joinPath(tmp.path, 'm3.jsonl');
    writeFileSync(
      bad,
      [
        JSON.stringify({ serial: 'X2', idevid_fingerprint: `sha256:${'cd'.repeat(32)}` }),
        '{not json',
        JSON.stringify({ serial: 'X3' }),
        '',
      ].join('\n'),
    );
    const before = (await h.ctx.stores.devices.list()).length;
    const r = await sigil(['ctl', '--data-dir', h.dir, 'devices', 'import', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error\[manifest_invalid\]: .*2 of 3 lines are invalid, nothing was imported: line 2: not a JSON object; line 3: idevid_fingerprint: /m,
    );
    expect((await h.ctx.stores.devices.list()).length).toBe(before);

    const ls = await sigil(['ctl', '--data-dir', h.dir, 'devices', 'ls', '--rule', 'factory', '--format', 'json']);
    expect(JSON.parse(ls.stdout).map((d: { serial: string }) => d.serial)).toContain('GW0001');
  });
});
