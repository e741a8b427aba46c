/**
 * CRLs (join/x509-crl.ts) one rule at a time, on CRLs made for the case (@peculiar/x509) with
 * exact dates. Attacks and mistakes each refused by its own check, fail closed:
 *   - a delta CRL, or one whose entries name another issuer (indirect CRL), marked critical:
 *     half-understood, so not used (an indirect entry could revoke or hide certificates of another CA);
 *   - a CRL not yet valid, one past its nextUpdate, one without nextUpdate: stale revocation data;
 *   - a CRL signed by a CA whose KeyUsage lacks cRLSign;
 *   - an old CRL that still lists a device next to a newer one that does not (the newest decides,
 *     in either file order) — and the reverse: a device revoked since;
 *   - no CRL for the device's CA: refused (a missing file must not mean "not revoked"); for an
 *     intermediate, checked only when its issuer's CRL is there;
 *   - unparseable files, and the issuer name of a version-1 CRL (no version field).
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { parseCert, type ParsedCert } from '../../../src/join/x509-cert.js';
import { checkRevocation, parseCrl, type LoadedCrl, type RevocationScope } from '../../../src/join/x509-crl.js';
import { formatName } from '../../../src/pki/name-reader.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
const at = (days: number): Date => new Date(T0 + days * DAY);

interface Made {
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
  parsed: ParsedCert;
}

const KU_CA = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
let serial = 0x100;
async function make(o: { subject: string; issuer?: Made; ku?: number | 'none'; serial?: string }): Promise<Made> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const ku = o.ku ?? (o.issuer === undefined ? KU_CA : x509.KeyUsageFlags.digitalSignature);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: o.serial ?? (serial++).toString(16),
    subject: o.subject,
    issuer: o.issuer?.cert.subject ?? o.subject,
    notBefore: at(0),
    notAfter: at(1000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: (o.issuer?.keys ?? keys).privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(o.issuer === undefined || ku === KU_CA || ku === 'none', undefined, true),
      ...(ku === 'none' ? [] : [new x509.KeyUsagesExtension(ku, true)]),
    ],
  });
  return { cert, keys, parsed: parseCert(Buffer.from(cert.rawData), o.subject) };
}

async function crlOf(
  ca: Made,
  file: string,
  o: {
    thisUpdate?: number;
    nextUpdate?: number | null;
    revoked?: Array<{ serial: string; on?: number; extensions?: x509.Extension[] }>;
    extensions?: x509.Extension[];
  } = {},
): Promise<LoadedCrl> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.cert.subject,
    thisUpdate: at(o.thisUpdate ?? 10),
    ...(o.nextUpdate === null ? {} : { nextUpdate: at(o.nextUpdate ?? 40) }),
    entries: (o.revoked ?? []).map((r) => ({
      serialNumber: r.serial,
      revocationDate: at(r.on ?? 5),
      // Without any entry extension the generator writes an empty crlEntryExtensions, which is
      // not valid DER (SIZE (1..MAX)); a non-critical reasonCode keeps such entries ordinary.
      ...(r.extensions ? { extensions: r.extensions } : { reason: x509.X509CrlReason.keyCompromise }),
    })),
    extensions: o.extensions ?? [],
    signingAlgorithm: ALG,
    signingKey: ca.keys.privateKey,
  });
  return parseCrl(Buffer.from(crl.rawData), file);
}

/** An extension with an arbitrary OID and an empty-SEQUENCE or given value. */
const ext = (oid: string, critical: boolean, value: Uint8Array = Uint8Array.of(0x30, 0x00)): x509.Extension =>
  new x509.Extension(oid, critical, value);

async function refusal(p: Promise<unknown>): Promise<SigilError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

let root: Made;
let ca: Made; // the device CA, under root
let dev: Made; // serial 00ab12, under ca
let other: Made; // another device of ca
let noCrlSign: Made; // a CA whose KeyUsage is keyCertSign only
let noKu: Made; // a CA without a KeyUsage extension
const chain = (): ParsedCert[] => [dev.parsed, ca.parsed, root.parsed];

beforeAll(async () => {
  root = await make({ subject: 'CN=CRL Root, O=Acme' });
  ca = await make({ subject: 'CN=CRL Device CA, O=Acme', issuer: root, ku: KU_CA });
  dev = await make({ subject: 'CN=gw-1, O=Acme', issuer: ca, serial: '00ab12' });
  other = await make({ subject: 'CN=gw-2, O=Acme', issuer: ca });
  noCrlSign = await make({ subject: 'CN=No CRL Sign CA, O=Acme', issuer: root, ku: x509.KeyUsageFlags.keyCertSign });
  noKu = await make({ subject: 'CN=No KU CA, O=Acme', issuer: root, ku: 'none' });
});

