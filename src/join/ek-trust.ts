/**
 * A join rule's EK trust (ek_ca_files, ek_crl_files, allow), shared by the tpm join and by x509
 * rules with `require_tpm` (same options, same semantics): this port reads the rule's files
 * (x509/files.ts, cached by path/mtime/size) and revokes with the x509 join's CRL code
 * (x509/crl.ts); the checks themselves, and their order and codes, are attest/ek.ts.
 *
 *   ek_revoked       the rule has ek_crl_files and the current CRL of the CA that issued the
 *                    EK certificate lists its serial (RFC 5280 §5); `ek_crl_unavailable`
 *                    (retryable, fail closed) when no current, correctly signed, usable CRL of
 *                    that CA is in ek_crl_files
 */
import {
  checkEkTrust,
  readEk as readAttestedEk,
  selectEkPolicy,
  type Ek as AttestedEk,
  type EkEvidence,
  type EkMemo,
  type EkTrustPolicy,
} from '../attest/ek.js';
import { formatName } from '../pki/name-reader.js';
import type { JoinRule } from './port.js';
import { parseCert, type ParsedCert } from './x509-cert.js';
import { checkRevocation, type RevocationScope } from './x509-crl.js';
import { readCaFile, readCrlFile, type TrustFileCache } from './trust-files.js';

export type Ek = AttestedEk<ParsedCert>;

/** The EK part of a tpm rule, or of an x509 rule's require_tpm. */
export interface EkRuleConfig {
  ek_ca_files?: string[] | undefined;
  ek_crl_files?: string[] | undefined;
  allow?: Array<{ ek_public_hash: string }> | undefined;
}

/** One issuer's caches for EK checks: parsed CA/CRL files, parsed EKs and validated chains. */
export interface EkTrustCaches {
  trustFiles?: TrustFileCache | undefined;
  memo?: EkMemo | undefined;
}

const parseEkCert = (der: Buffer): ParsedCert => parseCert(der, 'EK certificate', 'tpm_evidence_malformed');

/** Parse the EK evidence and check it is a storage EK matching its certificate (`ek_invalid`). */
export function readEk(ev: EkEvidence, memo?: EkMemo): Ek {
  return memo ? memo.ek(ev, () => readAttestedEk(ev, parseEkCert)) : readAttestedEk(ev, parseEkCert);
}

/** The x509 join's CRL check with the tpm join's codes, naming the EK certificate and the rule. */
function ekRevocation(rule: string): RevocationScope {
  return {
    revoked: 'ek_revoked',
    unavailable: 'ek_crl_unavailable',
    option: 'ek_crl_files',
    rule,
    describe: (c) => `the EK certificate (issuer "${formatName(c.issuer)}")`,
  };
}

function ekPolicy(
  rule: JoinRule<EkRuleConfig>,
  files: TrustFileCache | undefined,
): EkTrustPolicy<ParsedCert, ParsedCert> {
  const cfg = rule.config;
  const caFiles = cfg.ek_ca_files;
  const crlFiles = cfg.ek_crl_files;
  return {
    rule: rule.name,
    ...(caFiles !== undefined ? { anchors: () => caFiles.flatMap((f) => readCaFile(files, f)) } : {}),
    // The path is the EK certificate and its anchor: the anchor's CRL must cover it.
    ...(caFiles !== undefined && crlFiles !== undefined
      ? {
          revocation: (cert: ParsedCert, anchor: ParsedCert, at: Date) =>
            checkRevocation(
              [cert, anchor],
              crlFiles.flatMap((f) => readCrlFile(files, f)),
              at,
              ekRevocation(rule.name),
            ),
        }
      : {}),
    ...(cfg.allow !== undefined ? { allow: cfg.allow.map((a) => a.ek_public_hash) } : {}),
  };
}

/** Throws the rule's refusal for `ek`, or resolves when the rule trusts it. */
export function checkEkForRule(
  ek: Ek,
  rule: JoinRule<EkRuleConfig>,
  at: Date,
  caches: EkTrustCaches = {},
): Promise<void> {
  return checkEkTrust(ek, ekPolicy(rule, caches.trustFiles), at, caches.memo);
}

/** The first rule (in the given order: name order) that trusts `ek`; else the refusal of the rule that got furthest. */
export async function selectRule<R extends JoinRule<EkRuleConfig>>(
  rules: readonly R[],
  ek: Ek,
  at: Date,
  caches: EkTrustCaches = {},
): Promise<R> {
  const policies = rules.map((rule) => ({ ...ekPolicy(rule, caches.trustFiles), of: rule }));
  return (await selectEkPolicy<ParsedCert, ParsedCert, (typeof policies)[number]>(policies, ek, at, caches.memo)).of;
}
