/**
 * Which certificates the issuer's CRL lists, re-derived from the store every time (never kept as
 * a separate list that could drift from the locks): the unexpired X.509 certificates — identity
 * SVIDs, MQTT transport certificates, database and Kubernetes client certificates, workload
 * X.509-SVIDs, every generation, not only the current one — of every instance that is locked now.
 *
 * Why every generation: a `generation_mismatch` lock means an older certificate is in someone
 * else's hands (runbook "generation_mismatch"); that older certificate is exactly the one a
 * relying party must refuse.
 *
 * Why certificateHold (RFC 5280 §5.3.1) and not keyCompromise: a lock is reversible — `ctl unlock`
 * takes the instance's certificates off the next CRL, which RFC 5280 allows only for entries on
 * hold. OpenSSL (and so mosquitto, nginx, PostgreSQL) refuses a held certificate like any other
 * revoked one (X509_V_ERR_CERT_REVOKED).
 *
 * A bot lock does not put certificates on the CRL: it stops joins and renewals of a whole fleet,
 * often as a pause, and revoking every live certificate of a fleet is a different decision
 * (docs/crl.md). Lock the instances to revoke them.
 *
 * Continuous attestation (issue #16): instances whose last attestation failed are a second
 * {@link RevocationSource} (under on_attestation_failure: refuse, the instance is not locked, but
 * its boot no longer matches: relying parties must stop trusting its certificates until a quote
 * matches again, which takes them off the next CRL). A failure that locked is listed as a lock,
 * so `ctl unlock` alone lifts it. The publisher takes the union.
 */
import { RECORD_KIND } from '../credentials/issue-credential.js';
import { WORKLOAD_JWT_KIND } from '../ops/workload.js';
import type { InstanceRecord, TxStores } from '../store/types.js';

/** RFC 5280 §5.3.1 CRLReason. */
export const CRL_REASON_CERTIFICATE_HOLD = 6;

/**
 * Certificate kinds that are NOT X.509 (SSH certificates, JWT-SVIDs): the only records a CRL
 * leaves out. Listed this way round so that a kind added later — as workload X.509-SVIDs once
 * were, and were missed by a list of the X.509 kinds (review of issue #16) — is on the CRL of a
 * locked instance until someone decides otherwise: a serial listed needlessly matches nothing.
 */
export const NON_X509_CERT_KINDS: ReadonlySet<string> = new Set([
  RECORD_KIND.ssh_user,
  RECORD_KIND.ssh_host,
  RECORD_KIND.jwt,
  WORKLOAD_JWT_KIND,
]);

export interface RevokedEntry {
  /** Lowercase hex, no separators (as the certificates table holds it). */
  serial: string;
  /** When the instance was locked, as far as the store knows (its last update while locked). */
  revokedAt: number;
  reason: number;
  instanceId: string;
  /** Why, for `ctl ca crl --format json` and the audit; not in the CRL itself. */
  cause: string;
}

/** One reason an instance's certificates are revoked; the CRL lists the union over sources. */
export interface RevocationSource {
  name: string;
  /** The instances this source revokes now, with why. */
  instances(stores: Pick<TxStores, 'instances'>): Promise<Array<{ inst: InstanceRecord; cause: string }>>;
}

export const LOCKED_INSTANCES: RevocationSource = {
  name: 'locked',
  async instances(stores) {
    return (await stores.instances.list())
      .filter((i) => i.locked)
      .map((inst) => ({ inst, cause: `locked: ${inst.lockReason ?? 'by an administrator'}` }));
  },
};

/** Instances whose latest attestation failed and did not lock them (facts.attestation, server/ops/attestation.ts). */
export const ATTESTATION_FAILED_INSTANCES: RevocationSource = {
  name: 'attestation_failed',
  async instances(stores) {
    return (await stores.instances.list()).flatMap((inst) => {
      const a = inst.facts['attestation'] as { ok?: unknown; locked?: unknown; check?: unknown } | undefined;
      if (typeof a !== 'object' || a === null || a.ok !== false || a.locked === true) return [];
      return [{ inst, cause: `attestation failed: ${typeof a.check === 'string' ? a.check : 'unknown check'}` }];
    });
  },
};

export const REVOCATION_SOURCES: readonly RevocationSource[] = [LOCKED_INSTANCES, ATTESTATION_FAILED_INSTANCES];

/** The entries of a CRL made at `now`, sorted by serial (the same state gives the same list). */
export async function revokedCertificates(
  stores: Pick<TxStores, 'instances' | 'certificates'>,
  now: number,
  sources: readonly RevocationSource[] = REVOCATION_SOURCES,
): Promise<RevokedEntry[]> {
  const bySerial = new Map<string, RevokedEntry>();
  for (const source of sources) {
    for (const { inst, cause } of await source.instances(stores)) {
      for (const c of await stores.certificates.listByInstance(inst.id)) {
        // An expired certificate is refused by its dates already; RFC 5280 §3.3 lets it leave the CRL.
        if (c.notAfter <= now || NON_X509_CERT_KINDS.has(c.kind) || bySerial.has(c.serial)) continue;
        bySerial.set(c.serial, {
          serial: c.serial,
          revokedAt: Math.min(inst.updatedAt, now),
          reason: CRL_REASON_CERTIFICATE_HOLD,
          instanceId: inst.id,
          cause,
        });
      }
    }
  }
  return [...bySerial.values()].sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0));
}
