/**
 * attest/ek.ts: the EK checks, each broken alone, on an EK public area made in software with the
 * EK Credential Profile's RSA template and EK certificates made with plain openssl (the swtpm
 * run with swtpm_localca certificates is test/integration/tpm-join.test.ts).
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkEkTrust, EkMemo, readEk, selectEkPolicy, type EkTrustPolicy } from '../../../src/attest/ek.js';
import { encodePublic } from '../../../src/attest/structures.js';
import { SigilError } from '../../../src/errors.js';
import { parseCert, type ParsedCert } from '../../../src/join/x509-cert.js';
import { parsePem } from '../../../src/pki/pem.js';
import { TPMA_OBJECT } from '../../../src/tpm/constants.js';
import { toSized } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../../src/tpm/structures/keys.js';
import { tpmtPublic, type TpmtPublic } from '../../../src/tpm/structures/public.js';
import { ekTemplateRsa2048 } from '../../../src/tpm/templates.js';
import { OpensslPki } from '../../helpers/openssl-pki.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-ek-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pki = new OpensslPki(dir);

const EK_EXT = [
  'basicConstraints = critical,CA:FALSE',
  'keyUsage = critical,keyEncipherment',
  'extendedKeyUsage = 2.23.133.8.1',
];
const manufacturer = pki.root('mfr', '/CN=TPM Manufacturer CA', 'rsa');
const stranger = pki.root('other', '/CN=Some Other CA', 'rsa');
const ekKeyFile = pki.key('ek', 'rsa');
const otherKeyFile = pki.key('ek2', 'rsa');
const ekCert = pki.sign('ek-cert', manufacturer, '/CN=unknown', EK_EXT, { key: ekKeyFile });
const foreignCert = pki.sign('ek-foreign', stranger, '/CN=unknown', EK_EXT, { key: ekKeyFile });
const tlsCert = pki.sign(
  'ek-tls',
  manufacturer,
  '/CN=unknown',
  ['basicConstraints = critical,CA:FALSE', 'keyUsage = critical,keyEncipherment', 'extendedKeyUsage = serverAuth'],
  { key: ekKeyFile },
);
const otherKeyCert = pki.sign('ek-otherkey', manufacturer, '/CN=unknown', EK_EXT, { key: otherKeyFile });

const der = (file: string): Buffer => parsePem(readFileSync(file, 'utf8'), 'internal')[0]!.der;
const parse = (d: Buffer): ParsedCert => parseCert(d, 'EK certificate', 'tpm_evidence_malformed');
const anchor = parse(der(manufacturer.cert));
const ekPublicKey = createPublicKey(createPrivateKey(readFileSync(ekKeyFile)));

function ekArea(attributes?: number): string {
  const t = ekTemplateRsa2048();
  return encodePublic(
    toSized(tpmtPublic, {
      ...t,
      ...(attributes !== undefined ? { objectAttributes: attributes } : {}),
      unique: publicFromKeyObject(ekPublicKey).unique,
    } as TpmtPublic),
  );
}

const evidence = (cert?: string, area = ekArea()) => ({
  ek_public: area,
  ...(cert ? { ek_cert: der(cert).toString('base64') } : {}),
});
const byCa: EkTrustPolicy<ParsedCert, ParsedCert> = { rule: 'racks', anchors: () => [anchor] };
const refused = (code: string, message?: RegExp) =>
  expect.objectContaining({ code, ...(message ? { message: expect.stringMatching(message) } : {}) });
const at = new Date();

describe('readEk', () => {
  it('reads a storage EK and its certificate; its hash is the SPKI hash', () => {
    const ek = readEk(evidence(ekCert.cert), parse);
    expect(ek.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(ek.cert?.serialHex).toBeDefined();
  });

  it('refuses an EK area that can sign, or is not restricted: ek_invalid', () => {
    const t = ekTemplateRsa2048().objectAttributes;
    expect(() => readEk(evidence(undefined, ekArea(t | TPMA_OBJECT.sign)), parse)).toThrow(
      refused('ek_invalid', /not those of a restricted decryption key/),
    );
    expect(() => readEk(evidence(undefined, ekArea(t & ~TPMA_OBJECT.restricted)), parse)).toThrow(
      refused('ek_invalid'),
    );
    expect(() => readEk(evidence(undefined, ekArea(t & ~TPMA_OBJECT.fixedTPM)), parse)).toThrow(refused('ek_invalid'));
  });

  it('refuses a certificate of another key: ek_invalid', () => {
    expect(() => readEk(evidence(otherKeyCert.cert), parse)).toThrow(
      refused('ek_invalid', /certifies another key than the EK public area/),
    );
  });
});

describe('checkEkTrust', () => {
  it('trusts an EK certificate that chains to an anchor, and tells the revocation check which anchor', async () => {
    const seen: string[] = [];
    await checkEkTrust(
      readEk(evidence(ekCert.cert), parse),
      { ...byCa, revocation: (c, a) => (seen.push(`${c.serialHex}<${a.fingerprint}`), Promise.resolve()) },
      at,
      new EkMemo(),
    );
    expect(seen).toEqual([`${parse(der(ekCert.cert)).serialHex}<${anchor.fingerprint}`]);
  });

  it('refuses no certificate (ek_cert_missing), another CA (ek_untrusted), a non-EK certificate (ek_untrusted)', async () => {
    await expect(checkEkTrust(readEk(evidence(), parse), byCa, at)).rejects.toEqual(
      refused('ek_cert_missing', /join_rule racks trusts EKs by certificate/),
    );
    await expect(checkEkTrust(readEk(evidence(foreignCert.cert), parse), byCa, at)).rejects.toEqual(
      refused('ek_untrusted', /does not chain to join_rule racks's ek_ca_files/),
    );
    await expect(checkEkTrust(readEk(evidence(tlsCert.cert), parse), byCa, at)).rejects.toEqual(
      refused('ek_untrusted', /lacks tcg-kp-EKCertificate/),
    );
  });

  it('passes a revocation refusal through, and a remembered chain does not skip revocation', async () => {
    const memo = new EkMemo();
    const ek = readEk(evidence(ekCert.cert), parse);
    await checkEkTrust(ek, byCa, at, memo);
    const revoked = {
      ...byCa,
      revocation: () => Promise.reject(new SigilError('ek_revoked', 'the EK certificate was revoked')),
    };
    await expect(checkEkTrust(ek, revoked, at, memo)).rejects.toEqual(refused('ek_revoked'));
  });

  it('with an allow list, only a listed EK hash: ek_not_allowed', async () => {
    const ek = readEk(evidence(), parse);
    await expect(checkEkTrust(ek, { rule: 'vtpm', allow: ['sha256:' + '0'.repeat(64)] }, at)).rejects.toEqual(
      refused('ek_not_allowed', /not on join_rule vtpm's allow list/),
    );
    await expect(checkEkTrust(ek, { rule: 'vtpm', allow: [ek.hash] }, at)).resolves.toBeUndefined();
  });

  it('selectEkPolicy: the first policy that trusts the EK; else the refusal of the one that got furthest', async () => {
    const ek = readEk(evidence(ekCert.cert), parse);
    type Policy = EkTrustPolicy<ParsedCert, ParsedCert>;
    const untrusted: Policy = { rule: 'a', anchors: () => [parse(der(stranger.cert))] };
    const notAllowed: Policy = { ...byCa, rule: 'b', allow: ['sha256:' + '1'.repeat(64)] };
    await expect(selectEkPolicy<ParsedCert, ParsedCert, Policy>([untrusted, notAllowed], ek, at)).rejects.toEqual(
      refused('ek_not_allowed'),
    );
    await expect(
      selectEkPolicy<ParsedCert, ParsedCert, Policy>([untrusted, notAllowed, { ...byCa, rule: 'c' }], ek, at),
    ).resolves.toMatchObject({
      rule: 'c',
    });
  });
});