describe('parseCrl', () => {
  it('reads the issuer, the dates and the revoked serials (magnitude hex, leading zeros dropped)', async () => {
    const c = await crlOf(ca, 'ca.crl', { thisUpdate: 3, nextUpdate: 33, revoked: [{ serial: '00ab12', on: 2 }] });
    expect(formatName(c.issuer)).toBe('CN=CRL Device CA, O=Acme');
    expect(c.thisUpdate).toEqual(at(3));
    expect(c.nextUpdate).toEqual(at(33));
    expect([...c.revoked]).toEqual([['ab12', at(2)]]);
    expect(c.unsupported).toBeUndefined();
    expect(c.file).toBe('ca.crl');
  });

  it('reads the issuer of a version-1 CRL (TBSCertList without its optional version)', async () => {
    const v2 = Buffer.from(
      (
        await x509.X509CrlGenerator.create({
          issuer: 'CN=V1 CA, O=Acme',
          thisUpdate: at(1),
          nextUpdate: at(2),
          signingAlgorithm: ALG,
          signingKey: ca.keys.privateKey,
        })
      ).rawData,
    );
    const v1 = dropTbsVersion(v2);
    expect(formatName(parseCrl(v1, 'v1.crl').issuer)).toBe('CN=V1 CA, O=Acme');
    expect(formatName(parseCrl(v2, 'v2.crl').issuer)).toBe('CN=V1 CA, O=Acme');
  });

  it('refuses a file that is not a CRL: join_rule_unusable naming the file', () => {
    for (const bad of [Buffer.from('not a crl'), Buffer.alloc(0), Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])]) {
      let err: unknown;
      try {
        parseCrl(bad, '/etc/sigil/x.crl');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SigilError);
      expect((err as SigilError).code).toBe('join_rule_unusable');
      expect((err as SigilError).message).toMatch(/CRL \/etc\/sigil\/x\.crl/);
    }
    let err: unknown;
    try {
      parseCrl(Buffer.from('garbage'), 'g.crl');
    } catch (e) {
      err = e;
    }
    expect((err as SigilError).message).toBe('CRL g.crl cannot be parsed (expected a DER or PEM "X509 CRL")');
  });

  it('marks a CRL with a critical extension it does not process as unusable (a delta CRL)', async () => {
    const delta = await crlOf(ca, 'delta.crl', { extensions: [ext('2.5.29.27', true, Uint8Array.of(2, 1, 5))] });
    expect(delta.unsupported).toBe(
      'it has critical extension 2.5.29.27 (delta and partitioned CRLs are not supported)',
    );
    // The same extension not critical, and the critical ones it does process, are fine.
    for (const ok of [
      ext('2.5.29.20', true, Uint8Array.of(2, 1, 7)),
      ext('2.5.29.35', true, Uint8Array.of(0x30, 0x02, 0x80, 0x00)),
    ])
      expect((await crlOf(ca, 'b.crl', { extensions: [ok] })).unsupported).toBeUndefined();
    expect(
      (await crlOf(ca, 'c.crl', { extensions: [ext('2.5.29.27', false, Uint8Array.of(2, 1, 5))] })).unsupported,
    ).toBeUndefined();
  });

  it('marks a CRL whose entry has a critical extension it does not process as unusable (an indirect CRL)', async () => {
    const indirect = await crlOf(ca, 'ind.crl', {
      revoked: [{ serial: '77', extensions: [ext('2.5.29.29', true)] }],
    });
    expect(indirect.unsupported).toBe('an entry has critical extension 2.5.29.29 (indirect CRLs are not supported)');
    const fine = await crlOf(ca, 'fine.crl', {
      revoked: [
        { serial: '78', extensions: [ext('2.5.29.21', true, Uint8Array.of(0x0a, 0x01, 0x01))] },
        {
          serial: '79',
          extensions: [ext('2.5.29.24', true, Uint8Array.of(0x18, 0x0f, ...Buffer.from('20260101000000Z')))],
        },
        { serial: '7a', extensions: [ext('2.5.29.29', false)] },
      ],
    });
    expect(fine.unsupported).toBeUndefined();
  });
});

