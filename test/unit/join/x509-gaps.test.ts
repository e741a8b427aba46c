/**
 * The x509 area's last real mutation survivors (issue #20, docs/testing.md "Survivors, x509"),
 * each as an attack on a chain or CRL made with plain `openssl`, the way an operator's PKI is:
 *
 *   - a version-1 certificate (no extensions, so no BasicConstraints) used as an INTERMEDIATE:
 *     only a v1 trust anchor is taken as a CA (as OpenSSL does); a v1 certificate lower in the
 *     path is `x509_not_ca` (`x509-path.ts` `index === anchorIndex` in `v1Anchor`). Cross-checked
 *     with `openssl verify`, which refuses the same chain;
 *   - a CRL naming the device CA but signed with an algorithm the verifier cannot process
 *     (Ed25519: pkijs throws "Unsupported signature algorithm") must not count as signed: a newer
 *     such CRL that omits the revoked device must not un-revoke it (`x509-crl.ts` the `catch` of
 *     the signature check);
 *   - a CRL from `openssl ca -gencrl` whose entry has no crlEntryExtensions (openssl's default,
 *     `-revoke` without `-crl_reason`) parses, and its serial is refused (`crlEntryExtensions?.`);
 *   - name constraints: an rfc822Name with an empty local part ("@evil.test") is still a mailbox
 *     at that host, so an excluded host catches it (`at < 0`); the host of a URI with an IPv6
 *     literal is the whole bracketed literal (`uriHost`).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCert, type ParsedCert } from '../../../src/join/x509-cert.js';
import { checkRevocation, parseCrl, type LoadedCrl } from '../../../src/join/x509-crl.js';
import { validatePath } from '../../../src/join/x509-path.js';
import { constructed, implicit, sequence } from '../../../src/pki/der.js';
import { decodeNameConstraints, nameConstraintViolation } from '../../../src/pki/name-constraints.js';
import { fromPem } from '../../../src/pki/pem.js';
import { openssl, OpensslPki, opensslVerify, type Issued } from '../../helpers/openssl-pki.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-x509-gaps-'));
const pki = new OpensslPki(dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const parsed = (i: Issued): ParsedCert => parseCert(fromPem(i.pem, 'CERTIFICATE'), i.name);
const refused = (code: string, message: RegExp) =>
  expect.objectContaining({ code, message: expect.stringMatching(message) });
/** An instant inside every certificate made here: one minute after the leaf's notBefore. */
const during = (leaf: ParsedCert): Date => new Date(leaf.fields.notBefore.getTime() + 60_000);
const stamp = (d: Date): string => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';

/** A leaf under a v1 CA: the usual leaf extensions minus authorityKeyIdentifier (a v1 CA has no key id). */
const leafUnderV1 = (name: string, ca: Issued, subj: string): Issued =>
  pki.sign(name, ca, subj, [
    'basicConstraints = critical,CA:FALSE',
    'keyUsage = critical,digitalSignature',
    'extendedKeyUsage = clientAuth',
  ]);

/** `openssl x509 -req` without -extfile: a version-1 certificate (no extensions at all). */
function signV1(name: string, subj: string, ca: Issued | 'self'): Issued {
  const key = pki.key(name, 'ec');
  const csr = pki.csr(name, subj, key);
  const signer = ca === 'self' ? ['-signkey', key] : ['-CA', ca.cert, '-CAkey', ca.key, '-set_serial', '0x7a11'];
  const cert = pki.path(`${name}.pem`);
  openssl(['x509', '-req', '-in', csr, ...signer, '-days', '365', '-sha256', '-out', cert]);
  return { name, cert, key, pem: readFileSync(cert, 'utf8') };
}

/**
 * A minimal `openssl ca` directory: `-revoke` here (without -crl_reason) leaves the entry with no
 * crlEntryExtensions. `md` "default" for Ed25519, whose signature has no separate digest.
 */
