/**
 * `sigil server add-issuer --data-dir <root issuer dir> --name <n> --out <new dir>` (issue #15;
 * docs/issuers.md): a new issuer data directory with ITS OWN intermediate CA, signed by the root,
 * registered in the shared store so every issuer trusts leaves issued under it.
 *
 * Run where the root key is (the first issuer's data directory, or wherever ca/root.key was moved
 * offline). The new directory holds:
 *
 *   ca/root.pem                       the root (public), the pin every agent has
 *   ca/intermediate.pem/.key          a NEW intermediate; the key (0600) is made here and written
 *                                     only into this directory, never into the store
 *   audit.key, admin.token,           copies: every issuer on one database chains with one audit
 *   ca/ssh_*_ca.key, ca/jwt_signing.key  key, answers one admin, one SSH CA and one JWT key set
 *   (+ ca/rotating-keys.json, *.next)  (and publishes the same rotation in progress)
 *   issuer.json                       trust domain, "store": "postgres", "issuer_name"
 *
 * and no root key. Order: files first, registry row last, so a failure leaves no row pointing at a
 * directory that does not exist (the half-made directory is removed). The first issuer's own
 * intermediate is registered too (as "primary", or its issuer.json `issuer_name`) when it is not
 * yet: from then on both know each other.
 */
