/**
 * The root's CRL of revoked intermediates (`sigil server retire-issuer --revoke`, docs/issuers.md).
 * Relying parties that check the whole chain (OpenSSL's CRL_CHECK_ALL: nginx `ssl_crl`,
 * PostgreSQL `ssl_crl_file`) need a CRL from the root anyway (docs/crl.md); this one lists the
 * revoked intermediates, reason cACompromise for a revocation (RFC 5280 §5.3.1: the intermediate's
 * key is no longer trusted), so such a party refuses every leaf issued under them at once.
 *
 * Signed with the root key, so it is made where the root key is; its cRLNumber comes from the
 * store's counter for the root (crl/state.ts takeCrlNumber), so two operators signing one never
 * repeat a number.
 */
import { X509Certificate, type KeyObject } from 'node:crypto';
import { signCrl } from '../crl/build.js';
import { takeCrlNumber } from '../crl/state.js';
import type { RevokedEntry } from '../crl/revoked.js';
import type { Stores } from '../store/types.js';
import { verifyIntermediate } from './verify.js';

/** RFC 5280 §5.3.1 CRLReason cACompromise. */
export const CRL_REASON_CA_COMPROMISE = 2;
/** How long relying parties may use the root CRL: it is made by hand, where the root key is. */
export const ROOT_CRL_DAYS = 365;

export interface RootCrl {
  der: Buffer;
  crlNumber: bigint;
  /** The revoked intermediates listed, by registry name. */
  listed: Array<{ name: string; serial: string }>;
  nextUpdate: number;
}

export async function signRootCrl(
  stores: Stores,
  root: { certDer: Buffer; key: KeyObject; trustDomain: string },
  o: { now: number; days?: number },
): Promise<RootCrl> {
  const rootCert = new X509Certificate(root.certDer);
  const entries: RevokedEntry[] = [];
  const listed: RootCrl['listed'] = [];
  for (const row of await stores.issuers.list()) {
    if (row.status !== 'revoked') continue;
    // Only what this root really signed (a row a database writer made up is not this root's to list).
    const v = verifyIntermediate(row.certPem, rootCert, root.trustDomain, o.now);
    if (!v.ok && !/not valid now/.test(v.reason)) continue;
    const serial = v.ok ? v.value.serial : new X509Certificate(row.certPem).serialNumber.toLowerCase();
    entries.push({
      serial,
      revokedAt: row.updatedAt,
      reason: CRL_REASON_CA_COMPROMISE,
      instanceId: row.name,
      cause: row.reason ?? 'revoked',
    });
    listed.push({ name: row.name, serial });
  }
  const nextUpdate = o.now + (o.days ?? ROOT_CRL_DAYS) * 86_400_000;
  const crlNumber = await takeCrlNumber(stores, root.certDer, BigInt(o.now));
  const der = await signCrl({ certDer: root.certDer, key: root.key }, { entries, now: o.now, nextUpdate, crlNumber });
  return { der, crlNumber, listed, nextUpdate };
}
