/**
 * `attest` (issue #16; docs/attest-interval.md): a joined agent proves its boot state again on
 * an interval of its own, independent of renewal. Signed by its CURRENT identity key, like
 * `renew`. Checks, in order, each with its own code:
 *
 *   openIdentityRequest (./identity-request.ts: chain to our CA, signature by the leaf, payload
 *   shape, the payload names that signer: signer_mismatch)
 *   → idempotent replay of a known request id, only to the same signer (request_id_conflict)
 *   → judgeCurrentIdentity (expiry, clock ±skew: stale_request, instance and bot locks,
 *     generation: an older one locks the instance) — inside the write transaction, as renew
 *   → judgeAttestation (./attestation.ts): the instance's join method verifies the evidence, whose
 *     qualifying data must be attestationBinding('attest', request_id, SHA-256 of the signing
 *     leaf's SPKI) — so a quote replayed from an earlier request, or lifted from another
 *     identity's, fails — against the join rule's firmware profiles (pcr_mismatch, … with the
 *     PCR diff); it records facts.attestation (and last_good_attestation_at) and applies the
 *     rule's on_attestation_failure (refuse | lock).
 *
 * Everything judged is written in ONE transaction with its audit row: an accepted attestation
 * with its answer (kept for an idempotent replay); a failed one with a `refused` row naming the
 * check and carrying the record (the PCR diff: the source of the attestation_failed event,
 * ../events/derive.ts) and, when the rule locks, a `lock` row by `system` (which the CRL and the
 * instance_locked event follow). The refusal is raised after COMMIT. A refusal is not kept for
 * replay: the same request sent again is judged again (and, once locked, refused instance_locked).
 */
import { SigilError, toSigilError } from '../../errors.js';
import {
  attestBindingExtra,
  attestRequestSchema,
  type AttestRequest,
  type AttestResult,
} from '../../protocol/attest-messages.js';
import type { Jws } from '../../protocol/jws.js';
import type { IssuerContext } from '../issuer.js';
import type { InstanceRecord } from '../store/types.js';
import {
  attestationAuditDetails,
  attestationBinding,
  auditAttestationFailure,
  AuditedRefusal,
  countAttestationFailure,
  judgeAttestation,
  type AttestationRecord,
} from './attestation.js';
import {
  delayedRequestError,
  judgeCurrentIdentity,
  signedBeforeSuccessor,
  staleGenerationError,
  staleLockReason,
  type OpHooks,
} from './authenticate.js';
import { openIdentityRequest, type SeenRequest } from './identity-request.js';
import { auditRefusal } from './refusal.js';
import { recordAnswer, replayIfSeen, signResponse } from './respond.js';

/** What the transaction decided: an answer to sign, or a refusal to raise after COMMIT. */
type Decision =
  | { answer: string }
  | { refusal: SigilError; audited: false }
  | { refusal: SigilError; audited: true; inst: InstanceRecord };

export async function handleAttest(
  ctx: IssuerContext,
  body: unknown,
  remote: string | null,
  hooks?: OpHooks,
): Promise<Jws> {
  const now = ctx.now();
  const seen: SeenRequest<AttestRequest> = {};
  try {
    const { who, req, signed } = openIdentityRequest(ctx, body, {
      what: 'attest request',
      schema: attestRequestSchema,
      seen,
      hooks,
    });
    // Per instance, before any judging or writing (issuer.ts attestLimiter).
    const allowed = ctx.attestLimiter.take(who.instanceId);
    if (!allowed.ok)
      throw new SigilError(
        'rate_limited',
        `instance ${who.instanceId} sends attestations faster than one per 10 s; retry in ${Math.ceil(allowed.retryAfterMs / 1000)} s`,
        { retryAfterMs: allowed.retryAfterMs },
      );
    // The evidence must have been made for this request and this signing key (module comment).
    const binding = attestationBinding('attest', req.request_id, attestBindingExtra(Buffer.from(who.leaf.fields.spki)));

    const decision = await ctx.stores.withWriteTx(async (tx): Promise<Decision> => {
      const replay = await replayIfSeen(ctx, tx, signed);
      if (replay) return { answer: replay };
      const judged = await judgeCurrentIdentity(ctx, tx, who, req.timestamp, now);
      if ('stale' in judged) {
        // Delayed on its way, signed before the successor existed: refused, no lock (authenticate.ts).
        if (await signedBeforeSuccessor(tx, judged.stale, req.timestamp))
          return { refusal: delayedRequestError(judged.stale), audited: false };
        // A stolen copy or a cloned machine (authenticate.ts): the lock commits with this transaction.
        await tx.instances.setLocked(judged.stale.inst.id, true, staleLockReason(judged.stale), now);
        return { refusal: staleGenerationError(judged.stale), audited: false };
      }
      const { inst } = judged.current;
      const previous = inst.facts['attestation'];
      const verdict = await judgeAttestation(ctx, tx, inst, req.evidence, binding, now, 'attest');
      if (!verdict.ok) {
        // The refused row with the record and PCR diff (+ a `lock` row by system when the rule locks).
        await auditAttestationFailure(tx, inst, verdict, {
          remote,
          requestId: req.request_id,
          now,
          previous,
          op: 'attest',
        });
        return { refusal: verdict.refusal, audited: true, inst };
      }
      const result = attestResult(inst, verdict.record);
      const answer = await recordAnswer(ctx, tx, {
        op: 'attest',
        request: signed,
        result,
        now,
        audit: {
          bot: inst.bot,
          instanceId: inst.id,
          method: inst.joinMethod,
          remote,
          details: attestationAuditDetails(verdict.record, previous),
        },
      });
      return { answer };
    });
    if ('refusal' in decision) {
      if (decision.audited) {
        const { inst } = decision;
        countAttestationFailure(ctx, 'attest', decision.refusal, {
          method: inst.joinMethod,
          bot: inst.bot,
          instanceId: inst.id,
          remote,
        });
        // Already audited in the transaction that recorded it; not a second time below.
        throw new AuditedRefusal(decision.refusal, inst.joinMethod);
      }
      throw decision.refusal;
    }
    return signResponse(ctx, decision.answer);
  } catch (err) {
    if (err instanceof AuditedRefusal) throw err.refusal;
    const e = toSigilError(err);
    await auditRefusal(ctx, 'attest', e, {
      bot: seen.who?.bot ?? null,
      instanceId: seen.who?.instanceId ?? null,
      remote,
      requestId: seen.req?.request_id,
    });
    throw e;
  }
}

/** The answer: the record as the agent sees it (no diff: an accepted attestation has none). */
function attestResult(inst: InstanceRecord, r: AttestationRecord): AttestResult {
  return {
    instance_id: inst.id,
    ok: true,
    at: r.at,
    via: 'attest',
    profile: r.profile,
    ...(r.rebooted !== undefined ? { rebooted: r.rebooted } : {}),
  };
}