import { readAnswerSealSince, writeAnswerSealFile } from '../answer-seal-file.js';
import { X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';

import { SigilError } from '../../errors.js';
import { createIntermediateCa } from '../../pki/ca.js';
import { fromPem, toPem } from '../../pki/pem.js';
import { ensureDir, writeFileAtomic } from '../../util/atomic-file.js';
import { credentialKeyPaths, ensureCredentialKeys } from '../credential-keys.js';
import { formatRotatingKeys, readRotatingState, rotatingKeysPath, spkiBase64 } from '../rotating-keys.js';
import { prepareDataDir } from '../data-dir-perms.js';
import { LAYOUT_VERSION, openIssuerStores, paths, readMeta, type IssuerMeta } from '../data-dir.js';
import { readPrivateKeyFile } from '../key-file.js';
import type { Stores } from '../store/types.js';
import { checkIssuerName, FIRST_ISSUER_NAME, intermediateCommonName } from './names.js';
import { verifyIntermediate } from './verify.js';

export interface AddIssuerResult {
  name: string;
  dataDir: string;
  serial: string;
  notAfter: string;
  /** The first issuer's intermediate, registered now because it was not yet. */
  registeredFirst?: string;
}

/** issuer.json with the registry name (`issuer_name`) this directory's intermediate was registered under. */
export type IssuerMetaWithName = IssuerMeta & { issuer_name?: string };

export async function addIssuer(o: {
  rootDir: string;
  name: string;
  outDir: string;
  store?: string;
  now?: number;
  ttlDays?: number;
}): Promise<AddIssuerResult> {
  const now = o.now ?? Date.now();
  const name = checkIssuerName(o.name);
  const meta = readMeta(o.rootDir) as IssuerMetaWithName;
  if (meta.store !== 'postgres')
    throw new SigilError(
      'config_invalid',
      `the issuer in ${o.rootDir} keeps its state in its own SQLite file; issuers with their own intermediates share one PostgreSQL store (move it first: sigil server migrate-store)`,
    );
  const p = paths(o.rootDir);
  if (!existsSync(p.rootKey))
    throw new SigilError(
      'config_invalid',
      `${p.rootKey} is missing: add-issuer signs the new intermediate with the root key, so run it where the root key is (docs/issuers.md)`,
    );
  if (existsSync(o.outDir) && readdirSync(o.outDir).length > 0)
    throw new SigilError('already_initialized', `${o.outDir} is not empty; add-issuer makes a new data directory`);
  const stores = openIssuerStores(o.rootDir, o.store !== undefined ? { store: o.store } : {});
  try {
    const rootDer = fromPem(readFileSync(p.rootCert, 'utf8'), 'CERTIFICATE');
    const root = { certDer: rootDer, key: readPrivateKeyFile(p.rootKey) };
    const firstPem = readFileSync(p.intCert, 'utf8');
    const rows = await stores.issuers.list();
    if (rows.some((r) => r.name === name))
      throw new SigilError('already_initialized', `an issuer named "${name}" is already registered`);
    const registeredFirst = await registerFirst(stores, rows, firstPem, meta, now);
    const inter = createIntermediateCa(root, {
      trustDomain: meta.trust_domain,
      commonName: intermediateCommonName(meta.trust_domain, name),
      ...(o.ttlDays !== undefined ? { ttlDays: o.ttlDays } : {}),
    });
    const certPem = toPem('CERTIFICATE', inter.certDer);
    const v = verifyIntermediate(certPem, new X509Certificate(rootDer), meta.trust_domain, now);
    if (!v.ok) throw new SigilError('internal', `the new intermediate does not verify: ${v.reason}`);
    writeIssuerDir(o.rootDir, o.outDir, { ...meta, issuer_name: name }, inter.key, certPem);
    try {
      if ((await stores.issuers.register({ name, certPem, createdAt: now })) !== 'created')
        throw new SigilError('already_initialized', `an issuer named "${name}" was registered meanwhile`);
    } catch (e) {
      rmSync(o.outDir, { recursive: true, force: true });
      throw e;
    }
    const notAfter = new X509Certificate(inter.certDer).validTo;
    await stores.audit.append(
      {
        action: 'issuer_added',
        outcome: 'ok',
        actor: 'admin',
        details: { issuer: name, serial: v.value.serial, subject: intermediateCommonName(meta.trust_domain, name) },
      },
      now,
    );
    return {
      name,
      dataDir: o.outDir,
      serial: v.value.serial,
      notAfter: new Date(notAfter).toISOString(),
      ...(registeredFirst ? { registeredFirst } : {}),
    };
  } finally {
    await stores.close();
  }
}

/** Register the root directory's own intermediate, when no row holds it yet; returns the name used. */
async function registerFirst(
  stores: Stores,
  rows: Array<{ name: string; certPem: string }>,
  firstPem: string,
  meta: IssuerMetaWithName,
  now: number,
): Promise<string | undefined> {
  const der = fromPem(firstPem, 'CERTIFICATE');
  if (rows.some((r) => safeDer(r.certPem)?.equals(der))) return undefined;
  const name = meta.issuer_name ?? FIRST_ISSUER_NAME;
  if ((await stores.issuers.register({ name, certPem: firstPem.trim() + '\n', createdAt: now })) !== 'created')
    throw new SigilError(
      'config_invalid',
      `the name "${name}" is registered for another intermediate; set "issuer_name" in issuer.json of the root directory`,
    );
  await stores.audit.append(
    { action: 'issuer_added', outcome: 'ok', actor: 'admin', details: { issuer: name, first: true } },
    now,
  );
  return name;
}

/** A registry row's certificate as DER, or undefined when it cannot be read (such a row matches nothing). */
export function safeDer(pem: string): Buffer | undefined {
  try {
    return fromPem(pem, 'CERTIFICATE');
  } catch {
    return undefined;
  }
}

function writeIssuerDir(
  rootDir: string,
  outDir: string,
  meta: IssuerMetaWithName,
  key: import('node:crypto').KeyObject,
  certPem: string,
): void {
  const from = paths(rootDir);
  const to = paths(outDir);
  ensureDir(outDir, 0o700);
  prepareDataDir(outDir);
  try {
    ensureDir(to.caDir, 0o700);
    // The new key first (0600), then the certificates, the shared secrets, and issuer.json last.
    writeFileAtomic(to.intKey, key.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    writeFileAtomic(to.intCert, certPem, { mode: 0o644 });
    writeFileAtomic(to.rootCert, readFileSync(from.rootCert), { mode: 0o644 });
    ensureCredentialKeys(rootDir);
    const fromKeys = credentialKeyPaths(rootDir);
    const toKeys = credentialKeyPaths(outDir);
    for (const k of Object.keys(fromKeys) as Array<keyof typeof fromKeys>)
      writeFileAtomic(toKeys[k], readFileSync(fromKeys[k]), { mode: 0o600 });
    copyRotation(rootDir, outDir);
    writeFileAtomic(to.auditKey, readFileSync(from.auditKey), { mode: 0o600 });
    // The same seal window as the first issuer: a new issuer must not open a fresh one for
    // unsealed rows (ops/answer-seal.ts). A first issuer that never started sealed nothing yet:
    // since = 0 here, so unsealed rows it stores are refused by this one (docs/security.md).
    writeAnswerSealFile(outDir, readAnswerSealSince(rootDir) ?? 0);
    writeFileAtomic(to.adminToken, readFileSync(from.adminToken), { mode: 0o600 });
    const out: IssuerMetaWithName = {
      trust_domain: meta.trust_domain,
      created_at: new Date().toISOString(),
      layout_version: LAYOUT_VERSION,
      store: 'postgres',
      ...(meta.issuer_name ? { issuer_name: meta.issuer_name } : {}),
    };
    writeFileAtomic(to.meta, JSON.stringify(out, null, 2) + '\n', { mode: 0o644 });
  } catch (e) {
    rmSync(outDir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * A rotation in progress (server/rotate-key.ts) travels with the keys: the new issuer publishes the
 * same staged and retired keys and can activate the staged one. Read as the issuer reads them
 * (the list's mode and owner, O_NOFOLLOW; each staged key file must be the key the list
 * publishes), written fresh — never a copy of whatever is at the path.
 */
function copyRotation(fromDir: string, toDir: string): void {
  const state = readRotatingState(fromDir);
  if (state.keys.length === 0) return;
  const from = credentialKeyPaths(fromDir);
  const to = credentialKeyPaths(toDir);
  const file = { jwt: 'jwtSigning', 'ssh-user': 'sshUserCa', 'ssh-host': 'sshHostCa' } as const;
  for (const k of state.keys.filter((x) => x.state === 'next')) {
    const src = `${from[file[k.kind]]}.next`;
    const key = readPrivateKeyFile(src);
    if (spkiBase64(key) !== spkiBase64(k.publicKey))
      throw new SigilError(
        'config_invalid',
        `${src} is not the key ${rotatingKeysPath(fromDir)} publishes as the next ${k.kind} key`,
      );
    writeFileAtomic(`${to[file[k.kind]]}.next`, key.export({ type: 'pkcs8', format: 'pem' }) as string, {
      mode: 0o600,
    });
  }
  writeFileAtomic(rotatingKeysPath(toDir), formatRotatingKeys(state.keys, state.sequence), { mode: 0o644 });
}
