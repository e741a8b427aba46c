/**
 * Continuous attestation on the issuer (issue #16; docs/continuous-attestation.md): what a
 * renewal (server/ops/renew.ts) and an interval attestation (server/ops/attest.ts) do with the
 * fresh boot-state evidence of an instance whose join rule names firmware profiles.
 *
 *   - the evidence is judged by the instance's join method (its `reattest` capability; tpm:
 *     join/tpm/reattest.ts) against what the join and the last accepted attestation recorded and
 *     against the rule's CURRENT profiles;
 *   - the verdict is recorded on the instance, in the same write transaction as the answer:
 *     facts.attestation (the last attestation, good or bad: time, via, profile, failed check,
 *     PCR diff, TPM counters) and, when good, facts.last_good_attestation_at plus the facts the
 *     method re-derived (PCR values, clock, counters). A renewal's good verdict is not written
 *     here: its facts ride on the renewal's own instance update (issue.ts → instances.recordIssue
 *     `mergeFacts`: one UPDATE of the row per renewal instead of two; issue #16's bench);
 *   - a failure applies the rule's on_attestation_failure: `refuse` (this request is refused; so is
 *     every later one until a quote matches again, and the instance's certificates are on the CRL
 *     meanwhile, server/crl/revoked.ts) or `lock` (the instance is locked in this transaction:
 *     `sigil ctl unlock` lifts it).
 *
 * The caller audits (the record in the row's details, the diff as `pcr_diff`: server/events
 * turns the row into the signed `attestation_failed` / `instance_locked` events) and raises the
 * refusal after COMMIT, so the record and the lock survive the refusal.
 */
import { isErrorCode, SigilError } from '../../errors.js';
import type { AttestationPolicy, PcrDiffEntry } from '../../join/types.js';
import type { IssuerContext } from '../issuer.js';
import type { InstanceRecord, TxStores } from '../store/types.js';
import { auditSystemLock } from './system-lock.js';

export { attestationBinding } from '../../attest/binding.js';
export type { AttestationPolicy, PcrDiffEntry };

export type AttestVia = 'join' | 'renew' | 'attest';

/** The last attestation of an instance, as facts.attestation holds it and audit rows carry it. */
export interface AttestationRecord {
  at: number;
  ok: boolean;
  via: AttestVia;
  profile: string | null;
  /** The failed check's code (a failure only). */
  check?: string;
  message?: string;
  diff?: PcrDiffEntry[];
  reset_count?: number;
  restart_count?: number;
  rebooted?: boolean;
  /** The failure locked the instance (rule policy `lock`); its certificates are listed as a lock's. */
  locked?: boolean;
}

/** Messages kept in facts and audit rows are capped: a diff of 24 SHA-512 PCRs is long enough. */
const MAX_RECORD_MESSAGE = 2000;

export type AttestationJudgement =
  | {
      ok: true;
      record: AttestationRecord;
      /** The verdict's facts: already written, unless the caller asked to write them itself (`deferGoodFacts`). */
      facts: Record<string, unknown>;
    }
  | { ok: false; record: AttestationRecord; refusal: SigilError; locked: boolean };

/** The instance's join-rule policy when it must attest (its method's `reattest` capability), else undefined. */
export function attestationPolicyOf(
  ctx: IssuerContext,
  tx: TxStores,
  inst: InstanceRecord,
  now: number,
): Promise<AttestationPolicy | undefined> {
  return ctx.methods.attestationPolicy(inst.joinMethod, inst.facts, tx, now);
}

/**
 * Inside the op's write tx: verify `evidence` through the instance's join method, record
 * facts.attestation (+ facts.last_good_attestation_at on success), apply the rule's
 * on_attestation_failure (refuse | lock: lock commits with tx), write nothing else. The caller
 * audits (details: {@link attestationAuditDetails}) and raises `refusal` after COMMIT.
 * `deferGoodFacts`: a good verdict's facts are returned (`facts`), not written: the caller writes
 * them in this transaction or nothing commits (a renewal: with its issue). A failure is always
 * written here: it must commit with the refusal.
 *
 * Throws (a plain refusal: nothing recorded, no policy) when the instance has nothing to attest,
 * when evidence is missing (`attestation_required`) or malformed, and when the rule's PCR
 * selection changed since the join (`pcr_selection_changed`): none of them is a verdict on the
 * machine's boot, and a rule edit must not lock a fleet.
 */