function caDir(name: string, ca: Issued, md: string): { config: string; crl: (file: string, from: Date) => string } {
  const d = pki.path(`${name}-ca`);
  mkdirSync(join(d, 'newcerts'), { recursive: true });
  writeFileSync(join(d, 'index.txt'), '');
  writeFileSync(join(d, 'crlnumber'), '2000\n');
  const config = join(d, 'ca.cnf');
  writeFileSync(
    config,
    `[ca]\ndefault_ca = d\n[d]\ndir = ${d}\ndatabase = $dir/index.txt\nnew_certs_dir = $dir/newcerts\n` +
      `crlnumber = $dir/crlnumber\ncertificate = ${ca.cert}\nprivate_key = ${ca.key}\ndefault_md = ${md}\n`,
  );
  return {
    config,
    crl: (file: string, from: Date): string => {
      const out = pki.path(file);
      const next = new Date(from.getTime() + 7 * 86_400_000);
      openssl([
        'ca',
        '-config',
        config,
        '-gencrl',
        '-out',
        out,
        '-crl_lastupdate',
        stamp(from),
        '-crl_nextupdate',
        stamp(next),
      ]);
      return out;
    },
  };
}

const loadCrl = (file: string): LoadedCrl => parseCrl(fromPem(readFileSync(file, 'utf8'), 'X509 CRL'), file);

let root: Issued;

beforeAll(() => {
  root = pki.root('root', '/O=Acme/CN=Gaps Root', 'ec');
});

describe('attack: a version-1 certificate presented as an intermediate CA', () => {
  let v1Inter: Issued;
  let leaf: Issued;
  beforeAll(() => {
    v1Inter = signV1('v1-inter', '/O=Acme/CN=Old Device CA', root);
    leaf = leafUnderV1('v1-leaf', v1Inter, '/O=Acme/CN=gw-1');
  });

  it('openssl x509 -req without extensions makes a v1 certificate (the premise)', () => {
    expect(parsed(v1Inter).fields.version).toBe(1);
    expect(parsed(v1Inter).fields.extensions).toEqual([]);
  });

  it('validatePath refuses it: x509_not_ca naming the v1 intermediate', () => {
    const l = parsed(leaf);
    expect(() =>
      validatePath({
        leaf: l,
        intermediates: [parsed(v1Inter)],
        anchors: [parsed(root)],
        at: during(l),
        maxIntermediates: 2,
      }),
    ).toThrow(refused('x509_not_ca', /Old Device CA.*issued a certificate but is not a CA/));
  });

  it('openssl verify refuses the same chain too (independent check), and accepts it with a v3 CA in its place', () => {
    const v1 = opensslVerify(['-CAfile', root.cert, '-untrusted', v1Inter.cert, leaf.cert]);
    expect(v1.ok).toBe(false);
    expect(v1.out).toMatch(/invalid CA certificate/);
    const v3Inter = pki.intermediate('v3-inter', root, '/O=Acme/CN=New Device CA', 'ec');
    const v3Leaf = pki.leaf('v3-leaf', v3Inter, '/O=Acme/CN=gw-2');
    expect(opensslVerify(['-CAfile', root.cert, '-untrusted', v3Inter.cert, v3Leaf.cert]).ok).toBe(true);
    const l = parsed(v3Leaf);
    const p = validatePath({
      leaf: l,
      intermediates: [parsed(v3Inter)],
      anchors: [parsed(root)],
      at: during(l),
      maxIntermediates: 2,
    });
    expect(p.certs).toHaveLength(3);
  });

  it('a v1 root as the trust anchor is still accepted as a CA (as OpenSSL does)', () => {
    const v1Root = signV1('v1-root', '/O=Acme/CN=Old Root', 'self');
    expect(parsed(v1Root).fields.version).toBe(1);
    const l = parsed(leafUnderV1('under-v1-root', v1Root, '/O=Acme/CN=gw-3'));
    const p = validatePath({
      leaf: l,
      intermediates: [],
      anchors: [parsed(v1Root)],
      at: during(l),
      maxIntermediates: 2,
    });
    expect(p.anchor.fields.version).toBe(1);
  });
});

