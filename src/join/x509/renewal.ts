/**
 * The x509 join's renewal re-check (`checkRenewal`, join/types.ts; issue #16): a device
 * certificate revoked after enrolment must stop the machine's renewals, not only its next join.
 *
 * At join the validated path (device certificate, intermediates, trust anchor: DER, base64) is
 * recorded in the instance's facts as `x509_path` with the rule that accepted it (`x509_rule`).
 * At every renewal that path is checked again against the CRLs the rule names *now*
 * (`crl_files`, re-read when the files change: join/trust-files.ts) with the join's own
 * revocation check (join/x509-crl.ts): a revoked device certificate (or intermediate) refuses the
 * renewal `x509_revoked`; a stale or missing CRL for the device's issuer fails closed,
 * `x509_crl_unavailable` (retryable: publish a fresh CRL), exactly as a join would.
 *
 * Only revocation is re-checked. The path's dates, the allow list and the registration were
 * decided at join and are decided again at the next join; a rule without `crl_files` has nothing
 * to re-check. Not re-checked either (nothing to check against): an instance joined before its
 * facts carried `x509_path`, until it joins again, and an instance whose rule was deleted — its
 * renewals continue, as before this check; lock it (`sigil ctl lock`) to stop them.
 */
import { SigilError } from '../../errors.js';
import type { JoinRenewPort } from '../port.js';
import { readCrlFile, type TrustFileCache } from '../trust-files.js';
import { parseCert, type ParsedCert } from '../x509-cert.js';
import { checkRevocation, X509_REVOCATION } from '../x509-crl.js';
import type { X509Rule } from './rule.js';

/** The fact holding the validated path at join. */
export const PATH_FACT = 'x509_path';

/** The validated path as recorded in the facts (leaf first, anchor last). */
export function pathFact(certs: readonly ParsedCert[]): string[] {
  return certs.map((c) => c.der.toString('base64'));
}

export async function checkX509Renewal(
  facts: Record<string, unknown>,
  port: JoinRenewPort,
  files: TrustFileCache,
): Promise<void> {
  const recorded = facts[PATH_FACT];
  const ruleName = facts['x509_rule'];
  if (!Array.isArray(recorded) || typeof ruleName !== 'string') return;
  const rule = (await port.rules<X509Rule>()).find((r) => r.name === ruleName);
  const crlFiles = rule?.config.crl_files ?? [];
  if (crlFiles.length === 0) return;
  // Facts are the issuer's own records (written at join from a validated path), not input.
  const path = recorded.map((b64, i) => {
    if (typeof b64 !== 'string') throw new SigilError('internal', `instance fact ${PATH_FACT}[${i}] is not base64`);
    return parseCert(
      Buffer.from(b64, 'base64'),
      i === 0 ? 'device certificate' : `chain certificate ${i + 1}`,
      'internal',
    );
  });
  await checkRevocation(
    path,
    crlFiles.flatMap((f) => readCrlFile(files, f)),
    new Date(port.now),
    { ...X509_REVOCATION, rule: ruleName, describe: (c) => `${X509_REVOCATION.describe(c)} (re-checked at renewal)` },
  );
}
