/**
 * The MQTT transport certificate (server/ops/transport-cert.ts) against a real in-process
 * issuer: a join or renewal that carries `transport_csr` gets, in the same answer, a TLS client
 * certificate for that key with the SVID's subject (O=<td>, CN=<instance>) and validity, no SAN
 * at all, EKU clientAuth only, chaining to the root for OpenSSL's sslclient purpose, recorded
 * as its own kind and audited by serial. A bad transport CSR is refused with its code and
 * changes nothing; a replay answers the same certificate; the certificate is no identity.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJoinRequest, buildRenewRequest, type BuiltRequest } from '../../src/agent/requests.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { loadSigner, parseKeyRef, SoftwareSigner, type Signer } from '../../src/keystore/index.js';
import { buildCsr } from '../../src/pki/csr.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import type { IdentityResult } from '../../src/protocol/messages.js';
import { spkiHash } from '../../src/server/ops/issue.js';
import { expectRefused, joinPayload, sign, startIssuer, type Harness, type Identity } from './harness.js';
import { namedSigner } from '../../src/agent/named-signer.js';

let h: Harness;
let tmp: string;
beforeAll(async () => {
  h = await startIssuer();
  tmp = mkdtempSync(join(tmpdir(), 'sigil-transport-cert-'));
});
afterAll(async () => {
  await h?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const openssl = (...args: string[]): string =>
  execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const csrPem = async (s: Signer): Promise<string> => toPem('CERTIFICATE REQUEST', await buildCsr(s));
const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

async function joinWithTransport(token?: string): Promise<{ built: BuiltRequest; id: Identity }> {
  const agent = new TokenJoinAgent(token ?? (await h.token()));
  const built = await buildJoinRequest({
    method: 'token',
    evidence: (c) => agent.evidence(c),
    now: h.ctx.now(),
    transport: true,
  });
  const res = await h.post('join', built.envelope);
  return {
    built,
    id: h.identityFrom(res, 'join', built.entry.requestId, loadSigner(parseKeyRef(built.entry.pendingKeyRef!))),
  };
}

/** Everything the brief asks of a transport certificate, checked on one answer. */
function checkTransportCert(r: IdentityResult, transportKeyPem: string): X509Certificate {
  expect(r.transport_chain).toHaveLength(2);
  const [leafPem, interPem] = r.transport_chain!;
  expect(interPem).toBe(r.chain[1]);
  const leaf = new X509Certificate(leafPem!);
  const svid = new X509Certificate(r.chain[0]!);
  expect(leaf.subject).toBe(`O=example.org\nCN=${r.instance_id}`);
  expect(leaf.subject).toBe(svid.subject);
  // No SAN at all: a SPIFFE validator wants exactly one URI SAN, so this is never an SVID.
  expect(leaf.subjectAltName).toBeUndefined();
  expect(leaf.keyUsage).toEqual([EKU_CLIENT_AUTH]);
  expect(leaf.ca).toBe(false);
  expect([leaf.validFrom, leaf.validTo]).toEqual([svid.validFrom, svid.validTo]);
  expect(leaf.publicKey.equals(createPublicKey(createPrivateKey(transportKeyPem)))).toBe(true);
  expect(leaf.publicKey.equals(svid.publicKey)).toBe(false);
  const text = openssl('x509', '-noout', '-text', '-in', writeTmp('leaf.pem', leafPem!));
  expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
  expect(text).toMatch(/X509v3 Extended Key Usage: \s+TLS Web Client Authentication\n/);
  expect(text).not.toMatch(/Subject Alternative Name|spiffe:/);
  const out = openssl(
    'verify',
    '-purpose',
    'sslclient',
    '-CAfile',
    writeTmp('root.pem', h.rootPem),
    '-untrusted',
    writeTmp('inter.pem', interPem!),
    writeTmp('leaf.pem', leafPem!),
  );
  expect(out).toContain(': OK');
  return leaf;
}

let n = 0;
function writeTmp(name: string, content: string): string {
  const f = join(tmp, `${n++}-${name}`);
  writeFileSync(f, content);
  return f;
}

const serialOf = (c: X509Certificate): string => c.serialNumber.toLowerCase();

