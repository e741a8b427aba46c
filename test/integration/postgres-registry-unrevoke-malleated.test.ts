/**
 * A database writer used to un-revoke an intermediate by re-registering the SAME certificate with
 * different DER bytes: its ECDSA signature (r, s) replaced by (r, n - s), equally valid. The
 * running issuer remembered revocations by the hash of the stored DER, so the altered copy was
 * not recognised (security review of issue #16). Now revocations are remembered by the
 * intermediate's key. docs/issuers.md: "an issuer that saw the revocation keeps it".
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createIntermediateCa, type CaMaterial as PkiCa } from '../../src/pki/ca.js';
import { CertificateIssuer } from '../../src/pki/issue.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { randomSerial } from '../../src/pki/serial.js';
import { readAuditKey } from '../../src/server/audit/audit-key.js';
import { initDataDirWithStore, loadCaMaterial, paths } from '../../src/server/data-dir.js';
import { createIssuerContext } from '../../src/server/issuer.js';
import { intermediateCommonName } from '../../src/server/issuers/names.js';
import { applyRegistry, startRegistry } from '../../src/server/issuers/runtime.js';
import { checkPresentedChain } from '../../src/server/ops/authenticate.js';
import { readPrivateKeyFile } from '../../src/server/key-file.js';
import { openPostgresStores, type PostgresStores } from '../../src/server/store/postgres/index.js';
import { silentLogger as mkSilent } from '../../src/util/log.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';

const TD = 'example.org';
const silentLogger = mkSilent();
let pg: Postgres;
let dir: string;
let db: string;
let stores: PostgresStores;

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  db = pg.createDatabase('unrevoke');
  const url = pg.url(db);
  dir = join(mkdtempSync(join(tmpdir(), 'sigil-registry-attack-')), 'issuer');
  await initDataDirWithStore(dir, TD, url);
  stores = openPostgresStores(url, { audit: { key: readAuditKey(paths(dir).auditKey)! }, checkAuditKey: true });
}, 60_000);

afterAll(async () => {
  await stores?.close();
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function leaf(ca: PkiCa): Buffer {
  const spkiDer = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
  const now = Date.now();
  return new CertificateIssuer({ caCertDer: ca.certDer, caKey: ca.key }).issueSvid({
    serial: randomSerial(),
    spkiDer,
    spiffeId: `spiffe://${TD}/bot/edge/i1`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3600_000),
    subject: [['CN', 'i1']],
  });
}

it('a revoked intermediate re-registered with a malleated ECDSA signature (s -> n-s) stays revoked at an issuer that saw it revoked', async () => {
  const ctx = createIssuerContext({ ca: loadCaMaterial(dir), stores, log: silentLogger });
  const root = { certDer: fromPem(ctx.ca.rootPem, 'CERTIFICATE'), key: readPrivateKeyFile(paths(dir).rootKey) };
  const b = createIntermediateCa(root, { trustDomain: TD, commonName: intermediateCommonName(TD, 'b') });
  await stores.issuers.register({ name: 'b', certPem: toPem('CERTIFICATE', b.certDer), createdAt: Date.now() });
  const rt = await startRegistry(ctx, { log: silentLogger, refreshMs: 3600_000, dataDir: dir });
  try {
    await stores.issuers.setStatus('b', 'revoked', 'key stolen', Date.now());
    await ctx.intermediates!.refresh();
    applyRegistry(ctx, ctx.intermediates!);
    const stolen = leaf(b);
    expect(() => checkPresentedChain(ctx, [stolen], 'renew')).toThrow(/revoked/);

    // Control: the plain un-revoke (same bytes) is caught by the remembered revocation.
    pg.admin(`UPDATE issuers SET status = 'active', reason = NULL WHERE name = 'b'`, db);
    await ctx.intermediates!.refresh();
    applyRegistry(ctx, ctx.intermediates!);
    expect(() => checkPresentedChain(ctx, [stolen], 'renew')).toThrow(/revoked/);

    // Attack: same certificate (same TBS, serial, key), signature s -> n - s.
    const malleated = malleate(b.certDer);
    expect(new X509Certificate(malleated).verify(new X509Certificate(root.certDer).publicKey)).toBe(true);
    expect(malleated.equals(b.certDer)).toBe(false);
    const padded = toPem('CERTIFICATE', malleated);
    pg.admin(`UPDATE issuers SET cert_pem = '${padded}' WHERE name = 'b'`, db);
    await ctx.intermediates!.refresh();
    applyRegistry(ctx, ctx.intermediates!);
    // The issuer that saw the revocation must still refuse the revoked key's leaves.
    expect(() => checkPresentedChain(ctx, [stolen], 'renew')).toThrow(/revoked/);
  } finally {
    rt.stop();
  }
}, 60_000);

/** (r, s) -> (r, n - s) in the certificate's ECDSA P-256 signature: still valid, other bytes. */
function malleate(der: Buffer): Buffer {
  const n = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
  const cert = asn1js.fromBER(new Uint8Array(der).buffer).result as asn1js.Sequence;
  const bits = cert.valueBlock.value[2] as asn1js.BitString;
  const sig = asn1js.fromBER(bits.valueBlock.valueHexView.slice().buffer).result as asn1js.Sequence;
  const [r, s] = sig.valueBlock.value as [asn1js.Integer, asn1js.Integer];
  const big = (i: asn1js.Integer): bigint => BigInt('0x' + Buffer.from(i.valueBlock.valueHexView).toString('hex'));
  const int = (v: bigint): asn1js.Integer => {
    let h = v.toString(16);
    if (h.length % 2) h = '0' + h;
    if (parseInt(h.slice(0, 2), 16) >= 0x80) h = '00' + h;
    return new asn1js.Integer({ valueHex: new Uint8Array(Buffer.from(h, 'hex')).buffer });
  };
  const newSig = new asn1js.Sequence({ value: [int(big(r)), int(n - big(s))] }).toBER();
  const out = new asn1js.Sequence({
    value: [cert.valueBlock.value[0]!, cert.valueBlock.value[1]!, new asn1js.BitString({ valueHex: newSig })],
  });
  return Buffer.from(out.toBER());
}
