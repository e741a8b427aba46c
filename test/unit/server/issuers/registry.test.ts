/**
 * One root, one intermediate per issuer (issue #15; docs/issuers.md), on one issuer's context:
 * which presented chains a renewal accepts once the registry names other intermediates, and the
 * attacks on the registry — a database writer's intermediate not signed by the root, a revoked
 * intermediate's leaf (named refusal), the bundle and stored answers across intermediates.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { createIntermediateCa, createRootCa, type CaMaterial as PkiCa } from '../../../../src/pki/ca.js';
import { CertificateIssuer } from '../../../../src/pki/issue.js';
import { fromPem, toPem } from '../../../../src/pki/pem.js';
import { randomSerial } from '../../../../src/pki/serial.js';
import { readPrivateKeyFile } from '../../../../src/server/key-file.js';
import { initDataDir, loadCaMaterial, openIssuerStores, paths } from '../../../../src/server/data-dir.js';
import { createIssuerContext, type IssuerContext } from '../../../../src/server/issuer.js';
import { checkPresentedChain } from '../../../../src/server/ops/authenticate.js';
import { handleBundle } from '../../../../src/server/ops/bundle.js';
import { intermediateCommonName } from '../../../../src/server/issuers/names.js';
import { signerId } from '../../../../src/server/audit/checkpoints.js';
import { applyRegistry, startRegistry, type RegistryRuntime } from '../../../../src/server/issuers/runtime.js';
import { StoredAnswerCodec } from '../../../../src/server/ops/stored-answer.js';
import { signRootCrl } from '../../../../src/server/issuers/root-crl.js';
import { rootCrlFile } from '../../../../src/server/issuers/root-crl-file.js';
import Database from 'better-sqlite3';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { Stores } from '../../../../src/server/store/types.js';
import { createLogger } from '../../../../src/util/log.js';
import { SigilError } from '../../../../src/errors.js';

const TD = 'example.org';
const log = createLogger({ name: 'test', level: 'silent' });

let dir: string;
let dataDir: string;
let stores: Stores;
let ctx: IssuerContext;
let root: PkiCa;
let runtime: RegistryRuntime;

function intermediate(name: string, signer: PkiCa = root): PkiCa {
  return createIntermediateCa(signer, { trustDomain: TD, commonName: intermediateCommonName(TD, name) });
}

/** A leaf for bot edge, instance i1, issued by `ca`. */
function leaf(ca: PkiCa, instance = 'i1', bot = 'edge'): Buffer {
  const spkiDer = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
  const now = Date.now();
  return new CertificateIssuer({ caCertDer: ca.certDer, caKey: ca.key }).issueSvid({
    serial: randomSerial(),
    spkiDer,
    spiffeId: `spiffe://${TD}/bot/${bot}/${instance}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3600_000),
    subject: [['CN', instance]],
  });
}

function refusal(fn: () => unknown): SigilError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

const register = (name: string, ca: PkiCa): Promise<unknown> =>
  stores.issuers.register({ name, certPem: toPem('CERTIFICATE', ca.certDer), createdAt: Date.now() });

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-issuers-'));
  dataDir = join(dir, 'issuer');
  initDataDir(dataDir, TD);
  stores = openIssuerStores(dataDir, { createAuditKey: true });
  ctx = createIssuerContext({ ca: loadCaMaterial(dataDir), stores, log });
  root = { certDer: fromPem(ctx.ca.rootPem, 'CERTIFICATE'), key: readPrivateKeyFile(paths(dataDir).rootKey) };
  runtime = await startRegistry(ctx, { log, refreshMs: 3600_000 });
});

afterEach(async () => {
  runtime.stop();
  await stores.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('renewals across intermediates of one root', () => {
  it('accepts a leaf of another registered intermediate only once the registry names it', async () => {
    const b = intermediate('b');
    const der = leaf(b);
    expect(refusal(() => checkPresentedChain(ctx, [der, b.certDer], 'renew')).code).toBe('chain_invalid');
    await register('b', b);
    await ctx.intermediates!.refresh();
    // The runtime puts the registry into the context (issuingCas, storedAnswers).
    applyRegistry(ctx, ctx.intermediates!);
    expect(checkPresentedChain(ctx, [der, b.certDer], 'renew').instanceId).toBe('i1');
    expect(checkPresentedChain(ctx, [der], 'renew').bot).toBe('edge');
    // Own leaves still verify.
    expect(
      checkPresentedChain(ctx, [leaf({ certDer: ctx.ca.intermediateDer, key: ctx.ca.intermediateKey })], 'renew')
        .instanceId,
    ).toBe('i1');
  });

  it('the bundle lists the root, then own and every live intermediate, never a revoked one', async () => {
    const b = intermediate('b');
    const c = intermediate('c');
    await register('b', b);
    await register('c', c);
    await stores.issuers.setStatus('c', 'retired', null, Date.now());
    await ctx.intermediates!.refresh();
    const payload = (jws: { payload: string }) => JSON.parse(Buffer.from(jws.payload, 'base64url').toString()).result;
    let bundle = payload(handleBundle(ctx) as { payload: string });
    expect(bundle.roots).toEqual([ctx.ca.rootPem.trim() + '\n']);
    expect(bundle.intermediates).toEqual([
      ctx.ca.intermediatePem.trim() + '\n',
      toPem('CERTIFICATE', b.certDer),
      toPem('CERTIFICATE', c.certDer),
    ]);
    await stores.issuers.setStatus('b', 'revoked', 'key stolen', Date.now());
    await ctx.intermediates!.refresh();
    bundle = payload(handleBundle(ctx) as { payload: string });
    expect(bundle.intermediates).toEqual([ctx.ca.intermediatePem.trim() + '\n', toPem('CERTIFICATE', c.certDer)]);
  });

  it('audit checkpoints of every live intermediate verify here (a peer prunes too), a revoked one’s do not', async () => {
    // Review of issue #16: verified against this issuer's intermediate alone, a peer's signed
    // prune anchor read as tampering and stopped this issuer's own pruning.
    const b = intermediate('b');
    const own = signerId(ctx.ca.intermediateKey);
    const peer = signerId(b.key);
    expect([...ctx.auditEnv.verify!.verifiers!.keys()]).toEqual([own]);
    await register('b', b);
    await ctx.intermediates!.refresh();
    applyRegistry(ctx, ctx.intermediates!);
    expect([...ctx.auditEnv.verify!.verifiers!.keys()].sort()).toEqual([own, peer].sort());
    await stores.issuers.setStatus('b', 'revoked', 'key stolen', Date.now());
    await ctx.intermediates!.refresh();
    applyRegistry(ctx, ctx.intermediates!);
    expect([...ctx.auditEnv.verify!.verifiers!.keys()]).toEqual([own]);
  });

  it('attack: a revoked intermediate signs a leaf — refused issuer_revoked, with or without it in x5c', async () => {
    const b = intermediate('b');
    await register('b', b);
    await stores.issuers.setStatus('b', 'revoked', 'key stolen', Date.now());
    await ctx.intermediates!.refresh();
    const der = leaf(b);
    for (const chain of [[der, b.certDer], [der]]) {
      const e = refusal(() => checkPresentedChain(ctx, chain, 'renew'));
      expect(e.code).toBe('issuer_revoked');
      expect(e.message).toMatch(/issuer "b", revoked at .* \(key stolen\)/);
    }
    // An own leaf presented with the revoked intermediate tacked on is refused too.
    const own = leaf({ certDer: ctx.ca.intermediateDer, key: ctx.ca.intermediateKey });
    expect(refusal(() => checkPresentedChain(ctx, [own, b.certDer], 'renew')).code).toBe('issuer_revoked');
  });

  it('attack: a database writer registers an intermediate of another root — ignored, its leaves refused', async () => {
    const rogueRoot = createRootCa({ trustDomain: TD });
    const rogue = intermediate('rogue', rogueRoot);
    await register('rogue', rogue);
    // Even one that claims the subject and name form of a real one.
    await ctx.intermediates!.refresh();
    applyRegistry(ctx, ctx.intermediates!);
    expect(ctx.intermediates!.live.map((l) => l.name ?? 'own')).toEqual(['own']);
    const e = refusal(() => checkPresentedChain(ctx, [leaf(rogue), rogue.certDer], 'renew'));
    expect(e.code).toBe('chain_invalid');
    // A self-signed "intermediate" with the real root's subject is no better.
    const selfMade = createRootCa({ trustDomain: TD });
    await register('self', selfMade);
    await ctx.intermediates!.refresh();
    expect(ctx.intermediates!.live).toHaveLength(1);
  });

  it('a retired intermediate stays live (its leaves renew elsewhere); this issuer retired stops', async () => {
    const b = intermediate('b');
    await register('b', b);
    await stores.issuers.setStatus('b', 'retired', null, Date.now());
    await ctx.intermediates!.refresh();
    applyRegistry(ctx, ctx.intermediates!);
    expect(checkPresentedChain(ctx, [leaf(b), b.certDer], 'renew').instanceId).toBe('i1');
    const seen: string[] = [];
    ctx.intermediates!.onRetired((s) => seen.push(s));
    await stores.issuers.register({ name: 'me', certPem: ctx.ca.intermediatePem, createdAt: Date.now() });
    await ctx.intermediates!.refresh();
    expect(ctx.intermediates!.ownStatus).toBe('active');
    await stores.issuers.setStatus('me', 'retired', null, Date.now());
    await ctx.intermediates!.refresh();
    expect(seen).toEqual(['retired']);
    // And a retired issuer refuses to start.
    await expect(startRegistry(ctx, { log })).rejects.toMatchObject({ code: 'issuer_retired' });
  });

  it('replays an answer stored by another live intermediate byte for byte', async () => {
    const b = intermediate('b');
    await register('b', b);
    await ctx.intermediates!.refresh();
    const bPem = toPem('CERTIFICATE', b.certDer);
    const atB = new StoredAnswerCodec([bPem, ctx.ca.rootPem.trim() + '\n']);
    const json = JSON.stringify({ result: { chain: ['leaf', bPem], bundle: [ctx.ca.rootPem.trim() + '\n'] } });
    const stored = atB.compact(json);
    expect(() => ctx.storedAnswers.expand(stored)).toThrow(/no longer has/);
    applyRegistry(ctx, ctx.intermediates!);
    expect(ctx.storedAnswers.expand(stored)).toBe(json);
  });

  it('attack: a database writer sets a revoked intermediate back to active — still revoked here, and at a fresh issuer holding the root CRL', async () => {
    const b = intermediate('b');
    await register('b', b);
    await stores.issuers.setStatus('b', 'revoked', 'key stolen', Date.now());
    await ctx.intermediates!.refresh();
    const unrevoke = (): void => {
      const db = new Database(join(dataDir, 'issuer.db'));
      db.prepare("UPDATE issuers SET status = 'active', reason = NULL WHERE name = 'b'").run();
      db.close();
    };
    unrevoke();
    expect((await stores.issuers.get('b'))!.status).toBe('active');
    await ctx.intermediates!.refresh();
    applyRegistry(ctx, ctx.intermediates!);
    // This process saw it revoked: it stays revoked.
    expect(refusal(() => checkPresentedChain(ctx, [leaf(b), b.certDer], 'renew')).code).toBe('issuer_revoked');
    // A fresh issuer (a restart) has only the database... and the root CRL in its data directory.
    const revokeAgain = async (): Promise<void> => {
      await stores.issuers.setStatus('b', 'revoked', null, Date.now());
    };
    await revokeAgain();
    const crl = await signRootCrl(
      stores,
      { certDer: root.certDer, key: root.key, trustDomain: TD },
      { now: Date.now() },
    );
    expect(crl.listed.map((l) => l.name)).toEqual(['b']);
    mkdirSync(join(dataDir, 'crl'), { recursive: true });
    writeFileSync(rootCrlFile(dataDir), crl.der);
    unrevoke();
    const fresh = createIssuerContext({ ca: ctx.ca, stores, log });
    const rt = await startRegistry(fresh, { log, refreshMs: 3600_000, dataDir });
    try {
      expect(refusal(() => checkPresentedChain(fresh, [leaf(b), b.certDer], 'renew')).code).toBe('issuer_revoked');
      // Without the root CRL the fresh issuer believes the database (what the file defends against).
      const bare = createIssuerContext({ ca: ctx.ca, stores, log });
      const rt2 = await startRegistry(bare, { log, refreshMs: 3600_000 });
      expect(checkPresentedChain(bare, [leaf(b), b.certDer], 'renew').instanceId).toBe('i1');
      rt2.stop();
      // A root CRL signed by another key is not believed (and does not un-revoke anything either).
      const other = createRootCa({ trustDomain: TD });
      const forged = await signRootCrl(
        stores,
        { certDer: other.certDer, key: other.key, trustDomain: TD },
        { now: Date.now() },
      );
      writeFileSync(rootCrlFile(dataDir), forged.der);
      const third = createIssuerContext({ ca: ctx.ca, stores, log });
      const rt3 = await startRegistry(third, { log, refreshMs: 3600_000, dataDir });
      expect(checkPresentedChain(third, [leaf(b), b.certDer], 'renew').instanceId).toBe('i1');
      rt3.stop();
    } finally {
      rt.stop();
    }
  });
});
