/**
 * `sigil server rotate-intermediate --data-dir D [--root-key FILE] [--revoke-old]`: give an issuer
 * a NEW intermediate CA in place (docs/runbook.md "After a compromise", docs/issuers.md).
 *
 * Why: the intermediate key signs every X.509-SVID. A stolen issuer host (or a backup of `ca/`)
 * hands it to the thief, who can then mint SVIDs for any SPIFFE ID of the trust domain that every
 * relying party accepts — they trust the root. `rotate-key` replaces the SSH and JWT keys; before
 * this, the intermediate could only be replaced by a new issuer on a shared PostgreSQL store
 * (`add-issuer`, `retire-issuer --revoke`), so a single SQLite issuer had no way out short of a
 * new root (a new `ca_pin` on every agent).
 *
 * It uses the issuer registry that `add-issuer` built (./registry.ts, on SQLite too): the old
 * intermediate is registered under its name if it is not yet, the new one under a new name (its
 * CN must differ: a leaf's issuer Name finds its CA), and then the old one is
 *
 *   retired (default)  its leaves keep renewing here until they expire — each renewal moves an
 *                      agent onto the new intermediate, within half its lifetime
 *   revoked (--revoke-old, compromise)  its leaves are refused at renewal (`issuer_revoked`;
 *                      agents join again: TPM, cloud, x509 and OIDC agents re-attest by
 *                      themselves, token agents need a new token), it leaves the bundle, and the
 *                      root signs a CRL listing it (crl/root.crl: give it to whole-chain relying
 *                      parties). A thief's leaves were refused at renewal already (no certificate
 *                      record), but a relying party only learns to refuse them from that CRL.
 *
 * Order, so that a crash at any step leaves an issuer that starts or a run that finishes it: the
 * new key and certificate as `ca/intermediate.next.{key,pem}` → the new registry row (a run that
 * finds that pair registered takes it up) → the old certificate kept as
 * `ca/intermediate.<old name>.pem` and `ca/intermediate.rotating.json` naming both → the key,
 * then the certificate renamed into place (between the two the issuer refuses to start: key and
 * certificate differ; the next run finishes from the progress file) → issuer.json's
 * `issuer_name` → the old row retired or revoked (a running issuer with the old intermediate
 * stops itself within ~5 s on that: ./runtime.ts; restart it) → audit → the progress file
 * removed. The kept certificate is public (audit checkpoints the old key signed
 * verify with it); the old key is gone with the rename.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { SigilError } from '../../errors.js';
import { createIntermediateCa, DEFAULT_INTERMEDIATE_TTL_DAYS } from '../../pki/ca.js';
import { fromPem, toPem } from '../../pki/pem.js';
import { ensureDir, fsyncDir, writeFileAtomic } from '../../util/atomic-file.js';
import { crlFiles } from '../crl/state.js';
import { openIssuerStores, paths, readMeta } from '../data-dir.js';
import { readPrivateKeyFile } from '../key-file.js';
import type { IssuerRecord } from '../store/issuer-registry-types.js';
import type { Stores } from '../store/types.js';
import { safeDer, type IssuerMetaWithName } from './add-issuer.js';
import { checkIssuerName, FIRST_ISSUER_NAME, intermediateCommonName, ISSUER_NAME_RE } from './names.js';
import { rootCrlFile } from './root-crl-file.js';
import { signRootCrl } from './root-crl.js';
import { verifyIntermediate } from './verify.js';
import { withRotationLock } from '../rotate-key.js';

export interface RotateIntermediateResult {
  /** The registry name the old intermediate has (registered now if it was not). */
  old: { name: string; serial: string; status: 'retired' | 'revoked'; keptAs: string };
  new: { name: string; serial: string; notAfter: string };
  /** Written with --revoke-old. */
  rootCrlFile?: string;
  /** The intermediates that root CRL lists, by registry name: every revoked row, not only the old one (docs/issuers.md "Limits"). */
  rootCrlListed?: string[];
}

