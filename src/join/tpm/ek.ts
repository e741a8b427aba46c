/**
 * Is this a genuine TPM the join rule trusts? The endorsement key, checked in this order, each
 * failure with its own code:
 *
 *   ek_invalid       the EK public area is not a storage EK (restricted decryption key,
 *                    fixedTPM, fixedParent, sensitiveDataOrigin, AES-CFB, SHA-256+ name), or
 *                    the EK certificate certifies another key
 *   ek_cert_missing  the rule has ek_ca_files but the TPM sent no EK certificate
 *   ek_untrusted     the EK certificate does not chain to the rule's ek_ca_files
 *                    (pki/chain.ts verifyChain: signatures, validity, CA flags, no unknown
 *                    critical extension), or its extendedKeyUsage lacks tcg-kp-EKCertificate
 *   ek_revoked       the rule has ek_crl_files and the current CRL of the CA that issued the
 *                    EK certificate lists its serial (RFC 5280 §5; x509/crl.ts, the x509
 *                    join's CRL code); `ek_crl_unavailable` (retryable, fail closed) when no
 *                    current, correctly signed, usable CRL of that CA is in ek_crl_files
 *   ek_not_allowed   the rule has an allow list and the EK's hash is not on it
 *
 * EK certificates follow the TCG EK Credential Profile, not the web PKI, and Sigil accepts
 * what that profile (and swtpm_localca) puts in them: an empty or placeholder subject
 * ("CN=unknown"), a *critical* subjectAltName holding a directoryName with the TPM
 * manufacturer/model/version attributes (2.23.133.2.1-3: not a name Sigil matches on, so being
 * critical changes nothing), keyUsage keyEncipherment (RSA) or keyAgreement (ECC) and no
 * digitalSignature (an EK never signs), Subject Directory Attributes with the TPM
 * specification version, and notAfter 9999-12-31 (RFC 5280 §4.1.2.5 "no well-defined
 * expiration"). An extendedKeyUsage, when present, must include tcg-kp-EKCertificate
 * (2.23.133.8.1), so a TLS or code-signing certificate from the same CA is not taken for an
 * EK. Intermediates are not carried by TPMs, so every certificate in ek_ca_files is an anchor —
 * and, being trusted as such, is not itself checked for revocation: only the EK certificate is.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { verifyChain } from '../../pki/chain.js';
import { formatName } from '../../pki/name-reader.js';
import { TPM_ALG, TPMA_OBJECT } from '../../tpm/constants.js';
import { publicKeyObject } from '../../tpm/structures/keys.js';
import { hasAttributes, type Tpm2bPublic } from '../../tpm/structures/public.js';
import type { JoinRule } from '../rules.js';
import { parseCert, type ParsedCert } from '../x509/cert.js';
import { checkRevocation, type RevocationScope } from '../x509/crl.js';
import { loadCaFile, loadCrlFile } from '../x509/files.js';
import type { TpmRule } from './rule.js';
import { parsePublic } from './structures.js';
import type { TpmEvidence } from './wire.js';

/** tcg-kp-EKCertificate (TCG EK Credential Profile §3.2.16). */
export const OID_TCG_KP_EK_CERTIFICATE = '2.23.133.8.1';

const EK_ATTRIBUTES = TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt | TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin;
const STRONG_NAME_ALGS: ReadonlySet<number> = new Set([TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512]);

export interface Ek {
  public: Tpm2bPublic;
  key: KeyObject;
  /** `sha256:<hex>` of the EK's SubjectPublicKeyInfo DER: the machine's stable identity. */
  hash: string;
  cert: ParsedCert | undefined;
}

/** `sha256:` + hex SHA-256 of a SubjectPublicKeyInfo DER. */
export function ekPublicHash(spkiDer: Buffer): string {
  return `sha256:${createHash('sha256').update(spkiDer).digest('hex')}`;
}

