/**
 * Is this a genuine TPM a policy trusts? The endorsement key (TCG EK Credential Profile 2.5),
 * checked in this order, each failure with its own code:
 *
 *   ek_invalid       the EK public area is not a storage EK (restricted decryption key,
 *                    fixedTPM, fixedParent, sensitiveDataOrigin, AES-CFB, SHA-256+ name; EK
 *                    Credential Profile §2.1.5), or the EK certificate certifies another key
 *   ek_cert_missing  the policy trusts by certificate but the TPM sent no EK certificate
 *   ek_untrusted     the EK certificate does not chain to the policy's anchors
 *                    (pki/chain.ts verifyChain: signatures, validity, CA flags, no unknown
 *                    critical extension), or its extendedKeyUsage lacks tcg-kp-EKCertificate
 *   ek_revoked       (and `ek_crl_unavailable`) the policy's revocation check, on the EK
 *                    certificate and the anchor that issued it — the caller's CRL code
 *   ek_not_allowed   the policy has an allow list and the EK's hash is not on it
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
 * EK. Intermediates are not carried by TPMs, so every anchor is a root — and, being trusted as
 * such, is not itself checked for revocation: only the EK certificate is.
 *
 * Certificates are parsed by the caller's X.509 code (the join's; `parseCert` below): this layer
 * reads only the fields of {@link EkCertView}, and hands the caller's own type back to it.
 */
