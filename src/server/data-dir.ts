/**
 * The issuer's data directory: CA material, the admin credential and the SQLite store (or, with
 * `--store postgres://…`, the state in PostgreSQL and only the files here: ./data-dir-store.ts).
 *
 *   issuer.json                trust domain, creation time, layout version
 *   ca/root.pem  ca/root.key   ECDSA P-256 root (key 0600; move it offline in production, see docs/runbook.md)
 *   ca/intermediate.pem/.key   issuing intermediate (key 0600)
 *   ca/ssh_user_ca.key, ca/ssh_host_ca.key, ca/jwt_signing.key
 *                              SSH user/host CAs and the JWT-SVID key (0600, ./credential-keys.ts)
 *   admin.token                bearer credential for `sigil ctl` over the admin API (0600)
 *   issuer.db                  SQLite (WAL) store
 *   audit.key                  HMAC key of the audit chain, outside issuer.db (0600, ./audit/audit-key.ts)
 *   answer-seal.json           since when stored answers are sealed (from audit.key; ./answer-seal-file.ts)
 *   audit-checkpoints.jsonl    signed audit checkpoints, append-only (./audit/checkpoints.ts)
 */
import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SigilError } from '../errors.js';
import { createIntermediateCa, createRootCa } from '../pki/ca.js';
import { spkiPin } from '../pki/chain.js';
import { checkTrustDomain } from '../pki/spiffe-id.js';
import { fromPem, toPem } from '../pki/pem.js';
import { ensureDir, writeFileAtomic } from '../util/atomic-file.js';
import { randomSecret, sha256Hex } from '../util/secret.js';
import { ensureCredentialKeys, type CredentialKeys } from './credential-keys.js';
import { rotatingOf, type RotatingKey } from './rotating-keys.js';
import { assertDataDirSecure, prepareDataDir } from './data-dir-perms.js';
import { readPrivateKeyFile } from './key-file.js';
import { ensureAuditKey, readAuditKey, AUDIT_KEY_FILE } from './audit/audit-key.js';
import { CHECKPOINT_FILE } from './audit/checkpoints.js';
import { writeAnswerSealFile } from './answer-seal-file.js';
import {
  asyncSqliteStoresOn,
  openSqlite,
  openSqliteStores,
  SqliteAuditStore,
  syncSqliteStores,
} from './store/sqlite/index.js';
import type { AuditEvent, Stores } from './store/types.js';
import {
  checkDatabaseClaimable,
  checkStoreMatches,
  initPostgresStore,
  openPostgresIssuerStores,
  STORE_ENV,
  storeKind,
} from './data-dir-store.js';

export const LAYOUT_VERSION = 1;

export interface IssuerMeta {
  trust_domain: string;
  created_at: string;
  layout_version: number;
  /** Where the state is kept when not in issuer.db: 'postgres' (./data-dir-store.ts). */
  store?: 'postgres';
}

export interface CaMaterial {
  trustDomain: string;
  rootDer: Buffer;
  rootPem: string;
  intermediateDer: Buffer;
  intermediatePem: string;
  intermediateKey: KeyObject;
  /** `sha256:<hex>` of the root's SPKI: what agents pin. */
  pin: string;
  /** SSH CA and JWT signing keys (./credential-keys.ts) and the keys of a rotation in progress (./rotating-keys.ts). */
  credentials: CredentialKeys & { rotating: RotatingKey[]; rotatingSequence: number };
  /** Credential key files this load created (missing: a directory from before them, or a restore without them). */
  credentialKeysCreated: string[];
  /** Intermediates this directory used before (rotate-intermediate), for audit checkpoints: {@link keptIntermediatePems}. */
  keptIntermediatePems?: string[];
}

export const paths = (dir: string) => ({
  meta: join(dir, 'issuer.json'),
  caDir: join(dir, 'ca'),
  rootCert: join(dir, 'ca', 'root.pem'),
  rootKey: join(dir, 'ca', 'root.key'),
  intCert: join(dir, 'ca', 'intermediate.pem'),
  intKey: join(dir, 'ca', 'intermediate.key'),
  adminToken: join(dir, 'admin.token'),
  db: join(dir, 'issuer.db'),
  auditKey: join(dir, AUDIT_KEY_FILE),
  auditCheckpoints: join(dir, CHECKPOINT_FILE),
});

/**
 * A SPIFFE trust domain name (SPIFFE-ID spec §2.1): non-empty, lowercase letters, digits, dots,
 * dashes and underscores ([a-z0-9.-_]), at most 255 bytes (§2.3). `my_domain.org` is valid: a
 * trust domain is not a DNS name. The one definition is pki/spiffe-id.ts, so what `server init`
 * accepts is exactly what the CA and every SPIFFE ID parser accept.
 */
export function validateTrustDomain(td: string): string {
  checkTrustDomain(td, 'config_invalid');
  return td;
}

export interface InitResult {
  pin: string;
  trustDomain: string;
  adminTokenPath: string;
}

