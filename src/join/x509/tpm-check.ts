/**
 * DevID in a TPM — x509 rules with `require_tpm` (the `tpm` + `x509` join, as SPIRE's
 * tpm_devid does it). Besides the chain and the challenge signature, the device proves that its
 * certificate's key sits in the same TPM as an endorsement key the rule trusts:
 *
 *   round 1  EK (certificate, public area), a fresh AK, the device key's public area
 *            → EK trusted by the rule (join/ek-trust.ts: ek_invalid, ek_cert_missing,
 *              ek_untrusted, ek_revoked, ek_crl_unavailable, ek_not_allowed) and, for a
 *              registered device, the EK the factory recorded (x509_ek_mismatch); AK
 *              attributes (ak_attributes_invalid); the device key generated in and bound to a
 *              TPM and equal to the certificate's key (key_not_tpm_resident,
 *              certify_key_mismatch)
 *            → MakeCredential of a fresh secret to the EK for the AK's Name (attest/credential.ts)
 *   round 2  ActivateCredential's output (credential_mismatch: the AK is in the EK's TPM) and
 *            TPM2_Certify of the device key by the AK with the challenge nonce (certify_invalid,
 *            certify_key_mismatch: the device key is in the AK's TPM, now)
 *
 * Every check is the tpm join's own function; this file only wires them to the x509 decision.
 * A device that sent no TPM evidence to such a rule is `x509_tpm_binding_invalid`.
 */
import { checkAk } from '../../attest/ak.js';
import { verifyCertify } from '../../attest/certify.js';
import { checkActivation, credentialChallenge } from '../../attest/credential.js';
import { checkIdentityKey } from '../../attest/key.js';
import { parsePublic, parseSignedAttest } from '../../attest/structures.js';
import { SigilError } from '../../errors.js';
import type { Tpm2bPublic } from '../../tpm/structures/public.js';
import { checkEkForRule, readEk, type Ek, type EkRuleConfig, type EkTrustCaches } from '../ek-trust.js';
import type { JoinRule } from '../rules.js';
import type { Decision } from './evaluate.js';
import type { X509Rule } from './rule.js';
import type { X509ChallengeData, X509ChallengeState, X509TpmAnswer, X509TpmEvidence } from './wire.js';

/** The rule's require_tpm as the tpm join's EK rule (ek_ca_files, ek_crl_files, allow: same semantics). */
function ekRule(rule: JoinRule<X509Rule>): JoinRule<EkRuleConfig> {
  const r = rule.config.require_tpm!;
  return {
    name: rule.name,
    bot: rule.bot,
    config: {
      ...(r.ek_ca_files ? { ek_ca_files: r.ek_ca_files } : {}),
      ...(r.ek_crl_files ? { ek_crl_files: r.ek_crl_files } : {}),
      ...(r.allow ? { allow: r.allow } : {}),
    },
  };
}

async function checkEk(ek: Ek, d: Decision, at: Date, caches: EkTrustCaches): Promise<void> {
  await checkEkForRule(ek, ekRule(d.rule), at, caches);
  const registered = d.device?.ekPublicHash ?? null;
  if (d.device !== undefined && registered !== null && registered !== ek.hash) {
    throw new SigilError(
      'x509_ek_mismatch',
      `device ${d.device.serial} was provisioned in the TPM with EK ${registered}, but its key sits in a TPM with EK ${ek.hash}`,
    );
  }
  const r = d.rule.config.require_tpm!;
  if (r.ek_ca_files === undefined && r.allow === undefined && registered === null) {
    throw new SigilError(
      'x509_ek_mismatch',
      `join_rule ${d.rule.name} trusts EKs only through the device manifest (require_tpm without ek_ca_files or allow), and ${d.device ? `device ${d.device.serial} has no ek_public_hash` : 'the device is not registered'}`,
    );
  }
}

/** The device key: made in a TPM, bound to it, and the certificate's key. */
function checkDeviceKey(devid: Tpm2bPublic, leafSpki: Buffer): void {
  try {
    checkIdentityKey(devid, leafSpki);
  } catch (e) {
    if (!(e instanceof SigilError)) throw e;
    throw new SigilError(
      e.code,
      e.code === 'certify_key_mismatch'
        ? 'the TPM key sent as devid_public is not the key of the device certificate'
        : e.message.replace('the identity key', 'the device key'),
    );
  }
}

function required(d: Decision): boolean {
  return d.rule.config.require_tpm !== undefined;
}

/**
 * Round 1: for a rule with require_tpm, check the TPM evidence and wrap the credential;
 * undefined for other rules (their challenge carries no TPM part, whatever the device sent).
 */
/** `caches`: the issuer's parsed CA/CRL files (join/caches.ts). */
export async function tpmChallenge(
  d: Decision,
  ev: X509TpmEvidence | undefined,
  at: Date,
  caches: EkTrustCaches = {},
): Promise<{ data: X509ChallengeData; state: NonNullable<X509ChallengeState['tpm']> } | undefined> {
  if (!required(d)) return undefined;
  if (ev === undefined) {
    throw new SigilError(
      'x509_tpm_binding_invalid',
      `join_rule ${d.rule.name} requires the device key to be proven TPM-resident (require_tpm), and the device sent no TPM evidence: its key must be in a TPM (join.x509.key_uri "tpm:…" or tpm: { handle }, attest not false)`,
    );
  }
  const ek = readEk(ev);
  await checkEk(ek, d, at, caches);
  const ak = parsePublic(ev.ak_public, 'ak_public');
  checkAk(ak);
  checkDeviceKey(parsePublic(ev.devid_public, 'devid_public'), Buffer.from(d.path.leaf.fields.spki));
  const c = credentialChallenge(ek.public, ak);
  return { data: { tpm: { credential: c.credential } }, state: { ...ev, ek_public_hash: ek.hash, secret: c.secret } };
}

/** Round 2: the binding holds; returns the facts it adds (none for rules without require_tpm). */
export async function verifyTpmBinding(
  d: Decision,
  st: X509ChallengeState['tpm'],
  ans: X509TpmAnswer | undefined,
  nonce: Buffer,
  at: Date,
  caches: EkTrustCaches = {},
): Promise<Record<string, unknown>> {
  if (!required(d)) return {};
  if (st === undefined)
    throw new SigilError(
      'x509_tpm_binding_invalid',
      `join_rule ${d.rule.name} requires a TPM-resident device key (require_tpm) since this challenge was issued; start the join again`,
    );
  if (ans === undefined)
    throw new SigilError(
      'x509_tpm_binding_invalid',
      `the answer lacks the TPM binding (activated credential and certification of the device key) that join_rule ${d.rule.name} requires`,
    );
  // The rule may have changed between the rounds (a CA file replaced, a CRL published, an allow
  // entry removed).
  const ek = readEk(st);
  await checkEk(ek, d, at, caches);
  const ak = parsePublic(st.ak_public, 'stored ak_public', 'internal');
  const devid = parsePublic(st.devid_public, 'stored devid_public', 'internal');
  checkActivation(st.secret, ans.activated);
  verifyCertify(
    parseSignedAttest(ans.certify, 'certification', 'certify_invalid'),
    ak,
    devid,
    nonce,
    'DevID certification',
  );
  checkDeviceKey(devid, Buffer.from(d.path.leaf.fields.spki));
  return {
    x509_key_storage: 'tpm',
    ek_public_hash: ek.hash,
    ...(ek.cert ? { ek_cert_issuer: ek.cert.x509.issuer.replace(/\n/g, ', '), ek_cert_serial: ek.cert.serialHex } : {}),
  };
}