/**
 * Both rounds of a join read the same EK, and a fleet re-joins with the same ones: parsed EKs
 * (a pure function of the evidence) and successful chain validations (for at most a minute,
 * keyed by the certificate and the exact anchors loaded, with the anchor that issued it) are
 * remembered. Revocation is not: it is checked at every join against the CRL files as they are
 * then (x509/files.ts re-reads a replaced file; a CRL's signature is verified once per file
 * version), so a newly published CRL or a nextUpdate that just passed counts at once.
 */
const MEMO_SIZE = 256;
const CHAIN_MEMO_MS = 60_000;
const ekMemo = new Map<string, Ek>();
const chainMemo = new Map<string, { from: number; until: number; anchor: string }>();

function remember<V>(m: Map<string, V>, k: string, v: V): void {
  if (m.size >= MEMO_SIZE) m.delete(m.keys().next().value!);
  m.set(k, v);
}

/** Parse the EK evidence and check it is a storage EK matching its certificate (`ek_invalid`). */
export function readEk(ev: Pick<TpmEvidence, 'ek_public' | 'ek_cert'>): Ek {
  const k = `${ev.ek_public}|${ev.ek_cert ?? ''}`;
  const hit = ekMemo.get(k);
  if (hit) return hit;
  const ek = parseEk(ev);
  remember(ekMemo, k, ek);
  return ek;
}

function parseEk(ev: Pick<TpmEvidence, 'ek_public' | 'ek_cert'>): Ek {
  const pub = parsePublic(ev.ek_public, 'ek_public');
  const v = pub.value;
  const problem =
    v.type !== TPM_ALG.RSA && v.type !== TPM_ALG.ECC
      ? 'it is neither an RSA nor an ECC key'
      : !hasAttributes(v, EK_ATTRIBUTES) || (v.objectAttributes & TPMA_OBJECT.sign) !== 0
        ? `its attributes 0x${v.objectAttributes.toString(16).padStart(8, '0')} are not those of a restricted decryption key bound to the TPM (restricted|decrypt|fixedTPM|fixedParent|sensitiveDataOrigin, not sign)`
        : !STRONG_NAME_ALGS.has(v.nameAlg)
          ? `its name algorithm 0x${v.nameAlg.toString(16)} is not SHA-256, SHA-384 or SHA-512`
          : v.parameters.symmetric.algorithm !== TPM_ALG.AES || v.parameters.symmetric.mode !== TPM_ALG.CFB
            ? 'it is not a storage key with AES-CFB'
            : undefined;
  if (problem !== undefined) throw new SigilError('ek_invalid', `the EK public area is not a TPM storage EK: ${problem}`);
  let key: KeyObject;
  try {
    key = publicKeyObject(v);
  } catch (err) {
    throw new SigilError('ek_invalid', `the EK public key is not usable: ${(err as Error).message}`);
  }
  const spki = key.export({ type: 'spki', format: 'der' });
  let cert: ParsedCert | undefined;
  if (ev.ek_cert !== undefined) {
    cert = parseCert(Buffer.from(ev.ek_cert, 'base64'), 'EK certificate', 'tpm_evidence_malformed');
    if (!createPublicKey({ key: cert.fields.spki, format: 'der', type: 'spki' }).equals(key)) {
      throw new SigilError('ek_invalid', `the EK certificate (serial ${cert.serialHex}, issuer "${formatName(cert.issuer)}") certifies another key than the EK public area sent`);
    }
  }
  return { public: pub, key, hash: ekPublicHash(spki), cert };
}