/** Bounds of `--validity-days`: longer than any leaf (≤ 24 h), at most the 5-year default. */
export const INTERMEDIATE_VALIDITY_DAYS = { min: 2, max: DEFAULT_INTERMEDIATE_TTL_DAYS } as const;

export async function rotateIntermediate(o: {
  dataDir: string;
  /** The root key (default: DATA_DIR/ca/root.key). */
  rootKey?: string;
  /** The new intermediate's registry name (default: the old one with -2, -3, … appended). */
  name?: string;
  revokeOld: boolean;
  reason?: string;
  store?: string;
  /**
   * The new intermediate's lifetime in days (INTERMEDIATE_VALIDITY_DAYS; default 5 years, never
   * beyond the root's). Short-lived intermediates bound how long a stolen intermediate key mints
   * SVIDs that relying parties which do not check CRLs accept (docs/issuers.md "Limits").
   */
  validityDays?: number;
  now?: number;
  /** Tests: stop (throw) right after this step, as a crash would. */
  crashAfter?: 'register' | 'key_rename';
}): Promise<RotateIntermediateResult> {
  // One at a time per data directory, and never beside a rotate-key (both change ca/): two runs
  // at once each swapped in their own pair and wedged the directory (review).
  const v = o.validityDays;
  if (
    v !== undefined &&
    (!Number.isInteger(v) || v < INTERMEDIATE_VALIDITY_DAYS.min || v > INTERMEDIATE_VALIDITY_DAYS.max)
  )
    throw new SigilError(
      'config_invalid',
      `--validity-days must be a whole number of days from ${INTERMEDIATE_VALIDITY_DAYS.min} to ${INTERMEDIATE_VALIDITY_DAYS.max}, got ${v}`,
    );
  return withRotationLock(path.join(o.dataDir, 'ca'), () => rotateLocked(o));
}

