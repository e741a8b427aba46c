/**
 * The two halves of a join method (SPIRE's node-attestor split). A method never sees a
 * transport: the host runs the request (and, for methods that need one, the challenge round)
 * over HTTPS or MQTT.
 */
import type { SigilError } from '../errors.js';
import type { KeyStorage } from '../keystore/signer.js';
import type { JoinChallenge } from '../protocol/messages.js';
import type { AnsweredChallenge } from './challenge.js';
import type { JoinAttestPort, JoinCommitPort, JoinRenewPort } from './port.js';

export interface AttestInput {
  /** Method-specific evidence from the join request; validate with the method's wire schema. */
  evidence: Record<string, unknown>;
  requestId: string;
  /** SubjectPublicKeyInfo of the new identity key (from the verified CSR). */
  spkiDer: Buffer;
  now: number;
  remote: string | null;
  /**
   * The challenge this evidence answers (`challenge_id` in the evidence): opened by the host
   * before the method runs — it exists, is unused and unexpired, and was issued by this method
   * to this request id for this key — and used up by the host inside the issuing transaction
   * (join/challenge.ts). Undefined for a first round.
   */
  challenge?: AnsweredChallenge;
}

export interface Attested {
  bot: string;
  /** Stable machine id (e.g. from the EK); undefined → a new random instance for each join. */
  machineId?: string;
  /**
   * Who vouched for `machineId` when it is a claim rather than a proof (oidc: the token's
   * issuer, whose key can sign any pod uid). Recorded on the instance; a re-join whose authority
   * differs is refused `instance_conflict` (server/ops/join.ts). Absent for proven ids (an EK).
   */
  machineIdAuthority?: string;
  /** Facts recorded on the instance and in the audit log (never secrets). */
  facts: Record<string, unknown>;
  joinRule?: string;
  /** Whether the agent can join again by itself after its identity expires. */
  canReattest: boolean;
  /**
   * Where the identity key lives, when the method *proved* it (tpm: TPM2_Certify of the key by
   * the attestation key). Absent: recorded as a software, exportable key whatever the agent
   * claims in `key_storage`.
   */
  keyStorage?: KeyStorage;
  /** False only with a proven hardware `keyStorage`. Default true. */
  exportable?: boolean;
  /**
   * Runs inside the issuing transaction; throw a SigilError to refuse. Single-use evidence
   * (tokens, jti, first-join bindings) is used up here through the transaction's port, so that
   * a refusal later in the join burns nothing and two concurrent joins cannot both win. (The
   * challenge is the host's: it is used up whatever the method does.) Awaited by the host inside
   * `withWriteTx`: call nothing but the port (it may run more than once, port.ts).
   */
  commit?(tx: JoinCommitPort): Promise<void>;
}

/**
 * "Answer this first": a method that needs a challenge round returns this from `attest`
 * instead of {@link Attested}. The host (server/ops/challenge.ts) stores a single-use challenge
 * bound to the request id and the new key, adds its own 32-byte nonce, and answers the agent
 * with a signed challenge; the agent sends the join again (same request id, same key) with
 * evidence answering it; the host opens the challenge and hands it to the method as
 * `AttestInput.challenge` (join/challenge.ts).
 */
export interface ChallengeRequired {
  challenge: {
    /** Sent to the agent in `challenge.data` (public). */
    data?: Record<string, unknown>;
    /** Kept by the issuer with the challenge and handed back on the answer (never sent). */
    state?: Record<string, unknown>;
    /** Lifetime; capped at 60 s by the host. */
    ttlMs?: number;
  };
}

export function isChallengeRequired(r: Attested | ChallengeRequired): r is ChallengeRequired {
  return 'challenge' in r && (r as Partial<Attested>).bot === undefined;
}

