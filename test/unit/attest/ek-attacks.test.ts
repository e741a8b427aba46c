/**
 * attest/ek.ts, the cases mutation testing (docs/testing.md, area tpm-verify) found untested:
 *   - an EK certificate without any extendedKeyUsage is an EK certificate (many TPM vendors issue
 *     them so); only a PRESENT EKU without tcg-kp-EKCertificate is refused (TCG EK Credential
 *     Profile §3.2.16 makes the EKU optional);
 *   - the memo of validated chains (EkMemo) never outlives what it remembers: not past the EK
 *     certificate's notAfter, not for another set of anchors (a rule whose CA file changed);
 *   - an EK public area that is not a storage key (no AES-CFB) is refused.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkEkTrust, EkMemo, readEk, type EkTrustPolicy } from '../../../src/attest/ek.js';
import { encodePublic } from '../../../src/attest/structures.js';
import { parseCert, type ParsedCert } from '../../../src/join/x509-cert.js';
import { parsePem } from '../../../src/pki/pem.js';
import { TPM_ALG } from '../../../src/tpm/constants.js';
import { toSized } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../../src/tpm/structures/keys.js';
import { tpmtPublic, type TpmtPublic } from '../../../src/tpm/structures/public.js';
import { ekTemplateRsa2048 } from '../../../src/tpm/templates.js';
import { OpensslPki } from '../../helpers/openssl-pki.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-ek-attacks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pki = new OpensslPki(dir);

const manufacturer = pki.root('mfr', '/CN=TPM Manufacturer CA', 'rsa');
const stranger = pki.root('other', '/CN=Some Other CA', 'rsa');
const ekKeyFile = pki.key('ek', 'rsa');
const NO_EKU = ['basicConstraints = critical,CA:FALSE', 'keyUsage = critical,keyEncipherment'];
const noEkuCert = pki.sign('ek-no-eku', manufacturer, '/CN=unknown', NO_EKU, { key: ekKeyFile, days: 1 });

const der = (file: string): Buffer => parsePem(readFileSync(file, 'utf8'), 'internal')[0]!.der;
const parse = (d: Buffer): ParsedCert => parseCert(d, 'EK certificate', 'tpm_evidence_malformed');
const anchor = parse(der(manufacturer.cert));
const ekPublicKey = createPublicKey(createPrivateKey(readFileSync(ekKeyFile)));

function ekArea(over: Partial<TpmtPublic> = {}): string {
  return encodePublic(
    toSized(tpmtPublic, {
      ...ekTemplateRsa2048(),
      ...over,
      unique: publicFromKeyObject(ekPublicKey).unique,
    } as TpmtPublic),
  );
}
const evidence = (cert: string, area = ekArea()) => ({ ek_public: area, ek_cert: der(cert).toString('base64') });
const byCa: EkTrustPolicy<ParsedCert, ParsedCert> = { rule: 'racks', anchors: () => [anchor] };
const refused = (code: string, message?: RegExp) =>
  expect.objectContaining({ code, ...(message ? { message: expect.stringMatching(message) } : {}) });
const now = new Date();
const DAY = 86_400_000;

describe('EK certificates and the chain memo', () => {
  it('an EK certificate without any extendedKeyUsage is trusted (the EKU is optional)', async () => {
    await expect(checkEkTrust(readEk(evidence(noEkuCert.cert), parse), byCa, now)).resolves.toBeUndefined();
  });

  it('attack: a remembered chain is not reused after the EK certificate expired', async () => {
    const memo = new EkMemo();
    const ek = readEk(evidence(noEkuCert.cert), parse);
    await checkEkTrust(ek, byCa, now, memo);
    // Two days on, past the certificate's notAfter (1 day): the memo must not answer for it.
    await expect(checkEkTrust(ek, byCa, new Date(now.getTime() + 2 * DAY), memo)).rejects.toEqual(
      refused('ek_untrusted', /expired/),
    );
  });

  it('attack: a chain remembered under one rule CA is not reused once the anchors are others', async () => {
    const memo = new EkMemo();
    const ek = readEk(evidence(noEkuCert.cert), parse);
    await checkEkTrust(ek, byCa, now, memo);
    const replaced = { rule: 'racks', anchors: () => [parse(der(stranger.cert))] };
    await expect(checkEkTrust(ek, replaced, now, memo)).rejects.toEqual(
      refused('ek_untrusted', /does not chain to join_rule racks's ek_ca_files/),
    );
  });

  it('a remembered chain tells the revocation check the anchor that issued it, among several', async () => {
    const memo = new EkMemo();
    const ek = readEk(evidence(noEkuCert.cert), parse);
    const seen: string[] = [];
    const two = {
      rule: 'racks',
      anchors: () => [parse(der(stranger.cert)), anchor],
      revocation: (_c: ParsedCert, a: ParsedCert) => (seen.push(a.fingerprint), Promise.resolve()),
    };
    await checkEkTrust(ek, two, now, memo); // validated
    await checkEkTrust(ek, two, now, memo); // from the memo
    expect(seen).toEqual([anchor.fingerprint, anchor.fingerprint]);
  });

  it('a remembered chain is reused within its minute, and not before the moment it was validated', async () => {
    const memo = new EkMemo();
    const ek = readEk(evidence(noEkuCert.cert), parse);
    await checkEkTrust(ek, byCa, now, memo);
    // A lookup at the same moment hits; one from before the validation (clock stepped back) does not.
    expect(memo.chainAnchor(`${ek.cert!.fingerprint}|${anchor.fingerprint}`, now)).toBe(anchor.fingerprint);
    expect(memo.chainAnchor(`${ek.cert!.fingerprint}|${anchor.fingerprint}`, new Date(now.getTime() - 1))).toBe(
      undefined,
    );
    expect(
      memo.chainAnchor(`${ek.cert!.fingerprint}|${anchor.fingerprint}`, new Date(now.getTime() + EkMemo.CHAIN_MS)),
    ).toBe(undefined);
  });

  it('an EK area that is not an AES-CFB storage key is ek_invalid', () => {
    const t = ekTemplateRsa2048();
    const ecb = { ...t.parameters, symmetric: { ...t.parameters.symmetric, mode: TPM_ALG.ECB } };
    expect(() => readEk(evidence(noEkuCert.cert, ekArea({ parameters: ecb } as Partial<TpmtPublic>)), parse)).toThrow(
      refused('ek_invalid', /not a storage key with AES-CFB/),
    );
  });
});