async function rotateLocked(o: Parameters<typeof rotateIntermediate>[0]): Promise<RotateIntermediateResult> {
  const now = o.now ?? Date.now();
  const p = paths(o.dataDir);
  const meta = readMeta(o.dataDir) as IssuerMetaWithName;
  const rootKeyPath = o.rootKey ?? p.rootKey;
  if (!existsSync(rootKeyPath))
    throw new SigilError(
      'config_invalid',
      `${rootKeyPath} is missing: the new intermediate is signed by the root key; give --root-key FILE where it is (docs/runbook.md "Move the root key offline")`,
    );
  const rootDer = fromPem(readFileSync(p.rootCert, 'utf8'), 'CERTIFICATE');
  const rootCert = new X509Certificate(rootDer);
  const rootKey = readPrivateKeyFile(rootKeyPath);
  if (!createPublicKey(rootKey).equals(rootCert.publicKey))
    throw new SigilError('config_invalid', `${rootKeyPath} is not the key of ${p.rootCert}`);
  const caDir = path.dirname(p.intCert);
  const next = { cert: path.join(caDir, 'intermediate.next.pem'), key: path.join(caDir, 'intermediate.next.key') };
  const progressFile = path.join(caDir, 'intermediate.rotating.json');
  const stores = openIssuerStores(o.dataDir, o.store !== undefined ? { store: o.store } : {});
  try {
    // A run that stopped after the renames began finishes them (its progress file names both).
    let prog = readProgress(progressFile);
    if (!prog) {
      const rows = await stores.issuers.list();
      const currentPem = readFileSync(p.intCert, 'utf8');
      verified(currentPem, rootCert, meta.trust_domain, now, p.intCert);
      const from = await registerCurrent(stores, rows, currentPem, meta, now);
      let to = existsSync(next.cert) && existsSync(next.key) ? pendingNext(next, rows) : undefined;
      if (!to) {
        rmSync(next.cert, { force: true });
        rmSync(next.key, { force: true });
        to = o.name !== undefined ? checkIssuerName(o.name) : nextName(from, rows);
        // Its certificate is kept as ca/intermediate.<name>.pem at the next rotation: not a name
        // of the files the rotation itself uses.
        if (to === 'next' || to === 'rotating')
          throw new SigilError(
            'config_invalid',
            `--name ${to} is reserved (ca/intermediate.${to}.* are the rotation's own files)`,
          );
        if (rows.some((r) => r.name === to))
          throw new SigilError('already_initialized', `an issuer named "${to}" is already registered`);
        const inter = createIntermediateCa(
          { certDer: rootDer, key: rootKey },
          {
            trustDomain: meta.trust_domain,
            commonName: intermediateCommonName(meta.trust_domain, to),
            ...(o.validityDays !== undefined ? { ttlDays: o.validityDays } : {}),
          },
        );
        const pem = toPem('CERTIFICATE', inter.certDer);
        verified(pem, rootCert, meta.trust_domain, now, 'the new intermediate');
        // The key first (0600), then its certificate: a `.next` pair is complete once the pem is there.
        writeFileAtomic(next.key, inter.key.export({ type: 'pkcs8', format: 'pem' }) as string, {
          mode: 0o600,
        });
        writeFileAtomic(next.cert, pem, { mode: 0o644 });
        if ((await stores.issuers.register({ name: to, certPem: pem, createdAt: now })) !== 'created')
          throw new SigilError('already_initialized', `an issuer named "${to}" was registered meanwhile`);
        if (o.crashAfter === 'register') throw new Error('crash after register (test)');
      }
      // The old certificate (public) kept beside the new one; then the progress, then the swap.
      writeFileAtomic(keptPath(caDir, from), currentPem, { mode: 0o644 });
      prog = { from, to };
      writeFileAtomic(progressFile, JSON.stringify(prog) + '\n', { mode: 0o644 });
    }
    if (existsSync(next.key)) renameSync(next.key, p.intKey);
    if (o.crashAfter === 'key_rename') throw new Error('crash after the key rename (test)');
    if (existsSync(next.cert)) renameSync(next.cert, p.intCert);
    fsyncDir(caDir);
    const newPem = readFileSync(p.intCert, 'utf8');
    const fresh = verified(newPem, rootCert, meta.trust_domain, now, p.intCert);
    if (!createPublicKey(readPrivateKeyFile(p.intKey)).equals(fresh.ca.publicKey))
      throw new SigilError('config_invalid', `${p.intKey} is not the key of ${p.intCert}; restore both from a backup`);
    const newRow = await stores.issuers.get(prog.to);
    if (!newRow || !safeDer(newRow.certPem)?.equals(fresh.ca.certDer))
      throw new SigilError('config_invalid', `${p.intCert} is not the intermediate registered as "${prog.to}"`);
    writeFileAtomic(p.meta, JSON.stringify({ ...meta, issuer_name: prog.to }, null, 2) + '\n', {
      mode: 0o644,
    });
    const old = verified(readFileSync(keptPath(caDir, prog.from), 'utf8'), rootCert, meta.trust_domain, now, prog.from);
    const status = o.revokeOld ? 'revoked' : 'retired';
    const before = await stores.issuers.get(prog.from);
    const after = await stores.issuers.setStatus(prog.from, status, o.reason ?? null, now);
    if (before?.status !== after?.status)
      await stores.audit.append(
        {
          action: o.revokeOld ? 'issuer_revoked' : 'issuer_retired',
          outcome: 'ok',
          actor: 'admin',
          details: { issuer: prog.from, previous: before?.status ?? null, ...(o.reason ? { reason: o.reason } : {}) },
        },
        now,
      );
    await stores.audit.append(
      {
        action: 'intermediate_rotated',
        outcome: 'ok',
        actor: 'admin',
        details: {
          from: prog.from,
          from_serial: old.serial,
          to: prog.to,
          to_serial: fresh.serial,
          old: after?.status ?? status,
        },
      },
      now,
    );
    const result: RotateIntermediateResult = {
      old: {
        name: prog.from,
        serial: old.serial,
        status: after?.status === 'revoked' ? 'revoked' : 'retired',
        keptAs: keptPath(caDir, prog.from),
      },
      new: {
        name: prog.to,
        serial: fresh.serial,
        notAfter: new Date(new X509Certificate(fresh.ca.certDer).validTo).toISOString(),
      },
    };
    if (o.revokeOld) {
      const crl = await signRootCrl(
        stores,
        { certDer: rootDer, key: rootKey, trustDomain: meta.trust_domain },
        { now },
      );
      ensureDir(crlFiles(o.dataDir).dir, 0o700);
      const file = rootCrlFile(o.dataDir);
      writeFileAtomic(file, crl.der, { mode: 0o644 });
      result.rootCrlFile = file;
      result.rootCrlListed = crl.listed.map((l) => l.name);
    }
    rmSync(progressFile, { force: true });
    return result;
  } finally {
    await stores.close();
  }
}

