/**
 * The issuer half of the tpm join (wire.ts describes the two rounds). Each check refuses with
 * its own code; in order:
 *
 *   round 1  evidence shape (tpm_evidence_malformed) → EK (ek.ts: ek_invalid, ek_cert_missing,
 *            ek_untrusted, ek_revoked / ek_crl_unavailable, ek_not_allowed; the first rule, in
 *            name order, that trusts the EK is the one used) → AK attributes
 *            (ak_attributes_invalid) → identity key attributes and CSR key
 *            (key_not_tpm_resident, certify_key_mismatch) → the rule's firmware profiles exist
 *            (firmware_profile_unknown) → MakeCredential, challenge
 *   round 2  challenge (challenge_*) → EK again against the rule and its CRLs as they are now
 *            → activation answer, constant time (credential_mismatch) → quote (quote_invalid,
 *            quote_nonce_mismatch, quote_signature_invalid) → PCR digest recomputed from the
 *            reported values (pcr_digest_mismatch) → certification of the identity key
 *            (certify_invalid, certify_key_mismatch) → clock (clock_invalid) → event log, only
 *            when a profile of the rule reads it (eventlog_invalid, eventlog_replay_mismatch)
 *            → firmware profiles (pcr_mismatch, firmware_profile_mismatch) → attested; the
 *            host uses the challenge up.
 *
 * With firmware profiles, the join records the first attestation (`facts.attestation`, via join,
 * with the quote's reset/restart counters): later renewals and interval attestations re-prove the
 * boot against it (reattest.ts, issue #16; docs/continuous-attestation.md).
 *
 * Machine id: `tpm-` + the first 128 bits (hex) of SHA-256 over the EK's SubjectPublicKeyInfo.
 * The EK is fixed for the TPM's life (its seed survives TPM2_Clear), so a machine that joins
 * again — after its identity expired, after a reboot, with a new AK and a new identity key —
 * is the same instance and keeps its history and generation.
 */
import { AkKeys, checkAk } from '../../attest/ak.js';
import { verifyCertify } from '../../attest/certify.js';
import { checkClock } from '../../attest/clock.js';
import { checkActivation, credentialChallenge } from '../../attest/credential.js';
import { EkMemo } from '../../attest/ek.js';
import { readEventLog, verifyEventLog } from '../../attest/eventlog.js';
import { judgeBoot, selectionFor, type FirmwareProfiles } from '../../attest/firmware/index.js';
import { checkIdentityKey } from '../../attest/key.js';
import { verifyKeyAttestation } from '../../attest/key-attestation.js';
import { checkPcrDigest, verifyQuote } from '../../attest/quote.js';
import { encodePublic, parsePublic, parseSignedAttest } from '../../attest/structures.js';
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import { answeredChallenge, MAX_CHALLENGE_TTL_MS } from '../challenge.js';
import { checkEkForRule, readEk, selectRule, type Ek, type EkTrustCaches } from '../ek-trust.js';
import type { JoinAttestPort, JoinRenewPort, JoinRule } from '../port.js';
import type { ServerJoinMethodEntry } from '../registry.js';
import type {
  AttestationPolicy,
  AttestInput,
  Attested,
  ChallengeRequired,
  JoinMethodServer,
  ReattestInput,
  ReattestVerdict,
} from '../types.js';
import { tpmDescriptor } from './descriptor.js';
import { tpmRuleSchema, type TpmRule } from './rule.js';
import { pcrFacts, reportedPcrs } from './pcrs.js';
import { logNeeded, tpmAttestationPolicy, tpmReattest } from './reattest.js';
import {
  isAnswer,
  MAX_EVENT_LOG_BYTES,
  tpmAnswerSchema,
  tpmChallengeStateSchema,
  tpmEvidenceSchema,
  type TpmChallengeData,
  type TpmChallengeState,
} from './wire.js';

export function tpmMachineId(ekPublicHash: string): string {
  return `tpm-${ekPublicHash.slice('sha256:'.length, 'sha256:'.length + 32)}`;
}

async function rulesOrRefuse(port: JoinAttestPort): Promise<Array<JoinRule<TpmRule>>> {
  const rules = await port.rules<TpmRule>();
  if (rules.length === 0)
    throw new SigilError(
      'tpm_no_rule',
      'no join_rule with method tpm exists on this issuer (sigil ctl --data-dir <issuer-data-dir> apply -f a rule with tpm.ek_ca_files or tpm.allow)',
    );
  return rules;
}