import { createHash, createPublicKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { SigilError } from '../errors.js';
import { verifyChain } from '../pki/chain.js';
import { formatName, type Rdn } from '../pki/name-reader.js';
import { TPM_ALG, TPMA_OBJECT } from '../tpm/constants.js';
import { publicKeyObject } from '../tpm/structures/keys.js';
import { hasAttributes, type Tpm2bPublic } from '../tpm/structures/public.js';
import { STRONG_HASHES } from './attributes.js';
import { parsePublic } from './structures.js';

/** tcg-kp-EKCertificate (TCG EK Credential Profile §3.2.16). */
export const OID_TCG_KP_EK_CERTIFICATE = '2.23.133.8.1';

const EK_ATTRIBUTES =
  TPMA_OBJECT.restricted |
  TPMA_OBJECT.decrypt |
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin;

/** What the EK checks read of a parsed certificate (the join's X.509 ParsedCert has all of it). */
export interface EkCertView {
  der: Buffer;
  x509: X509Certificate;
  fields: { spki: Uint8Array; notAfter: Date };
  issuer: Rdn[];
  /** Lowercase hex of the serial's magnitude. */
  serialHex: string;
  /** sha256:<hex> of the DER. */
  fingerprint: string;
}

export interface Ek<C extends EkCertView = EkCertView> {
  public: Tpm2bPublic;
  key: KeyObject;
  /** `sha256:<hex>` of the EK's SubjectPublicKeyInfo DER: the machine's stable identity. */
  hash: string;
  cert: C | undefined;
}

/** The EK as evidence carries it: TPM2B_PUBLIC and the certificate DER, each base64. */
export interface EkEvidence {
  ek_public: string;
  ek_cert?: string | undefined;
}

/** `sha256:` + hex SHA-256 of a SubjectPublicKeyInfo DER. */
export function ekPublicHash(spkiDer: Buffer): string {
  return `sha256:${createHash('sha256').update(spkiDer).digest('hex')}`;
}

/**
 * Parse the EK evidence and check it is a storage EK matching its certificate (`ek_invalid`).
 * `parseCert` turns the certificate DER into the caller's parsed form (its refusals: the caller's).
 */
export function readEk<C extends EkCertView>(ev: EkEvidence, parseCert: (der: Buffer) => C): Ek<C> {
  const pub = parsePublic(ev.ek_public, 'ek_public');
  const v = pub.value;
  const problem =
    v.type !== TPM_ALG.RSA && v.type !== TPM_ALG.ECC
      ? 'it is neither an RSA nor an ECC key'
      : !hasAttributes(v, EK_ATTRIBUTES) || (v.objectAttributes & TPMA_OBJECT.sign) !== 0
        ? `its attributes 0x${v.objectAttributes.toString(16).padStart(8, '0')} are not those of a restricted decryption key bound to the TPM (restricted|decrypt|fixedTPM|fixedParent|sensitiveDataOrigin, not sign)`
        : !STRONG_HASHES.has(v.nameAlg)
          ? `its name algorithm 0x${v.nameAlg.toString(16)} is not SHA-256, SHA-384 or SHA-512`
          : v.parameters.symmetric.algorithm !== TPM_ALG.AES || v.parameters.symmetric.mode !== TPM_ALG.CFB
            ? 'it is not a storage key with AES-CFB'
            : undefined;
  if (problem !== undefined)
    throw new SigilError('ek_invalid', `the EK public area is not a TPM storage EK: ${problem}`);
  let key: KeyObject;
  try {
    key = publicKeyObject(v);
  } catch (err) {
    throw new SigilError('ek_invalid', `the EK public key is not usable: ${(err as Error).message}`);
  }
  const spki = key.export({ type: 'spki', format: 'der' });
  let cert: C | undefined;
  if (ev.ek_cert !== undefined) {
    cert = parseCert(Buffer.from(ev.ek_cert, 'base64'));
    if (!createPublicKey({ key: Buffer.from(cert.fields.spki), format: 'der', type: 'spki' }).equals(key)) {
      throw new SigilError(
        'ek_invalid',
        `the EK certificate (serial ${cert.serialHex}, issuer "${formatName(cert.issuer)}") certifies another key than the EK public area sent`,
      );
    }
  }
  return { public: pub, key, hash: ekPublicHash(spki), cert };
}

/** A trust anchor for EK certificates (the join's ParsedCert of a CA file is one). */
export interface EkAnchor {
  der: Buffer;
  fingerprint: string;
}

/**
 * Which EKs a policy (a join rule's EK part) trusts. Both given → both must hold. Files are read
 * when the policy is checked, not when it is built: a policy that cannot be checked refuses with
 * the caller's retryable code, and the next policy is tried.
 */
export interface EkTrustPolicy<C extends EkCertView = EkCertView, A extends EkAnchor = EkAnchor> {
  /** The join rule, as refusals name it. */
  rule: string;
  /** Trust by certificate (ek_ca_files): every anchor is a root. */
  anchors?: () => readonly A[];
  /** Revocation of the EK certificate issued by `anchor` (ek_crl_files); throws the refusal. */
  revocation?: (cert: C, anchor: A, at: Date) => Promise<void>;
  /** Trust by EK hash (`allow`). */
  allow?: readonly string[];
}

/**
 * Both rounds of a join read the same EK, and a fleet re-joins with the same ones: parsed EKs
 * (a pure function of the evidence) and successful chain validations (for at most a minute,
 * keyed by the certificate and the exact anchors loaded, with the anchor that issued it) can be
 * remembered here (~0.1 ms to parse, ~0.25 ms to validate an RSA chain, per join and round).
 * Revocation is not: it is checked at every join against the CRLs as they are then, so a newly
 * published CRL or a nextUpdate that just passed counts at once. One per issuer.
 */
export class EkMemo {
  static readonly SIZE = 256;
  static readonly CHAIN_MS = 60_000;
  readonly #eks = new Map<string, Ek<EkCertView>>();
  readonly #chains = new Map<string, { from: number; until: number; anchor: string }>();

  ek<C extends EkCertView>(ev: EkEvidence, parse: () => Ek<C>): Ek<C> {
    const k = `${ev.ek_public}|${ev.ek_cert ?? ''}`;
    const hit = this.#eks.get(k);
    if (hit) return hit as Ek<C>;
    const ek = parse();
    remember(this.#eks, k, ek);
    return ek;
  }

  /** The fingerprint of the anchor that issued `cert` under `anchors`, if validated within the minute. */
  chainAnchor(key: string, at: Date): string | undefined {
    const known = this.#chains.get(key);
    return known !== undefined && at.getTime() >= known.from && at.getTime() < known.until ? known.anchor : undefined;
  }

  rememberChain(key: string, at: Date, notAfter: Date, anchor: string): void {
    remember(this.#chains, key, {
      from: at.getTime(),
      until: Math.min(at.getTime() + EkMemo.CHAIN_MS, notAfter.getTime()),
      anchor,
    });
  }
}

function remember<V>(m: Map<string, V>, k: string, v: V): void {
  if (m.size >= EkMemo.SIZE) m.delete(m.keys().next().value!);
  m.set(k, v);
}

/** Throws the policy's refusal for `ek`, or resolves when the policy trusts it. */
export async function checkEkTrust<C extends EkCertView, A extends EkAnchor>(
  ek: Ek<C>,
  policy: EkTrustPolicy<C, A>,
  at: Date,
  memo?: EkMemo,
): Promise<void> {
  if (policy.anchors !== undefined) {
    if (ek.cert === undefined) {
      throw new SigilError(
        'ek_cert_missing',
        `join_rule ${policy.rule} trusts EKs by certificate (ek_ca_files) and this TPM sent no EK certificate; list its EK hash ${ek.hash} in allow instead, or provision an EK certificate`,
      );
    }
    const anchor = issuingAnchor(ek.cert, policy.anchors(), policy.rule, at, memo);
    const eku = ek.cert.x509.keyUsage;
    if (eku !== undefined && eku.length > 0 && !eku.includes(OID_TCG_KP_EK_CERTIFICATE)) {
      throw new SigilError(
        'ek_untrusted',
        `the EK certificate's extendedKeyUsage (${eku.join(', ')}) lacks tcg-kp-EKCertificate (${OID_TCG_KP_EK_CERTIFICATE}): it was not issued as an EK certificate`,
      );
    }
    if (policy.revocation !== undefined) await policy.revocation(ek.cert, anchor, at);
  }
  if (policy.allow !== undefined && !policy.allow.includes(ek.hash)) {
    throw new SigilError('ek_not_allowed', `the EK ${ek.hash} is not on join_rule ${policy.rule}'s allow list`);
  }
}

/** The anchor that issued `cert`, after validating the path (`ek_untrusted`). */
function issuingAnchor<A extends EkAnchor>(
  cert: EkCertView,
  anchors: readonly A[],
  rule: string,
  at: Date,
  memo: EkMemo | undefined,
): A {
  const memoKey = `${cert.fingerprint}|${anchors.map((a) => a.fingerprint).join(',')}`;
  const known = memo?.chainAnchor(memoKey, at);
  const remembered = known === undefined ? undefined : anchors.find((a) => a.fingerprint === known);
  if (remembered !== undefined) return remembered;
  let root: Buffer;
  try {
    // Every anchor is a root: a path is leaf → one of them (TPMs carry no intermediates).
    root = verifyChain({ leaf: cert.der, intermediates: [], roots: anchors.map((a) => a.der), at }).path.at(-1)!.raw;
  } catch (err) {
    if (!(err instanceof SigilError)) throw err;
    throw new SigilError(
      'ek_untrusted',
      `the EK certificate (serial ${cert.serialHex}, issuer "${formatName(cert.issuer)}") does not chain to join_rule ${rule}'s ek_ca_files: ${err.message}`,
    );
  }
  const anchor = anchors.find((a) => a.der.equals(root));
  if (anchor === undefined)
    throw new SigilError('internal', 'the EK certificate path ends in a certificate that is not one of the anchors');
  memo?.rememberChain(memoKey, at, cert.fields.notAfter, anchor.fingerprint);
  return anchor;
}

/**
 * How far a policy got. A check the issuer could not make — an unreadable CA or CRL file, no
 * current CRL — is the operator's to fix and retryable, so it outranks every refusal: the TPM
 * retries and gets in once it is fixed, instead of being told a final no by another rule.
 */
const STAGE: Partial<Record<string, number>> = {
  ek_cert_missing: 0,
  ek_untrusted: 1,
  ek_revoked: 2,
  ek_not_allowed: 3,
  ek_crl_unavailable: 4,
  join_rule_unusable: 4,
};

/**
 * The first policy (in the given order) that trusts `ek`. When none does, the refusal is the one
 * from the policy that got furthest (one that trusts the certificate but not the hash says
 * `ek_not_allowed`, not `ek_untrusted`; a revoked certificate ranks between the two, its chain
 * having been validated), so the code names the check that stopped the TPM.
 */
export async function selectEkPolicy<C extends EkCertView, A extends EkAnchor, P extends EkTrustPolicy<C, A>>(
  policies: readonly P[],
  ek: Ek<C>,
  at: Date,
  memo?: EkMemo,
): Promise<P> {
  let best: { stage: number; error: SigilError } | undefined;
  for (const policy of policies) {
    try {
      await checkEkTrust(ek, policy, at, memo);
      return policy;
    } catch (err) {
      if (!(err instanceof SigilError)) throw err;
      const stage = STAGE[err.code] ?? -1;
      if (best === undefined || stage > best.stage) best = { stage, error: err };
    }
  }
  throw best!.error;
}