describe('attack: revocation data the verifier cannot check, and openssl-default CRL entries', () => {
  let deviceCa: Issued;
  let leaf: Issued;
  let certs: ParsedCert[];
  let now: Date;
  // By the device CA, revokes the leaf; its entry has no extensions. Parsed inside each test, not
  // here: Stryker's per-test coverage does not attribute what a beforeAll runs.
  let genuineFile: string;
  const genuine = (): LoadedCrl => loadCrl(genuineFile);
  // The device CA's name, signed with Ed25519 by another key, newer, revokes nothing. Parsed per
  // test too: a LoadedCrl remembers its signature verdicts.
  let forgedFile: string;
  const forged = (): LoadedCrl => loadCrl(forgedFile);

  beforeAll(() => {
    deviceCa = pki.intermediate('device-ca', root, '/O=Acme/CN=Gaps Device CA', 'ec');
    leaf = pki.leaf('crl-leaf', deviceCa, '/O=Acme/CN=gw-9');
    const l = parsed(leaf);
    now = new Date(l.fields.notBefore.getTime() + 3 * 3_600_000);
    certs = validatePath({
      leaf: l,
      intermediates: [parsed(deviceCa)],
      anchors: [parsed(root)],
      at: now,
      maxIntermediates: 2,
    }).certs;

    const ca = caDir('device', deviceCa, 'sha256');
    // openssl's default: no -crl_reason, so the entry carries no crlEntryExtensions at all.
    openssl(['ca', '-config', ca.config, '-revoke', leaf.cert]);
    genuineFile = ca.crl('genuine.crl', new Date(now.getTime() - 2 * 3_600_000));

    // The forger's "CA": the device CA's very name over an Ed25519 key.
    const edKey = pki.path('forger.key');
    openssl(['genpkey', '-algorithm', 'ed25519', '-out', edKey]);
    const edCert = pki.path('forger.pem');
    openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      edKey,
      '-subj',
      '/O=Acme/CN=Gaps Device CA',
      '-days',
      '30',
      '-out',
      edCert,
    ]);
    const forger = caDir(
      'forger',
      { name: 'forger', cert: edCert, key: edKey, pem: readFileSync(edCert, 'utf8') },
      'default',
    );
    forgedFile = forger.crl('forged.crl', new Date(now.getTime() - 3_600_000));
  });

  it('the premises: the genuine entry has no crlEntryExtensions; the forged CRL is Ed25519, newer, same issuer', () => {
    const text = execFileSync('openssl', ['crl', '-in', genuineFile, '-noout', '-text'], { encoding: 'utf8' });
    expect(text).toMatch(/Serial Number/);
    expect(text).not.toMatch(/CRL entry extensions/);
    const g = genuine();
    expect(g.crl.revokedCertificates?.[0]?.crlEntryExtensions).toBeUndefined();
    const f = forged();
    expect(f.crl.signatureAlgorithm.algorithmId).toBe('1.3.101.112');
    expect(f.issuer).toEqual(g.issuer);
    expect(f.thisUpdate > g.thisUpdate).toBe(true);
    expect(f.revoked.size).toBe(0);
  });

  it('an openssl-default CRL (entry without extensions) parses and revokes the device: x509_revoked', async () => {
    const g = genuine();
    expect(g.revoked.get(certs[0]!.serialHex)).toBeInstanceOf(Date);
    await expect(checkRevocation(certs, [g], now)).rejects.toThrow(
      refused('x509_revoked', new RegExp(`gw-9.*serial ${certs[0]!.serialHex}, was revoked`)),
    );
  });

  it('a newer CRL whose signature cannot be verified (Ed25519) does not un-revoke the device', async () => {
    await expect(checkRevocation(certs, [genuine(), forged()], now)).rejects.toThrow(refused('x509_revoked', /gw-9/));
    await expect(checkRevocation(certs, [forged(), genuine()], now)).rejects.toThrow(refused('x509_revoked', /gw-9/));
  });

  it('alone, it is no revocation information: x509_crl_unavailable (fail closed), the signature named', async () => {
    await expect(checkRevocation(certs, [forged()], now)).rejects.toThrow(
      refused(
        'x509_crl_unavailable',
        /forged\.crl names that issuer but its signature does not verify with the CA key/,
      ),
    );
  });
});