/** What the tpm join needs of its issuer: the firmware profiles, and the EK caches (join/ek-trust.ts). */
export interface TpmJoinDeps {
  firmware: FirmwareProfiles;
  trustFiles?: EkTrustCaches['trustFiles'];
}

export class TpmJoinServer implements JoinMethodServer {
  readonly name = 'tpm';
  readonly #firmware: FirmwareProfiles;
  readonly #ek: EkTrustCaches;
  /** The instances' AKs, checked, their keys imported once (renewal key proofs and quotes). */
  readonly #aks = new AkKeys();
  /** A policy lookup's rule, for the judgement that follows it in the same request. */

  constructor(deps: TpmJoinDeps) {
    this.#firmware = deps.firmware;
    this.#ek = { trustFiles: deps.trustFiles, memo: new EkMemo() };
  }

  attest(input: AttestInput, port: JoinAttestPort): Promise<Attested | ChallengeRequired> {
    return isAnswer(input.evidence) ? this.answer(input, port) : this.challenge(input, port);
  }

  /** A renewal's new key is certified by this instance's attestation key (attest/key-attestation.ts). */
  verifyRenewalKeyProof(
    proof: unknown,
    instanceFacts: Record<string, unknown>,
    csrSpki: Buffer,
    requestId: string,
  ): { keyStorage: 'tpm' } {
    verifyKeyAttestation(proof, instanceFacts, csrSpki, requestId, this.#aks);
    return { keyStorage: 'tpm' };
  }

  /** Continuous attestation (issue #16): the rule's policy for this instance, if it needs attesting (reattest.ts). */
  attestationPolicy(
    instanceFacts: Record<string, unknown>,
    port: JoinRenewPort,
  ): Promise<AttestationPolicy | undefined> {
    return tpmAttestationPolicy(instanceFacts, port);
  }

  /** A fresh quote judged against the join's facts and the rule's current profiles (reattest.ts). */
  reattest(input: ReattestInput, port: JoinRenewPort): Promise<ReattestVerdict> {
    return tpmReattest(input, port, this.#firmware, this.#aks);
  }

  private async challenge(input: AttestInput, port: JoinAttestPort): Promise<ChallengeRequired> {
    const rules = await rulesOrRefuse(port);
    const ev = parseWith(tpmEvidenceSchema, input.evidence, 'tpm_evidence_malformed', 'tpm evidence');
    const ek = readEk(ev, this.#ek.memo);
    const rule = await selectRule(rules, ek, new Date(input.now), this.#ek);
    const ak = parsePublic(ev.ak_public, 'ak_public');
    checkAk(ak);
    const key = parsePublic(ev.key_public, 'key_public');
    checkIdentityKey(key, input.spkiDer);
    const selection = selectionFor(this.#firmware.resolve(rule.config.firmware_profiles ?? [], rule.name));

    const cred = credentialChallenge(ek.public, ak);
    // attest_renewals: the agent keeps the selection and quotes it at every renewal (issue #16).
    const data: TpmChallengeData = {
      credential: cred.credential,
      pcr_selection: selection,
      ...(rule.config.firmware_profiles !== undefined ? { attest_renewals: true as const } : {}),
    };
    const state: TpmChallengeState = {
      rule: rule.name,
      ek_public: ev.ek_public,
      ...(ev.ek_cert !== undefined ? { ek_cert: ev.ek_cert } : {}),
      ak_public: ev.ak_public,
      key_public: ev.key_public,
      ek_public_hash: ek.hash,
      secret: cred.secret,
      pcr_selection: selection,
    };
    return { challenge: { data, state, ttlMs: MAX_CHALLENGE_TTL_MS } };
  }

  private async answer(input: AttestInput, port: JoinAttestPort): Promise<Attested> {
    const rules = await rulesOrRefuse(port);
    const ans = parseWith(tpmAnswerSchema, input.evidence, 'tpm_evidence_malformed', 'tpm challenge answer');
    const ch = answeredChallenge(input);
    const st = parseWith(tpmChallengeStateSchema, ch.state, 'internal', 'stored tpm challenge state');
    const rule = rules.find((r) => r.name === st.rule);
    if (!rule)
      throw new SigilError(
        'tpm_no_rule',
        `join_rule ${st.rule} was removed while the TPM answered its challenge; start the join again`,
      );
    // The rule may have changed between the rounds (a CA file replaced, a CRL published, an
    // allow entry removed).
    const ek = readEk(st, this.#ek.memo);
    await checkEkForRule(ek, rule, new Date(input.now), this.#ek);
    const ak = parsePublic(st.ak_public, 'stored ak_public', 'internal');
    const key = parsePublic(st.key_public, 'stored key_public', 'internal');

    checkActivation(st.secret, ans.activated);

    const quote = parseSignedAttest(ans.quote, 'quote', 'quote_invalid');
    const q = verifyQuote(quote, ak, ch.nonce, st.pcr_selection);
    const quoted = reportedPcrs(ans.pcr_values, st.pcr_selection);
    checkPcrDigest(quote, q, quoted);

    const certify = verifyCertify(
      parseSignedAttest(ans.certify, 'certification', 'certify_invalid'),
      ak,
      key,
      ch.nonce,
    );
    checkIdentityKey(key, input.spkiDer);

    const machineId = tpmMachineId(ek.hash);
    const known = await port.instanceFacts(machineId);
    const previous =
      typeof known?.tpm_clock_ms === 'number' ? { clockMs: known.tpm_clock_ms, instanceId: machineId } : undefined;
    const clock = checkClock(q, certify, ch.expiresAt - ch.createdAt, previous);

    // The log is judged only when a profile of the rule reads it (issue #16): a machine whose
    // firmware writes a log Sigil cannot read (a SHA-1-only TPM 1.2 format log) joins under a
    // rule that pins PCRs or names no profile, as the PCR values alone decide there. When a
    // profile does read it, it is replayed in every quoted bank first (eventlog_invalid,
    // eventlog_replay_mismatch), before any rule looks at it.
    const profiles = this.#firmware.resolve(rule.config.firmware_profiles ?? [], rule.name);
    const log =
      ans.event_log !== undefined && logNeeded(profiles)
        ? verifyEventLog(readEventLog(ans.event_log, MAX_EVENT_LOG_BYTES), quoted)
        : undefined;
    const match = profiles.length > 0 ? judgeBoot(profiles, quoted, log) : undefined;

    return {
      bot: rule.bot,
      machineId,
      facts: {
        tpm_rule: rule.name,
        ...ekFacts(ek),
        ak_public: encodePublic(ak),
        firmware_profile: match?.profile ?? null,
        ...(match?.matched.eventLog?.secureBoot ? { secure_boot: match.matched.eventLog.secureBoot } : {}),
        pcrs: pcrFacts(quoted),
        event_log: log !== undefined,
        ...clock,
        // The counters later quotes by this AK are compared with (a change: a reboot, reattest.ts).
        tpm_reset_count: q.clockInfo.resetCount,
        tpm_restart_count: q.clockInfo.restartCount,
        // The first attestation record (issue #16; server/ops/attestation.ts reads and extends it).
        ...(profiles.length > 0
          ? {
              attestation: {
                at: input.now,
                ok: true,
                via: 'join',
                profile: match?.profile ?? null,
                reset_count: q.clockInfo.resetCount,
                restart_count: q.clockInfo.restartCount,
              },
              last_good_attestation_at: input.now,
            }
          : // A join replaces what an earlier join of this machine recorded (facts merge).
            { attestation: null, last_good_attestation_at: null }),
      },
      joinRule: rule.name,
      canReattest: true,
      keyStorage: 'tpm',
      exportable: false,
    };
  }
}

function ekFacts(ek: Ek): Record<string, unknown> {
  const k = ek.key;
  const kind =
    k.asymmetricKeyType === 'rsa'
      ? `rsa-${k.asymmetricKeyDetails?.modulusLength ?? 0}`
      : `ecc-${k.asymmetricKeyDetails?.namedCurve ?? 'unknown'}`;
  return {
    ek_public_hash: ek.hash,
    ek_type: kind,
    ...(ek.cert ? { ek_cert_issuer: ek.cert.x509.issuer.replace(/\n/g, ', '), ek_cert_serial: ek.cert.serialHex } : {}),
  };
}

export const tpmServerMethod: ServerJoinMethodEntry = {
  descriptor: tpmDescriptor,
  ruleSchema: tpmRuleSchema,
  create: (deps) => new TpmJoinServer({ firmware: deps.firmware, trustFiles: deps.caches.trustFiles }),
};