describe('checkRevocation', () => {
  it('no CRLs configured: nothing to check', async () => {
    await expect(checkRevocation(chain(), [], at(20))).resolves.toBeUndefined();
  });

  it('a current CRL of the device CA: revoked devices refused naming serial, date and file; others pass', async () => {
    const c = await crlOf(ca, 'ca.crl', { revoked: [{ serial: '00ab12', on: 7 }] });
    const e = await refusal(checkRevocation(chain(), [c], at(20)));
    expect(e.code).toBe('x509_revoked');
    expect(e.message).toBe(
      `CN=gw-1, O=Acme (subject "CN=gw-1, O=Acme"), serial ab12, was revoked at ${at(7).toISOString()} (CRL ca.crl)`,
    );
    await expect(checkRevocation([other.parsed, ca.parsed, root.parsed], [c], at(20))).resolves.toBeUndefined();
    const named = await refusal(checkRevocation(chain(), [c], at(20), { ...scope(), rule: 'factory' }));
    expect(named.message).toMatch(/\(CRL ca\.crl of join_rule factory\)$/);
  });

  it('the newest CRL decides, whatever the file order: revoked since, or taken off since', async () => {
    const old = await crlOf(ca, 'old.crl', { thisUpdate: 10, revoked: [{ serial: '00ab12' }] });
    const fresh = await crlOf(ca, 'new.crl', { thisUpdate: 12 });
    await expect(checkRevocation(chain(), [old, fresh], at(20))).resolves.toBeUndefined();
    await expect(checkRevocation(chain(), [fresh, old], at(20))).resolves.toBeUndefined();
    const revokedSince = await crlOf(ca, 'since.crl', { thisUpdate: 14, revoked: [{ serial: '00ab12' }] });
    for (const order of [
      [fresh, revokedSince],
      [revokedSince, fresh],
    ])
      expect((await refusal(checkRevocation(chain(), order, at(20)))).code).toBe('x509_revoked');
  });

  it('dates: usable from thisUpdate through nextUpdate inclusive; refused before, after, or without nextUpdate', async () => {
    const c = await crlOf(ca, 'd.crl', { thisUpdate: 10, nextUpdate: 40 });
    await expect(checkRevocation(chain(), [c], at(10))).resolves.toBeUndefined();
    await expect(checkRevocation(chain(), [c], at(40))).resolves.toBeUndefined();
    const early = await refusal(checkRevocation(chain(), [c], new Date(at(10).getTime() - 1)));
    expect(early.code).toBe('x509_crl_unavailable');
    expect(early.message).toBe(`the CRL in d.crl is not valid before ${at(10).toISOString()} (thisUpdate)`);
    const late = await refusal(checkRevocation(chain(), [c], new Date(at(40).getTime() + 1)));
    expect(late.code).toBe('x509_crl_unavailable');
    expect(late.message).toBe(
      `the CRL in d.crl is stale: its nextUpdate ${at(40).toISOString()} has passed; publish a fresh CRL`,
    );
    const none = await crlOf(ca, 'n.crl', { nextUpdate: null });
    expect((await refusal(checkRevocation(chain(), [none], at(20)))).message).toBe(
      'the CRL in n.crl is stale: it has no nextUpdate; publish a fresh CRL',
    );
  });

  it('a delta or indirect CRL is refused when it is the one that decides', async () => {
    const delta = await crlOf(ca, 'delta.crl', { extensions: [ext('2.5.29.27', true, Uint8Array.of(2, 1, 5))] });
    const e = await refusal(checkRevocation(chain(), [delta], at(20)));
    expect(e.code).toBe('x509_crl_unavailable');
    expect(e.message).toBe(
      'the CRL in delta.crl cannot be used: it has critical extension 2.5.29.27 (delta and partitioned CRLs are not supported)',
    );
  });

  it('a CRL signed by a CA whose KeyUsage lacks cRLSign is refused; a CA without KeyUsage may sign CRLs', async () => {
    const leafA = await make({ subject: 'CN=gw-a, O=Acme', issuer: noCrlSign });
    const a = await crlOf(noCrlSign, 'nocrlsign.crl');
    const e = await refusal(checkRevocation([leafA.parsed, noCrlSign.parsed, root.parsed], [a], at(20)));
    expect(e.code).toBe('x509_crl_unavailable');
    expect(e.message).toBe(
      'the CRL in nocrlsign.crl is signed by CN=No CRL Sign CA, O=Acme (subject "CN=No CRL Sign CA, O=Acme"), whose KeyUsage lacks cRLSign',
    );
    const leafB = await make({ subject: 'CN=gw-b, O=Acme', issuer: noKu });
    const b = await crlOf(noKu, 'noku.crl');
    await expect(checkRevocation([leafB.parsed, noKu.parsed, root.parsed], [b], at(20))).resolves.toBeUndefined();
  });

  it('no CRL of the device’s CA: fail closed, naming the option (and the rule) and the CA', async () => {
    const rootCrl = await crlOf(root, 'root.crl');
    const e = await refusal(checkRevocation(chain(), [rootCrl], at(20)));
    expect(e.code).toBe('x509_crl_unavailable');
    expect(e.message).toBe(
      'cannot check revocation of CN=gw-1, O=Acme (subject "CN=gw-1, O=Acme"): none of crl_files is issued by "CN=CRL Device CA, O=Acme"',
    );
    const named = await refusal(checkRevocation(chain(), [rootCrl], at(20), { ...scope(), rule: 'factory' }));
    expect(named.message).toMatch(/: none of join_rule factory's crl_files is issued by/);
  });

  it('an intermediate is checked when its issuer’s CRL is present, and passes when none is', async () => {
    const devCrl = await crlOf(ca, 'ca.crl');
    await expect(checkRevocation(chain(), [devCrl], at(20))).resolves.toBeUndefined();
    const revokesCa = await crlOf(root, 'root.crl', { revoked: [{ serial: ca.cert.serialNumber }] });
    const e = await refusal(checkRevocation(chain(), [devCrl, revokesCa], at(20)));
    expect(e.code).toBe('x509_revoked');
    expect(e.message).toMatch(/^CN=CRL Device CA, O=Acme \(subject "CN=CRL Device CA, O=Acme"\), serial /);
  });

  it('the scope decides the codes (the tpm join’s EK certificates use their own)', async () => {
    const ek: RevocationScope = {
      revoked: 'ek_revoked',
      unavailable: 'ek_crl_unavailable',
      option: 'ek_crl_files',
      describe: (c) => `EK certificate ${c.serialHex}`,
    };
    const c = await crlOf(ca, 'ca.crl', { revoked: [{ serial: '00ab12' }] });
    expect((await refusal(checkRevocation(chain(), [c], at(20), ek))).code).toBe('ek_revoked');
    const e = await refusal(checkRevocation(chain(), [await crlOf(root, 'r.crl')], at(20), ek));
    expect(e.code).toBe('ek_crl_unavailable');
    expect(e.message).toBe(
      'cannot check revocation of EK certificate ab12: none of ek_crl_files is issued by "CN=CRL Device CA, O=Acme"',
    );
  });
});

describe('checkRevocation: which CRLs name the CA', () => {
  it('a CRL signed with the CA’s key whose issuer is only the first RDNs of the CA’s name does not cover it', async () => {
    const truncated = parseCrl(
      Buffer.from(
        (
          await x509.X509CrlGenerator.create({
            issuer: 'CN=CRL Device CA',
            thisUpdate: at(10),
            nextUpdate: at(40),
            signingAlgorithm: ALG,
            signingKey: ca.keys.privateKey,
          })
        ).rawData,
      ),
      'short.crl',
    );
    const e = await refusal(checkRevocation(chain(), [truncated], at(20)));
    expect(e.code).toBe('x509_crl_unavailable');
    expect(e.message).toMatch(/none of crl_files is issued by "CN=CRL Device CA, O=Acme"$/);
  });

  it('CRLs that name the CA but are signed by another key are all listed in the refusal', async () => {
    const lookalike = await make({ subject: 'CN=CRL Device CA, O=Acme' });
    const a = await crlOf(lookalike, 'forged-a.crl');
    const b = await crlOf(lookalike, 'forged-b.crl');
    const e = await refusal(checkRevocation(chain(), [a, b], at(20)));
    expect(e.message).toBe(
      'cannot check revocation of CN=gw-1, O=Acme (subject "CN=gw-1, O=Acme"): the CRL in forged-a.crl, forged-b.crl names that issuer but its signature does not verify with the CA key',
    );
  });
});

function scope(): RevocationScope {
  return {
    revoked: 'x509_revoked',
    unavailable: 'x509_crl_unavailable',
    option: 'crl_files',
    describe: (c) => `${c.label} (subject "${formatName(c.subject)}")`,
  };
}

/** DER length octets. */
function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.of(0x80 | bytes.length, ...bytes);
}
/** Header length and content length of the TLV at `off`. */
function tlvAt(b: Buffer, off: number): { hdr: number; len: number } {
  const first = b[off + 1]!;
  if (first < 0x80) return { hdr: 2, len: first };
  const n = first & 0x7f;
  let len = 0;
  for (let i = 0; i < n; i++) len = (len << 8) | b[off + 2 + i]!;
  return { hdr: 2 + n, len };
}
/** The same CRL with its TBSCertList's version INTEGER removed (the signature no longer verifies). */
function dropTbsVersion(der: Buffer): Buffer {
  const outer = tlvAt(der, 0);
  const tbsOff = outer.hdr;
  const tbs = tlvAt(der, tbsOff);
  const tbsContent = der.subarray(tbsOff + tbs.hdr, tbsOff + tbs.hdr + tbs.len);
  expect(tbsContent[0]).toBe(0x02); // INTEGER version
  const ver = tlvAt(tbsContent, 0);
  const newTbsContent = tbsContent.subarray(ver.hdr + ver.len);
  const newTbs = Buffer.concat([Buffer.of(0x30), derLength(newTbsContent.length), newTbsContent]);
  const rest = der.subarray(tbsOff + tbs.hdr + tbs.len, outer.hdr + outer.len);
  const content = Buffer.concat([newTbs, rest]);
  return Buffer.concat([Buffer.of(0x30), derLength(content.length), content]);
}