export async function judgeAttestation(
  ctx: IssuerContext,
  tx: TxStores,
  inst: InstanceRecord,
  evidence: unknown,
  binding: Buffer,
  now: number,
  via: 'renew' | 'attest',
  policy?: AttestationPolicy,
  deferGoodFacts = false,
): Promise<AttestationJudgement> {
  const p = policy ?? (await attestationPolicyOf(ctx, tx, inst, now));
  if (!p)
    throw new SigilError(
      'bad_request',
      `instance ${inst.id} has nothing to attest: its join rule names no firmware profile (or it joined before attestation records existed; it attests from its next join on)`,
    );
  if (evidence === undefined)
    throw new SigilError(
      'attestation_required',
      `join_rule ${p.rule} names firmware profiles: the ${via} request must carry a fresh attestation (an agent that joined before it learned the PCR selection must join again)`,
    );
  const v = await ctx.methods.reattest(
    inst.joinMethod,
    { evidence, instanceFacts: inst.facts, binding, now, policy: p },
    tx,
  );
  const seen = {
    ...(v.resetCount !== undefined ? { reset_count: v.resetCount } : {}),
    ...(v.restartCount !== undefined ? { restart_count: v.restartCount } : {}),
    ...(v.rebooted !== undefined ? { rebooted: v.rebooted } : {}),
  };
  if (v.ok) {
    const record: AttestationRecord = { at: now, ok: true, via, profile: v.profile, ...seen };
    const facts = { ...v.facts, attestation: record, last_good_attestation_at: now };
    if (!deferGoodFacts) await tx.instances.updateFacts(inst.id, facts, now);
    return { ok: true, record, facts };
  }
  const locked = p.onFailure === 'lock';
  const message = `${v.error.message}${v.diff ? `; PCR diff: ${diffText(v.diff)}` : ''}`;
  const record: AttestationRecord = {
    at: now,
    ok: false,
    via,
    profile: v.profile,
    check: v.error.code,
    message: message.slice(0, MAX_RECORD_MESSAGE),
    ...(v.diff ? { diff: v.diff } : {}),
    ...seen,
    ...(locked ? { locked: true } : {}),
  };
  await tx.instances.updateFacts(inst.id, { attestation: record }, now);
  if (locked)
    await tx.instances.setLocked(
      inst.id,
      true,
      `attestation failed (${v.error.code}) at ${via}: ${message}`.slice(0, 500),
      now,
    );
  const suffix = locked
    ? ` — join_rule ${p.rule} locks on attestation failure: instance ${inst.id} is locked (sigil ctl --data-dir <issuer-data-dir> unlock ${inst.id} once the boot is restored)`
    : ` — renewals are refused until a quote matches join_rule ${p.rule}'s firmware profiles again`;
  return { ok: false, record, refusal: new SigilError(v.error.code, message + suffix), locked };
}

/**
 * The gate of every operation that hands out credentials on the strength of an identity —
 * `credential` (JWT-SVIDs, SSH, database and Kubernetes certificates) and `workload` — besides
 * renewals: an instance whose latest attestation failed gets none until a quote matches again
 * (a renewal's, or an interval `attest`'s). Without it, a machine whose boot no longer matched
 * was refused renewal but kept obtaining bearer tokens and SSH certificates — which no CRL can
 * revoke — with its still-valid identity (review of issue #16). A failure that locked the
 * instance is refused earlier, as a lock. Refused with the failed check's code.
 */
export function checkAttestationStanding(inst: InstanceRecord, op: 'credential' | 'workload'): void {
  const last = inst.facts.attestation;
  if (!isRecord(last) || last.ok !== false) return;
  throw new SigilError(
    isErrorCode(last.check) ? last.check : 'attestation_required',
    `the last attestation of instance ${inst.id} failed${typeof last.check === 'string' ? ` (${last.check})` : ''}: no ${op === 'credential' ? 'credentials' : 'workload identities'} are issued to it until a fresh attestation matches its join rule's firmware profiles again (the next renewal's quote, or an interval attest)`,
  );
}

/**
 * A renewal's attestation step (server/ops/renew.ts), inside its write transaction: nothing for
 * an instance that need not attest; the age gate for a renewal without a quote
 * ({@link checkAttestationAge}, throws); otherwise {@link judgeAttestation}, and a failure is
 * audited here ({@link auditAttestationFailure}) so that it commits with the record and the lock.
 * `details`: what the renewal's audit row adds; `facts`: a good verdict's facts, NOT yet written —
 * the renewal merges them into the instance with its issue (issue.ts `mergeFacts`), so they commit
 * exactly when the renewal does.
 */
export async function attestRenewal(
  ctx: IssuerContext,
  tx: TxStores,
  inst: InstanceRecord,
  evidence: unknown,
  /** What the quote must be bound to; computed only when there is a quote to judge (two hashes per renewal less). */
  binding: () => Buffer,
  a: { now: number; remote: string | null; requestId: string },
): Promise<
  { ok: true; details: Record<string, unknown>; facts?: Record<string, unknown> } | { ok: false; refusal: SigilError }
> {
  const policy = await attestationPolicyOf(ctx, tx, inst, a.now);
  if (!policy) return { ok: true, details: {} };
  if (evidence === undefined) {
    checkAttestationAge(inst, policy, a.now);
    return { ok: true, details: {} };
  }
  const previous = inst.facts.attestation;
  const v = await judgeAttestation(ctx, tx, inst, evidence, binding(), a.now, 'renew', policy, true);
  if (v.ok) return { ok: true, details: attestationAuditDetails(v.record, previous), facts: v.facts };
  await auditAttestationFailure(tx, inst, v, { remote: a.remote, requestId: a.requestId, now: a.now, previous });
  return { ok: false, refusal: v.refusal };
}