/**
 * Create a new issuer: CA hierarchy, admin credential, empty store. Refuses an already
 * initialised directory (re-running init must never replace a CA machines already trust).
 */
export function initDataDir(dir: string, trustDomain: string): InitResult {
  const { p, root, adminToken } = createIssuerFiles(dir, trustDomain);
  // The audit key exists before the first row, so the whole chain is keyed (from_seq 1).
  // A new file nothing else uses yet: its first two rows go through the synchronous SQLite
  // stores, so that init stays synchronous.
  const db = openSqlite(p.db);
  try {
    const { key } = ensureAuditKey(p.auditKey, db, Date.now());
    const init = syncSqliteStores(db, { audit: { key } });
    init.admin.setAdminTokenHash(sha256Hex(adminToken));
    init.audit.append(initEvent(trustDomain, root.certDer), Date.now());
  } finally {
    db.close();
  }
  return finishInit(dir, trustDomain, root.certDer, adminToken, undefined);
}

/**
 * `initDataDir` with the state in the store `store` names (`--store`): the data directory's
 * SQLite file, or a PostgreSQL database (./data-dir-store.ts), which must not hold an issuer yet.
 */
export async function initDataDirWithStore(
  dir: string,
  trustDomain: string,
  store: string | undefined,
): Promise<InitResult> {
  if (storeKind(store) === 'sqlite') return initDataDir(dir, trustDomain);
  await checkDatabaseClaimable(store!);
  const { p, root, adminToken } = createIssuerFiles(dir, trustDomain);
  await initPostgresStore(store!, p.auditKey, {
    adminTokenHash: sha256Hex(adminToken),
    event: initEvent(trustDomain, root.certDer),
    now: Date.now(),
  });
  return finishInit(dir, trustDomain, root.certDer, adminToken, 'postgres');
}