const keptPath = (caDir: string, name: string): string => path.join(caDir, `intermediate.${name}.pem`);

function readProgress(file: string): { from: string; to: string } | undefined {
  if (!existsSync(file)) return undefined;
  let v: { from?: unknown; to?: unknown } | null;
  try {
    v = JSON.parse(readFileSync(file, 'utf8')) as { from?: unknown; to?: unknown } | null;
  } catch {
    v = null;
  }
  if (
    v === null ||
    typeof v.from !== 'string' ||
    typeof v.to !== 'string' ||
    !ISSUER_NAME_RE.test(v.from) ||
    !ISSUER_NAME_RE.test(v.to)
  )
    throw new SigilError(
      'config_invalid',
      `${file} is not a rotation in progress; remove it if no rotation was started`,
    );
  return { from: v.from, to: v.to };
}

/** A `.next` pair from a run that stopped after registering it: its name, if the registry holds exactly it. */
function pendingNext(next: { cert: string; key: string }, rows: readonly IssuerRecord[]): string | undefined {
  const der = fromPem(readFileSync(next.cert, 'utf8'), 'CERTIFICATE');
  const cert = new X509Certificate(der);
  if (!createPublicKey(readPrivateKeyFile(next.key)).equals(cert.publicKey)) return undefined;
  const row = rows.find((r) => r.status === 'active' && safeDer(r.certPem)?.equals(der));
  return row?.name;
}

/** The registry name of the current intermediate, registering it (as add-issuer does) when no row holds it. */
async function registerCurrent(
  stores: Stores,
  rows: readonly IssuerRecord[],
  pem: string,
  meta: IssuerMetaWithName,
  now: number,
): Promise<string> {
  const der = fromPem(pem, 'CERTIFICATE');
  const row = rows.find((r) => safeDer(r.certPem)?.equals(der));
  if (row) {
    if (row.status === 'revoked')
      throw new SigilError(
        'issuer_revoked',
        `this issuer's intermediate ("${row.name}") is revoked already; its rotation was finished — look at: sigil server issuers --data-dir <dir>`,
      );
    return row.name;
  }
  const name = meta.issuer_name ?? FIRST_ISSUER_NAME;
  if ((await stores.issuers.register({ name, certPem: pem.trim() + '\n', createdAt: now })) !== 'created')
    throw new SigilError(
      'config_invalid',
      `the name "${name}" is registered for another intermediate; set "issuer_name" in issuer.json`,
    );
  await stores.audit.append(
    { action: 'issuer_added', outcome: 'ok', actor: 'admin', details: { issuer: name, first: true } },
    now,
  );
  return name;
}

/** `<base>-2`, `-3`, …: the first not registered (base: the old name without a trailing -N, cut to fit 32). */
export function nextName(old: string, rows: ReadonlyArray<{ name: string }>): string {
  const base = old.replace(/-\d+$/, '') || 'issuer';
  for (let n = 2; ; n++) {
    const suffix = `-${n}`;
    const name = base.slice(0, 32 - suffix.length) + suffix;
    if (ISSUER_NAME_RE.test(name) && !rows.some((r) => r.name === name)) return name;
  }
}

function verified(pem: string, root: X509Certificate, trustDomain: string, now: number, what: string) {
  const v = verifyIntermediate(pem, root, trustDomain, now);
  if (!v.ok) throw new SigilError('config_invalid', `${what} does not verify against the root: ${v.reason}`);
  return v.value;
}