describe('transport_csr on join and renew', () => {
  let joined: { built: BuiltRequest; id: Identity };

  it('a join carrying transport_csr gets a transport certificate: instance CN, no SAN, clientAuth, the SVID validity, recorded and audited', async () => {
    const seq = await h.lastAuditSeq();
    joined = await joinWithTransport();
    const r = joined.id.result;
    const leaf = checkTransportCert(r, joined.built.entry.transportKeyPem!);
    // Same generation and issue time: listByInstance orders the two by (random) serial.
    const records = (await h.ctx.stores.certificates.listByInstance(r.instance_id)).sort((a, b) =>
      a.kind.localeCompare(b.kind),
    );
    expect(records.map((c) => [c.kind, c.generation, c.requestId])).toEqual([
      ['mqtt-transport', 1, joined.built.entry.requestId],
      ['x509-svid', 1, joined.built.entry.requestId],
    ]);
    const rec = records[0]!;
    expect(rec.serial).toBe(serialOf(leaf));
    expect(rec).toMatchObject({
      keyStorage: 'software',
      exportable: true,
      notBefore: r.not_before,
      notAfter: r.not_after,
    });
    expect(rec.spkiHash).toBe(
      spkiHash(
        createPublicKey(createPrivateKey(joined.built.entry.transportKeyPem!)).export({ type: 'spki', format: 'der' }),
      ),
    );
    // The instance's current certificate stays the SVID.
    expect((await h.ctx.stores.instances.get(r.instance_id))!.currentSerial).toBe(r.serial);
    const audit = (await h.auditAfter(seq)).filter((a) => a.action === 'join');
    expect(audit).toHaveLength(1);
    expect(audit[0]!.details).toMatchObject({ serial: r.serial, transport_serial: rec.serial });
  });

  it('a replay of the join answers the same transport certificate and issues nothing', async () => {
    const before = await h.counts();
    const again = await h.post('join', joined.built.envelope);
    const id = h.identityFrom(again, 'join', joined.built.entry.requestId, joined.id.signer);
    expect(id.result.transport_chain).toEqual(joined.id.result.transport_chain);
    expect(id.result.serial).toBe(joined.id.result.serial);
    expect(await h.counts()).toEqual(before);
  });

  it('a renewal carrying transport_csr gets a new one for generation 2; a replay answers it again', async () => {
    const seq = await h.lastAuditSeq();
    const built = await buildRenewRequest({
      current: joined.id.signer,
      chainPem: joined.id.chainPem,
      now: h.ctx.now(),
      transport: true,
    });
    expect(built.entry.transportKeyPem).toMatch(/BEGIN PRIVATE KEY/);
    expect(built.entry.transportKeyPem).not.toBe(joined.built.entry.transportKeyPem);
    const res = await h.post('renew', built.envelope);
    const renewed = h.identityFrom(
      res,
      'renew',
      built.entry.requestId,
      loadSigner(parseKeyRef(built.entry.pendingKeyRef!)),
    );
    expect(renewed.result.generation).toBe(2);
    const leaf = checkTransportCert(renewed.result, built.entry.transportKeyPem!);
    const records = (await h.ctx.stores.certificates.listByInstance(renewed.result.instance_id)).filter(
      (c) => c.generation === 2,
    );
    expect(records.map((c) => c.kind).sort()).toEqual(['mqtt-transport', 'x509-svid']);
    const audit = (await h.auditAfter(seq)).filter((a) => a.action === 'renew');
    expect(audit[0]!.details).toMatchObject({
      serial: renewed.result.serial,
      transport_serial: serialOf(leaf),
      generation: 2,
    });

    const before = await h.counts();
    const replay = h.identityFrom(
      await h.post('renew', built.envelope),
      'renew',
      built.entry.requestId,
      renewed.signer,
    );
    expect(replay.result.transport_chain).toEqual(renewed.result.transport_chain);
    expect(await h.counts()).toEqual(before);
    joined = { built, id: renewed };
  });

  it('the transport certificate is no identity: a renewal signed with it is refused (chain_invalid)', async () => {
    const tkey = SoftwareSigner.fromPkcs8Pem(joined.built.entry.transportKeyPem!);
    const x5c = joined.id.result.transport_chain!.map((c) => fromPem(c, 'CERTIFICATE'));
    const payload = {
      v: 1,
      op: 'renew',
      request_id: 'transport-as-identity-01',
      timestamp: h.ctx.now(),
      csr: await csrPem(SoftwareSigner.generate()),
      key_storage: 'software',
    };
    const res = await expectRefused(h, 'renew', await sign(tkey, payload, x5c), 401, 'chain_invalid');
    expect(res.json.message).toMatch(/not a Sigil bot identity/);
  });

  it('without transport_csr nothing changes: no transport_chain, one certificate', async () => {
    const id = await h.join();
    expect(id.result).not.toHaveProperty('transport_chain');
    expect((await h.ctx.stores.certificates.listByInstance(id.result.instance_id)).map((c) => c.kind)).toEqual([
      'x509-svid',
    ]);
  });
});