/** `sha256:16 expected 0000… (or …) got 4f1c…` per PCR. */
export function diffText(diff: readonly PcrDiffEntry[]): string {
  return diff
    .map((d) => `${d.bank}:${d.pcr} expected ${d.expected.join(' or ') || '(nothing)'} got ${d.got || '(not quoted)'}`)
    .join('; ');
}

/** What a renewal or attestation audit row carries about it (server/events derives events from it). */
export function attestationAuditDetails(record: AttestationRecord, previous: unknown): Record<string, unknown> {
  const wasFailed = isRecord(previous) && previous.ok === false;
  return {
    attestation: record,
    ...(record.diff ? { pcr_diff: record.diff } : {}),
    ...(record.locked ? { locked: true } : {}),
    // A good attestation after a failed one takes the instance off the CRL (server/crl).
    ...(record.ok && wasFailed ? { attestation_recovered: true } : {}),
  };
}

/**
 * A renewal's attestation failure, audited in the transaction that recorded it: the refused row
 * (`message` and `pcr_diff`: what ../events/derive.ts puts in the attestation_failed event) and,
 * when the rule locks, a system `lock` row (what the CRL publisher and the instance_locked event
 * follow, ../crl/publisher.ts changesRevocation).
 */
export async function auditAttestationFailure(
  tx: TxStores,
  inst: InstanceRecord,
  v: { record: AttestationRecord; refusal: SigilError; locked: boolean },
  a: { remote: string | null; requestId: string; now: number; previous: unknown; op?: 'renew' | 'attest' },
): Promise<void> {
  const op = a.op ?? 'renew';
  await tx.audit.append(
    {
      action: op,
      outcome: 'refused',
      code: v.refusal.code,
      actor: 'agent',
      bot: inst.bot,
      instanceId: inst.id,
      method: inst.joinMethod,
      remote: a.remote,
      details: {
        message: v.refusal.message.slice(0, MAX_RECORD_MESSAGE),
        request_id: a.requestId,
        ...attestationAuditDetails(v.record, a.previous),
      },
    },
    a.now,
  );
  if (v.locked)
    await auditSystemLock(
      tx,
      inst,
      {
        reason: `attestation_failed: ${v.refusal.code} (${op})`,
        cause: 'attestation_failed',
        op,
        ...(v.record.diff ? { pcr_diff: v.record.diff } : {}),
      },
      a.now,
    );
}

/** A refusal whose audit row already committed with the record it refused (not audited a second time). */
export class AuditedRefusal extends Error {
  constructor(
    readonly refusal: SigilError,
    readonly method: string,
  ) {
    super(refusal.message);
  }
}

/** Metrics and the log line of a failure audited in its transaction (what auditRefusal does for the others). */
export function countAttestationFailure(
  ctx: IssuerContext,
  op: 'renew' | 'attest',
  e: SigilError,
  who: { method: string; bot: string | null; instanceId: string | null; remote: string | null },
): void {
  const { bot, instanceId, remote } = who;
  const method = ctx.methods.has(who.method) ? who.method : 'other';
  ctx.metrics.refusals.inc({ op, method, code: e.code });
  ctx.metrics.attestationFailures.inc({ check: isErrorCode(e.code) ? e.code : 'other', via: op });
  ctx.log.warn({ op, code: e.code, bot, instance: instanceId, remote }, `${op} refused: ${e.message}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/**
 * Renewal gate, for a renewal that carries no attestation of its own (one that does is judged by
 * {@link judgeAttestation} instead): allowed only when the rule has max_attestation_age and the
 * instance's last good attestation (an interval `attest`, or an earlier renewal) is at most that
 * old (`attestation_stale` otherwise) and its latest attestation did not fail (its check's code:
 * a `refuse`-mode failure stands until a quote matches again). Without max_attestation_age every
 * renewal must attest (`attestation_required`).
 */
export function checkAttestationAge(inst: InstanceRecord, policy: AttestationPolicy, now: number): void {
  const last = inst.facts.attestation;
  if (isRecord(last) && last.ok === false)
    throw new SigilError(
      isErrorCode(last.check) ? last.check : 'attestation_required',
      `the last attestation of instance ${inst.id} failed${typeof last.message === 'string' ? ` (${last.message})` : ''}: renewals need a fresh attestation that matches join_rule ${policy.rule}'s firmware profiles`,
    );
  if (policy.maxAgeMs === undefined)
    throw new SigilError(
      'attestation_required',
      `join_rule ${policy.rule} names firmware profiles and has no max_attestation_age: every renewal must carry a fresh attestation`,
    );
  const at = inst.facts.last_good_attestation_at;
  if (typeof at !== 'number' || now - at > policy.maxAgeMs)
    throw new SigilError(
      'attestation_stale',
      `the last good attestation of instance ${inst.id} is ${typeof at === 'number' ? `${Math.round((now - at) / 1000)} s old` : 'missing'}, join_rule ${policy.rule} allows ${Math.round(policy.maxAgeMs / 1000)} s: send a fresh attestation`,
    );
}