/** Throws the rule's refusal for `ek`, or resolves when the rule trusts it. */
export async function checkEkForRule(ek: Ek, rule: JoinRule<TpmRule>, at: Date): Promise<void> {
  const cfg = rule.config;
  if (cfg.ek_ca_files !== undefined) {
    if (ek.cert === undefined) {
      throw new SigilError('ek_cert_missing', `join_rule ${rule.name} trusts EKs by certificate (ek_ca_files) and this TPM sent no EK certificate; list its EK hash ${ek.hash} in allow instead, or provision an EK certificate`);
    }
    const anchors = cfg.ek_ca_files.flatMap(loadCaFile);
    const anchor = issuingAnchor(ek.cert, anchors, rule, at);
    const eku = ek.cert.x509.keyUsage;
    if (eku !== undefined && eku.length > 0 && !eku.includes(OID_TCG_KP_EK_CERTIFICATE)) {
      throw new SigilError('ek_untrusted', `the EK certificate's extendedKeyUsage (${eku.join(', ')}) lacks tcg-kp-EKCertificate (${OID_TCG_KP_EK_CERTIFICATE}): it was not issued as an EK certificate`);
    }
    if (cfg.ek_crl_files !== undefined) {
      // The path is the EK certificate and its anchor: the anchor's CRL must cover it.
      await checkRevocation([ek.cert, anchor], cfg.ek_crl_files.flatMap(loadCrlFile), at, ekRevocation(rule.name));
    }
  }
  if (cfg.allow !== undefined && !cfg.allow.some((a) => a.ek_public_hash === ek.hash)) {
    throw new SigilError('ek_not_allowed', `the EK ${ek.hash} is not on join_rule ${rule.name}'s allow list`);
  }
}

/** The anchor of ek_ca_files that issued `cert`, after validating the path (`ek_untrusted`). */
function issuingAnchor(cert: ParsedCert, anchors: readonly ParsedCert[], rule: JoinRule<TpmRule>, at: Date): ParsedCert {
  const memoKey = `${cert.fingerprint}|${anchors.map((a) => a.fingerprint).join(',')}`;
  const known = chainMemo.get(memoKey);
  if (known !== undefined && at.getTime() >= known.from && at.getTime() < known.until) {
    const anchor = anchors.find((a) => a.fingerprint === known.anchor);
    if (anchor !== undefined) return anchor;
  }
  let root: Buffer;
  try {
    // Every anchor is a root: a path is leaf → one of them (TPMs carry no intermediates).
    root = verifyChain({ leaf: cert.der, intermediates: [], roots: anchors.map((a) => a.der), at }).path.at(-1)!.raw;
  } catch (err) {
    if (!(err instanceof SigilError)) throw err;
    throw new SigilError('ek_untrusted', `the EK certificate (serial ${cert.serialHex}, issuer "${formatName(cert.issuer)}") does not chain to join_rule ${rule.name}'s ek_ca_files: ${err.message}`);
  }
  const anchor = anchors.find((a) => a.der.equals(root));
  if (anchor === undefined) throw new SigilError('internal', 'the EK certificate path ends in a certificate that is not one of the anchors');
  remember(chainMemo, memoKey, { from: at.getTime(), until: Math.min(at.getTime() + CHAIN_MEMO_MS, cert.fields.notAfter.getTime()), anchor: anchor.fingerprint });
  return anchor;
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

/**
 * How far a rule got. A check the issuer could not make — an unreadable CA or CRL file, no
 * current CRL — is the operator's to fix and retryable, so it outranks every refusal: the TPM
 * retries and gets in once it is fixed, instead of being told a final no by another rule.
 */
const STAGE: Partial<Record<string, number>> = { ek_cert_missing: 0, ek_untrusted: 1, ek_revoked: 2, ek_not_allowed: 3, ek_crl_unavailable: 4, join_rule_unusable: 4 };

/**
 * The first rule (name order) that trusts `ek`. When none does, the refusal is the one from the
 * rule that got furthest (a rule that trusts the certificate but not the hash says
 * `ek_not_allowed`, not `ek_untrusted`; a revoked certificate ranks between the two, its chain
 * having been validated), so the code names the check that stopped the TPM.
 */
export async function selectRule(rules: ReadonlyArray<JoinRule<TpmRule>>, ek: Ek, at: Date): Promise<JoinRule<TpmRule>> {
  let best: { stage: number; error: SigilError } | undefined;
  for (const rule of rules) {
    try {
      await checkEkForRule(ek, rule, at);
      return rule;
    } catch (err) {
      if (!(err instanceof SigilError)) throw err;
      const stage = STAGE[err.code] ?? -1;
      if (best === undefined || stage > best.stage) best = { stage, error: err };
    }
  }
  throw best!.error;
}
