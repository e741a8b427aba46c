/**
 * `sigil server retire-issuer --name <n> [--revoke]` (issue #15; docs/issuers.md).
 *
 *   retire    the issuer stops serving (it stops itself within seconds: ./runtime.ts; a retired
 *             issuer refuses to start), and its leaves keep renewing at the other issuers until
 *             they expire: its intermediate stays live for them (and in the bundle)
 *   --revoke  compromise: every issuer refuses its leaves at renewal (`issuer_revoked`, before any
 *             other check), the bundle drops its intermediate, and — where the root key is — the
 *             root signs a CRL listing it (./root-crl.ts), written to DATA_DIR/crl/root.crl
 *
 * Both are audited (`issuer_retired`, `issuer_revoked`). A status only moves forward; running the
 * same command again changes nothing (and, with --revoke where the root key is, signs the root
 * CRL again: that is how it is made after a revocation recorded on another host).
 */
import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { SigilError } from '../../errors.js';
import { fromPem } from '../../pki/pem.js';
import { ensureDir, writeFileAtomic } from '../../util/atomic-file.js';
import { crlFiles } from '../crl/state.js';
import { openIssuerStores, paths, readMeta } from '../data-dir.js';
import { readPrivateKeyFile } from '../key-file.js';
import type { IssuerRecord } from '../store/issuer-registry-types.js';
import { checkIssuerName } from './names.js';
import { rootCrlFile } from './root-crl-file.js';
import { signRootCrl, type RootCrl } from './root-crl.js';

export interface RetireResult {
  issuer: IssuerRecord;
  /** False when it already had this (or a later) status. */
  changed: boolean;
  /** Where the root CRL was written (--revoke, root key present). */
  rootCrlFile?: string;
  rootCrl?: Pick<RootCrl, 'crlNumber' | 'listed' | 'nextUpdate'>;
}

export async function retireIssuer(o: {
  dataDir: string;
  name: string;
  revoke: boolean;
  reason?: string;
  store?: string;
  now?: number;
  /** The root key, where it is kept offline (default: DATA_DIR/ca/root.key). */
  rootKey?: string;
}): Promise<RetireResult> {
  const now = o.now ?? Date.now();
  const name = checkIssuerName(o.name);
  const meta = readMeta(o.dataDir);
  const stores = openIssuerStores(o.dataDir, o.store !== undefined ? { store: o.store } : {});
  try {
    const before = await stores.issuers.get(name);
    if (!before) throw new SigilError('not_found', `no issuer named "${name}" is registered (sigil server issuers)`);
    const status = o.revoke ? 'revoked' : 'retired';
    const after = (await stores.issuers.setStatus(name, status, o.reason ?? null, now))!;
    const changed = after.status !== before.status;
    if (changed)
      await stores.audit.append(
        {
          action: o.revoke ? 'issuer_revoked' : 'issuer_retired',
          outcome: 'ok',
          actor: 'admin',
          details: { issuer: name, previous: before.status, ...(o.reason ? { reason: o.reason } : {}) },
        },
        now,
      );
    const result: RetireResult = { issuer: after, changed };
    const p = paths(o.dataDir);
    const rootKey = o.rootKey ?? p.rootKey;
    if (o.rootKey !== undefined && !existsSync(o.rootKey))
      throw new SigilError('config_invalid', `${o.rootKey} is missing: --root-key names the root key file`);
    if (o.revoke && existsSync(rootKey)) {
      const crl = await signRootCrl(
        stores,
        {
          certDer: fromPem(readFileSync(p.rootCert, 'utf8'), 'CERTIFICATE'),
          key: rootKeyOf(rootKey, p.rootCert),
          trustDomain: meta.trust_domain,
        },
        { now },
      );
      ensureDir(crlFiles(o.dataDir).dir, 0o700);
      // Where every issuer looks for it (./root-crl-file.ts): copy it to the others' crl/ too.
      const file = rootCrlFile(o.dataDir);
      writeFileAtomic(file, crl.der, { mode: 0o644 });
      result.rootCrlFile = file;
      result.rootCrl = { crlNumber: crl.crlNumber, listed: crl.listed, nextUpdate: crl.nextUpdate };
    }
    return result;
  } finally {
    await stores.close();
  }
}

/** The root key, checked to be the key of ca/root.pem (a wrong file must not sign a root CRL). */
function rootKeyOf(file: string, rootCert: string): KeyObject {
  const key = readPrivateKeyFile(file);
  if (!createPublicKey(key).equals(new X509Certificate(readFileSync(rootCert)).publicKey))
    throw new SigilError('config_invalid', `${file} is not the key of ${rootCert}`);
  return key;
}