/** Validate, create the directory, the CA hierarchy and the credential keys; the admin token is drawn, not yet written. */
function createIssuerFiles(dir: string, trustDomain: string) {
  validateTrustDomain(trustDomain);
  const p = paths(dir);
  if (existsSync(p.meta) || existsSync(p.rootCert)) {
    throw new SigilError(
      'already_initialized',
      `${dir} already holds an issuer (found ${existsSync(p.meta) ? p.meta : p.rootCert}); refusing to replace its CA`,
    );
  }
  ensureDir(dir, 0o700);
  // A pre-existing directory others can write is tightened (empty) or refused (it may hold planted files).
  prepareDataDir(dir);
  ensureDir(p.caDir, 0o700);
  const root = createRootCa({ trustDomain });
  const inter = createIntermediateCa(root, { trustDomain });
  // Keys first, certificates after, metadata last: a crash leaves a directory that `init` can be
  // re-run on only after removing it — never a half CA that looks complete.
  writeFileAtomic(p.rootKey, root.key.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  writeFileAtomic(p.intKey, inter.key.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  writeFileAtomic(p.rootCert, toPem('CERTIFICATE', root.certDer), { mode: 0o644 });
  writeFileAtomic(p.intCert, toPem('CERTIFICATE', inter.certDer), { mode: 0o644 });
  ensureCredentialKeys(dir);
  return { p, root, adminToken: randomSecret(32) };
}

function initEvent(trustDomain: string, rootDer: Buffer): AuditEvent {
  return {
    action: 'init',
    outcome: 'ok',
    actor: 'admin',
    details: { trust_domain: trustDomain, ca_pin: spkiPin(rootDer) },
  };
}

/** The admin token, then issuer.json last (it marks the directory complete). */
function finishInit(
  dir: string,
  trustDomain: string,
  rootDer: Buffer,
  adminToken: string,
  store: 'postgres' | undefined,
): InitResult {
  const p = paths(dir);
  writeFileAtomic(p.adminToken, adminToken + '\n', { mode: 0o600 });
  // A new directory has stored no answer before sealing: it accepts no unsealed row (./answer-seal-file.ts).
  writeAnswerSealFile(dir, 0);
  const meta: IssuerMeta = {
    trust_domain: trustDomain,
    created_at: new Date().toISOString(),
    layout_version: LAYOUT_VERSION,
    ...(store ? { store } : {}),
  };
  writeFileAtomic(p.meta, JSON.stringify(meta, null, 2) + '\n', { mode: 0o644 });
  return { pin: spkiPin(rootDer), trustDomain, adminTokenPath: p.adminToken };
}

export function readMeta(dir: string): IssuerMeta {
  const p = paths(dir);
  if (!existsSync(p.meta))
    throw new SigilError(
      'not_initialized',
      `${dir} is not an issuer data directory (a new issuer: sigil server init --data-dir ${dir} --trust-domain <your domain>; one more issuer of a PostgreSQL store: sigil server add-issuer on the first, then copy its --out directory here, docs/issuers.md)`,
    );
  try {
    return JSON.parse(readFileSync(p.meta, 'utf8')) as IssuerMeta;
  } catch (e) {
    throw new SigilError('config_invalid', `${p.meta} is not valid JSON`, { cause: e });
  }
}

/**
 * The certificates of intermediates this directory signed with before (`sigil server
 * rotate-intermediate` keeps each as `ca/intermediate.<name>.pem`), each issued by the root:
 * audit checkpoints they signed still verify (audit/signer.ts, issuers/runtime.ts). Public
 * material only; a file that is not issued by the root is ignored.
 */
export function keptIntermediatePems(dir: string): string[] {
  const caDir = join(dir, 'ca');
  let names: string[];
  try {
    names = readdirSync(caDir);
  } catch {
    return [];
  }
  const root = new X509Certificate(readFileSync(paths(dir).rootCert));
  const out: string[] = [];
  for (const n of names.sort()) {
    if (!/^intermediate\.[a-z0-9-]{1,32}\.pem$/.test(n) || n === 'intermediate.next.pem') continue;
    try {
      const pem = readFileSync(join(caDir, n), 'utf8');
      const cert = new X509Certificate(pem);
      if (cert.checkIssued(root) && cert.verify(root.publicKey)) out.push(pem);
    } catch {
      // unreadable or not a certificate: not a verifier
    }
  }
  return out;
}

export function loadCaMaterial(dir: string): CaMaterial {
  const meta = readMeta(dir);
  assertDataDirSecure(dir);
  const p = paths(dir);
  const rootPem = readFileSync(p.rootCert, 'utf8');
  const intermediatePem = readFileSync(p.intCert, 'utf8');
  const rootDer = fromPem(rootPem, 'CERTIFICATE');
  const intermediateDer = fromPem(intermediatePem, 'CERTIFICATE');
  const intermediateKey: KeyObject = readPrivateKeyFile(p.intKey);
  // The intermediate must really be issued by the root we serve as the bundle.
  if (!new X509Certificate(intermediateDer).checkIssued(new X509Certificate(rootDer))) {
    throw new SigilError('config_invalid', `${p.intCert} is not issued by ${p.rootCert}`);
  }
  // And the key must be that certificate's: else every leaf would carry a chain that fails.
  if (!createPublicKey(intermediateKey).equals(new X509Certificate(intermediateDer).publicKey))
    throw new SigilError(
      'config_invalid',
      `${p.intKey} is not the key of ${p.intCert}${existsSync(join(dir, 'ca', 'intermediate.rotating.json')) ? ': a `sigil server rotate-intermediate` stopped half-way; run it again to finish' : ''}`,
    );
  // Created here on the first start of a directory initialised before these keys existed.
  const { created: credentialKeysCreated, ...credentials } = ensureCredentialKeys(dir);
  return {
    trustDomain: meta.trust_domain,
    rootDer,
    rootPem,
    intermediateDer,
    intermediatePem,
    intermediateKey,
    pin: spkiPin(rootDer),
    credentials: { ...credentials, ...rotatingOf(dir, credentials) },
    credentialKeysCreated,
    keptIntermediatePems: keptIntermediatePems(dir),
  };
}

/**
 * `createAuditKey`: the serving issuer creates the audit key of a data directory initialised
 * before it existed (and records the switch-over); `sigil ctl` only uses one that exists, so a
 * ctl run as another user never leaves a key the issuer cannot read.
 */
export function openIssuerStores(dir: string, opts: { createAuditKey?: boolean; store?: string } = {}): Stores {
  const meta = readMeta(dir);
  assertDataDirSecure(dir);
  // `--store`, else $SIGIL_STORE (so `sigil ctl` finds a PostgreSQL issuer's state too).
  const store = opts.store ?? process.env[STORE_ENV];
  checkStoreMatches(meta.store ?? 'sqlite', store, dir);
  if (meta.store === 'postgres') return openPostgresIssuerStores(store!, readAuditKey(paths(dir).auditKey));
  return openAuditedStores(paths(dir).db, paths(dir).auditKey, opts.createAuditKey ?? false);
}

function openAuditedStores(dbPath: string, keyPath: string, create: boolean): Stores {
  if (!create) {
    const key = readAuditKey(keyPath);
    return openSqliteStores(dbPath, key ? { audit: { key } } : {});
  }
  const db = openSqlite(dbPath);
  try {
    const { key, created } = ensureAuditKey(keyPath, db, Date.now());
    // The first keyed row says so (skipped for a new chain: its first row is keyed already).
    // Written on the connection before the async stores take it over: nothing else uses it yet,
    // and opening stays synchronous.
    if (created && key.fromSeq > 1)
      new SqliteAuditStore(db, { key }).append(
        {
          action: 'audit_key_enabled',
          outcome: 'ok',
          actor: 'system',
          details: { key_id: key.id, from_seq: key.fromSeq },
        },
        Date.now(),
      );
    return asyncSqliteStoresOn(db, dbPath, { audit: { key } });
  } catch (e) {
    if (db.open) db.close();
    throw e;
  }
}

export function readAdminToken(dir: string): string {
  const p = paths(dir).adminToken;
  try {
    return readFileSync(p, 'utf8').trim();
  } catch (e) {
    throw new SigilError(
      'unauthorized',
      `cannot read the admin credential ${p}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}