describe('name constraints at their edges (RFC 5280 §4.2.1.10)', () => {
  const email = (s: string): Buffer => implicit(1, Buffer.from(s));
  const uri = (s: string): Buffer => implicit(6, Buffer.from(s));
  const subtrees = (tag: number, bases: Buffer[]): Buffer =>
    constructed(
      tag,
      bases.map((b) => sequence(b)),
    );
  const permitted = (...b: Buffer[]): Buffer => sequence(subtrees(0xa0, b));
  const excluded = (...b: Buffer[]): Buffer => sequence(subtrees(0xa1, b));
  const violation = (nc: Buffer, kind: 'email' | 'uri', value: string): string | undefined =>
    nameConstraintViolation(decodeNameConstraints(nc), [{ kind, value }]);

  it('attack: an address with an empty local part ("@evil.test") is still at the excluded host: refused', () => {
    // The host part decides for a host constraint; an empty local part does not make the name hostless.
    expect(violation(excluded(email('evil.test')), 'email', '@evil.test')).toBe(
      'email "@evil.test" is within the excluded subtree email "evil.test"',
    );
    expect(violation(permitted(email('acme.test')), 'email', '@acme.test')).toBeUndefined();
    // Without "@" there is no host: within no host subtree.
    expect(violation(excluded(email('evil.test')), 'email', 'evil.test')).toBeUndefined();
  });

  it('attack through the path: a leaf with email SAN "@evil.test" under a CA excluding evil.test; openssl verify agrees', () => {
    const nca = pki.intermediate('nc-ca', root, '/O=Acme/CN=NC Device CA', 'ec', [
      'basicConstraints = critical,CA:TRUE,pathlen:0',
      'nameConstraints = critical,excluded;email:evil.test',
    ]);
    const bad = pki.leaf('nc-leaf', nca, '/O=Acme/CN=gw-5', { san: 'email:@evil.test' });
    const l = parsed(bad);
    expect(l.san).toEqual([{ kind: 'email', value: '@evil.test' }]);
    expect(() =>
      validatePath({
        leaf: l,
        intermediates: [parsed(nca)],
        anchors: [parsed(root)],
        at: during(l),
        maxIntermediates: 2,
      }),
    ).toThrow(refused('x509_name_constraints', /@evil\.test/));
    const v = opensslVerify(['-CAfile', root.cert, '-untrusted', nca.cert, bad.cert]);
    expect(v.ok).toBe(false);
    expect(v.out).toMatch(/excluded subtree violation/);
  });

  it('a URI with an IPv6 literal host: the host is the whole bracketed literal', () => {
    // Excluding that literal catches it with a port and a path, in any case of its hex digits.
    const nc = excluded(uri('[2001:db8::1]'));
    expect(violation(nc, 'uri', 'https://[2001:db8::1]:8443/x')).toBe(
      'uri "https://[2001:db8::1]:8443/x" is within the excluded subtree uri "[2001:db8::1]"',
    );
    expect(violation(nc, 'uri', 'https://user@[2001:DB8::1]/')).toMatch(
      /is within the excluded subtree uri "\[2001:db8::1\]"/,
    );
    expect(violation(nc, 'uri', 'https://[2001:db8::2]/')).toBeUndefined();
    // A URI host constraint is a domain name (§4.2.1.10): an IP literal is not within it.
    expect(violation(permitted(uri('.acme.test')), 'uri', 'https://[2001:db8::1]/')).toBe(
      'uri "https://[2001:db8::1]/" is not within the permitted uri subtrees',
    );
  });
});