export interface JoinMethodServer {
  readonly name: string;
  /** `port`: what this method may read on the issuer (port.ts), scoped to it and to this join. */
  attest(input: AttestInput, port: JoinAttestPort): Promise<Attested | ChallengeRequired>;
  /**
   * Methods with the `renewalKeyProof` capability (tpm): check a renewal's proof that its new key
   * lives where the join put the first one (tpm: TPM2_Certify by the join's attestation key, whose
   * public part is in `instanceFacts`). Throws a SigilError naming the failed check; returning
   * means the key is proven `keyStorage`, not exportable. Absent: renewals of this method's
   * instances cannot claim hardware keys (server/ops/renew.ts refuses the proof).
   */
  verifyRenewalKeyProof?(
    proof: unknown,
    instanceFacts: Record<string, unknown>,
    csrSpki: Buffer,
    requestId: string,
  ): { keyStorage: KeyStorage };
  /**
   * Methods whose evidence can go bad after the join re-check it at every renewal (x509: the
   * device certificate against the join rule's current CRLs), from the facts their join
   * recorded. Throws a SigilError naming the failed check, which refuses the renewal
   * (server/ops/renew.ts, inside its transaction, before issuing); returning lets it go on.
   * Absent: renewals rely on the join alone.
   */
  checkRenewal?(instanceFacts: Record<string, unknown>, port: JoinRenewPort): Promise<void>;
  /**
   * Methods with the `reattest` capability (tpm, issue #16): whether this instance must prove its
   * boot state again at renewals and interval attestations, and what its join rule does when it
   * cannot (server/ops/attestation.ts applies it). Undefined: no attestation needed (the rule
   * names no firmware profile, the rule is gone, or the instance joined before the facts needed
   * existed).
   */
  attestationPolicy?(
    instanceFacts: Record<string, unknown>,
    port: JoinRenewPort,
  ): Promise<AttestationPolicy | undefined>;
  /**
   * Judge fresh boot-state evidence against the facts the join (or the last accepted
   * attestation) recorded and the rule's current profiles. A verdict, not a throw, for every
   * check of the machine's state (the host records it and applies the policy); throws a
   * SigilError only for what is not a judgement of the machine (malformed evidence).
   */
  reattest?(input: ReattestInput, port: JoinRenewPort): Promise<ReattestVerdict>;
}

/** A join rule's policy for attestations after the join (issue #16; tpm rule.ts). */
export interface AttestationPolicy {
  rule: string;
  /** `refuse`: renewals refused until the boot matches again; `lock`: the instance is locked. */
  onFailure: 'refuse' | 'lock';
  /** Renewals refused (`attestation_stale`) when the last good attestation is older; undefined: no gate. */
  maxAgeMs: number | undefined;
  /**
   * What the method read to make this policy (tpm: the parsed join rule), opaque to the caller,
   * handed back to the method's `reattest` in the same request through {@link ReattestInput.policy}
   * so the rule is not read and parsed twice.
   */
  detail?: unknown;
}

export interface ReattestInput {
  evidence: unknown;
  instanceFacts: Record<string, unknown>;
  /** The quote's expected qualifying data (server/ops/attestation.ts attestationBinding). */
  binding: Buffer;
  now: number;
  /** The policy the same request's `attestationPolicy` returned (same transaction), when there was one. */
  policy?: AttestationPolicy;
}

/** One PCR that differs from what the firmware profile accepts. */
export interface PcrDiffEntry {
  bank: string;
  pcr: number;
  expected: string[];
  got: string;
}

/** What the method observed, good or bad (recorded in facts.attestation and the audit row). */
export interface ReattestObserved {
  profile: string | null;
  /** TPMS_CLOCK_INFO of the quote (obfuscated per AK: comparable between quotes of one AK). */
  resetCount?: number;
  restartCount?: number;
  /** The counters differ from the last accepted attestation's: the machine rebooted (or resumed). */
  rebooted?: boolean;
}

export type ReattestVerdict =
  | (ReattestObserved & {
      ok: true;
      /** Facts to merge into the instance's (tpm: PCR values, profile, clock, counters). */
      facts: Record<string, unknown>;
    })
  | (ReattestObserved & { ok: false; error: SigilError; diff?: PcrDiffEntry[] });

/** What a join's evidence is bound to: this request and the key being certified. */
export interface EvidenceContext {
  requestId: string;
  spkiDer: Buffer;
}

export interface JoinMethodAgent {
  readonly name: string;
  /** Whether the method can re-attest without a person after expiry (tpm, x509: yes; token: no). */
  readonly canReattest: boolean;
  /**
   * Join again instead of renewing (oidc: the CI job or pod is ephemeral and its platform token
   * is the evidence, as Teleport does for these methods).
   */
  readonly rejoinOnRenew?: boolean;
  /** Evidence for the join request, bound to the request id and the new key. */
  evidence(ctx: EvidenceContext): Promise<Record<string, unknown>>;
  /**
   * Evidence answering an issuer challenge (methods with a challenge round). Sent in a new
   * join envelope with the same request id and key (join/exchange.ts runs the rounds).
   */
  respond?(challenge: JoinChallenge, ctx: EvidenceContext): Promise<Record<string, unknown>>;
  /**
   * Run one round's device work (evidence or answer, CSR and envelope signatures) as one
   * burst, e.g. on one TPM connection (keystore/tpm-access.ts TpmAccess.session). Never spans
   * the network wait.
   */
  session?<T>(fn: () => Promise<T>): Promise<T>;
}
