/** `sigil server issuers`: the registry as this data directory's issuer judges it (./verify.ts). */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fromPem } from '../../pki/pem.js';
import { openIssuerStores, paths, readMeta } from '../data-dir.js';
import type { IssuerStatus } from '../store/issuer-registry-types.js';
import { verifyIntermediate } from './verify.js';

export interface IssuerListing {
  name: string;
  status: IssuerStatus;
  /** 'ok', or why this issuer ignores the row. */
  verified: string;
  serial: string | null;
  not_after: string | null;
  /** The intermediate of the data directory asked. */
  own: boolean;
  reason: string | null;
  updated_at: string;
}

export async function listIssuers(dataDir: string, store?: string): Promise<IssuerListing[]> {
  const meta = readMeta(dataDir);
  const p = paths(dataDir);
  const root = new X509Certificate(fromPem(readFileSync(p.rootCert, 'utf8'), 'CERTIFICATE'));
  const own = fromPem(readFileSync(p.intCert, 'utf8'), 'CERTIFICATE');
  const stores = openIssuerStores(dataDir, store !== undefined ? { store } : {});
  try {
    const now = Date.now();
    return (await stores.issuers.list()).map((r) => {
      const v = verifyIntermediate(r.certPem, root, meta.trust_domain, now);
      return {
        name: r.name,
        status: r.status,
        verified: v.ok ? 'ok' : v.reason,
        serial: v.ok ? v.value.serial : null,
        not_after: v.ok ? new Date(v.value.notAfter).toISOString() : null,
        own: v.ok && v.value.ca.certDer.equals(own),
        reason: r.reason,
        updated_at: new Date(r.updatedAt).toISOString(),
      };
    });
  } finally {
    await stores.close();
  }
}