describe('a bad transport_csr is refused and changes nothing', () => {
  let rsa1024: string;
  let rsa2048: string;
  beforeAll(() => {
    const rsaCsr = (bits: number): string => {
      const key = join(tmp, `rsa${bits}.key`);
      return execFileSync(
        'openssl',
        ['req', '-new', '-newkey', `rsa:${bits}`, '-nodes', '-keyout', key, '-subj', '/CN=x'],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      );
    };
    rsa1024 = rsaCsr(1024);
    rsa2048 = rsaCsr(2048);
  });

  async function badTransportCsrs(identity: Signer): Promise<Array<[string, number, string]>> {
    const tampered = await buildCsr(SoftwareSigner.generate());
    tampered[tampered.length - 1] ^= 0x01;
    return [
      ['garbage', 400, 'bad_csr'],
      [toPem('CERTIFICATE REQUEST', tampered), 400, 'csr_signature_invalid'],
      [rsa1024, 400, 'unsupported_key'],
      [rsa2048, 400, 'unsupported_key'],
      [await csrPem(identity), 400, 'bad_csr'],
    ];
  }

  it('join: malformed, tampered, RSA, or the identity key itself → coded 4xx; the token still joins afterwards', async () => {
    const tok = await h.token();
    const signer = SoftwareSigner.generate();
    for (const [transport_csr, status, code] of await badTransportCsrs(signer)) {
      const { payload } = await joinPayload({ transport_csr }, { token: tok, signer });
      const res = await expectRefused(h, 'join', await sign(signer, payload), status, code);
      expect(res.json.message).toMatch(/^transport_csr: /);
    }
    const { id } = await joinWithTransport(tok);
    expect(id.result.transport_chain).toHaveLength(2);
  });

  it('renew: the same refusals, the instance as it was; the current key or the new one as transport key → bad_csr', async () => {
    const { id } = await joinWithTransport();
    const inst = async () => {
      const i = (await h.ctx.stores.instances.get(id.result.instance_id))!;
      return { generation: i.generation, serial: i.currentSerial, locked: i.locked };
    };
    const before = await inst();
    const x5c = id.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
    const next = SoftwareSigner.generate();
    const cases = [
      ...(await badTransportCsrs(next)),
      [await csrPem(id.signer), 400, 'bad_csr'] as [string, number, string],
    ];
    for (const [transport_csr, status, code] of cases) {
      const payload = {
        v: 1,
        op: 'renew',
        request_id: `bad-transport-${Math.random().toString(36).slice(2, 12)}`,
        timestamp: h.ctx.now(),
        ...namedSigner(id.chainPem),
        csr: await csrPem(next),
        key_storage: 'software',
        transport_csr,
      };
      await expectRefused(h, 'renew', await sign(id.signer, payload, x5c), status, code);
      expect(await inst()).toEqual(before);
    }
    // Still renewable.
    const built = await buildRenewRequest({
      current: id.signer,
      chainPem: id.chainPem,
      now: h.ctx.now(),
      transport: true,
    });
    expect(
      h.identityFrom(await h.post('renew', built.envelope), 'renew', built.entry.requestId, next).result.generation,
    ).toBe(2);
  });

  it('a P-384 transport key is accepted', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const csr = execFileSync(
      'openssl',
      [
        'req',
        '-new',
        '-key',
        writeTmp('p384.key', privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
        '-subj',
        '/CN=x',
      ],
      { encoding: 'utf8' },
    );
    const tok = await h.token();
    const signer = SoftwareSigner.generate();
    const { payload } = await joinPayload({ transport_csr: csr }, { token: tok, signer });
    const res = await h.post('join', await sign(signer, payload));
    expect(res.status).toBe(200);
  });
});
