/**
 * `renew`: the agent presents its current chain (JWS x5c), signed by its current key, with a
 * CSR of a NEW key. Checks, in order, each with its own code:
 *   authenticateRequest (./authenticate.ts: envelope shape, chain to our CA, signature by the leaf)
 *   → the payload names that signer: instance id and certificate serial (signer_mismatch)
 *   → idempotent replay, only to the same signer (./respond.ts; request_id_conflict) of a known request id (answered even if the cert has since expired:
 *     a lost response must never lock anyone out)
 *   → judgeCurrentIdentity (./authenticate.ts: leaf expiry, timestamp freshness, instance and
 *     bot locks, generation: an older one locks the instance, unless a concurrent renewal of the
 *     same generation overtook this one while it was handled: then generation_mismatch alone)
 *   → new key differs from the current one (key_reused) → key_attestation, when sent, is checked by
 *     the instance's join method (its renewalKeyProof capability; bad_request for a method without
 *     one): tpm proves the new key is in the instance's TPM (attest/key-attestation.ts; certify_invalid,
 *     certify_key_mismatch, key_not_tpm_resident) → transport_csr, when sent, is a CSR of a key of
 *     its own (./transport-cert.ts) → the join method's renewal re-check, for methods with one
 *     (join/types.ts checkRenewal; x509: x509_revoked, which locks, x509_crl_unavailable) → continuous
 *     attestation, for instances whose join rule names firmware profiles (./attestation.ts, issue
 *     #16): the renewal's `attestation` (a quote bound to this request and its new key) judged
 *     against the rule's current profiles — a failure is recorded, audited with its PCR diff and
 *     refused after COMMIT (and locks the instance under on_attestation_failure: lock); without
 *     one, the max_attestation_age gate (attestation_required, attestation_stale) → issue
 *     generation+1, recorded tpm/non-exportable only with that proof, with a transport
 *     certificate when asked.
 *
 * One write transaction per renewal (issue #14): everything from the idempotent replay on is
 * read and decided inside it, each store row read once, so the generation decision is made under
 * the write lock by construction (a concurrent renewal of the same generation cannot produce a
 * second successor) and a replay re-check is the replay check. Only pure computation runs before
 * it: the CSR and transport CSR checks (signature verifies, kept out of the section every writer
 * waits for); their refusals are held and raised at their place in the order above.
 */
import { SigilError, toSigilError } from '../../errors.js';
import type { Jws } from '../../protocol/jws.js';
import { checkVersion, parseWith } from '../../protocol/messages.js';
import { renewRequestSchema, type RenewRequest } from '../../protocol/requests.js';
import { parseCsr, type ParsedCsr } from '../../pki/csr.js';
import type { KeyStorage } from '../../keystore/signer.js';
import type { IssuerContext } from '../issuer.js';
import { resolveBot } from '../policy/resources.js';
import type { InstanceRecord, TxStores } from '../store/types.js';
import {
  authenticateRequest,
  checkNamedSigner,
  judgeCurrentIdentity,
  signedBeforeSuccessor,
  staleGenerationError,
  staleLockReason,
  type OpHooks,
  type Presented,
} from './authenticate.js';
import { issueIdentity, spkiHash } from './issue.js';
import { recordAnswer, replayIfSeen, signedRequest, signResponse } from './respond.js';
import { auditRefusal } from './refusal.js';
import { checkTransportCsr } from './transport-cert.js';
import { renewalBinding } from '../../attest/binding.js';
import { attestRenewal, AuditedRefusal, countAttestationFailure } from './attestation.js';
import { agentFactsUpdate, type Carrier } from './agent-facts.js';
import { auditSystemLock } from './system-lock.js';

/** A check run early whose refusal is raised later, at its place in the order of checks. */
type Held<T> = { ok: true; value: T } | { ok: false; error: unknown };
function hold<T>(f: () => T): Held<T> {
  try {
    return { ok: true, value: f() };
  } catch (error) {
    return { ok: false, error };
  }
}
function take<T>(h: Held<T>): T {
  if (!h.ok) throw h.error;
  return h.value;
}

/**
 * What the renewal's transaction decided: an answer to sign, or a refusal to raise after COMMIT
 * (`audited`: its row committed with the transaction, an attestation failure's).
 */
type Decision = { answer: string; fresh: boolean } | { refusal: SigilError; audited?: { method: string } };

/**
 * The join method's renewal re-check (x509: the device certificate against the rule's current
 * CRLs). A device certificate revoked since enrolment locks the instance, in this transaction,
 * with a system `lock` row (review of issue #16): refusing only the renewal left its identity —
 * valid up to 24 h — off the CRL and still good for credentials and workload SVIDs. A lock puts
 * its certificates on the CRL, stops every other operation, and is lifted by `ctl unlock` (the
 * next renewal locks again while the CRL still lists the device). Other refusals (a stale CRL:
 * x509_crl_unavailable, retryable) only refuse. Returns the refusal to raise after COMMIT.
 */
async function deviceRevoked(
  ctx: IssuerContext,
  tx: TxStores,
  inst: InstanceRecord,
  now: number,
): Promise<SigilError | undefined> {
  try {
    await ctx.methods.checkRenewal(inst.joinMethod, inst.facts, tx, now);
    return undefined;
  } catch (err) {
    const e = toSigilError(err);
    if (e.code !== 'x509_revoked') throw e;
    const reason = 'x509_revoked: the device certificate was revoked after enrolment';
    await tx.instances.setLocked(inst.id, true, reason, now);
    await auditSystemLock(tx, inst, { reason, cause: 'x509_revoked', op: 'renew' }, now);
    return new SigilError(
      'x509_revoked',
      `${e.message}; instance ${inst.id} is now locked and its certificates are on the issuer's CRL (unlock with: sigil ctl --data-dir <issuer-data-dir> unlock ${inst.id}, once the device is re-enrolled or the revocation was a mistake)`,
    );
  }
}

export async function handleRenew(
  ctx: IssuerContext,
  body: unknown,
  remote: string | null,
  hooks?: OpHooks,
  /** The carrier the request came on (server/ops/table.ts), recorded for the fleet view. */
  carrier?: Carrier,
): Promise<Jws> {
  const started = process.hrtime.bigint();
  // The request's arrival on the issuer's clock: every time check below uses it.
  const now = ctx.now();
  let who: Presented | undefined;
  let req: RenewRequest | undefined;
  try {
    const auth = authenticateRequest(ctx, body, 'renewal', (w) => (who = w), hooks);
    const verified = auth.verified;
    checkVersion(verified.payload);
    req = parseWith(renewRequestSchema, verified.payload, 'bad_request', 'renew request');
    const r = req;
    checkNamedSigner(auth.who, r);
    const signed = signedRequest(auth.jws, verified.payloadBytes, r.request_id, {
      keyHash: auth.who.leaf.spkiHash,
      instanceId: auth.who.instanceId,
    });
    const currentSpki = Buffer.from(auth.who.leaf.fields.spki);
    const csrCheck = hold(() => parseCsr(r.csr, ctx.publicKeys));
    const transportCheck: Held<Buffer> | undefined =
      r.transport_csr === undefined || !csrCheck.ok
        ? undefined
        : hold(() => checkTransportCsr(r.transport_csr!, [csrCheck.value.spkiDer, currentSpki]));

    const decision = await ctx.stores.withWriteTx(async (tx): Promise<Decision> => {
      // Bound to its signer (./respond.ts); answered even if the certificate has since expired.
      const replay = await replayIfSeen(ctx, tx, signed);
      if (replay) return { answer: replay, fresh: false };
      const judged = await judgeCurrentIdentity(ctx, tx, auth.who, r.timestamp, now);
      if ('stale' in judged) {
        const { inst } = judged.stale;
        // Overtaken, not stale: the newer generation was issued while this request was being
        // handled (a concurrent renewal of the same generation, decided first under this same
        // write lock). Refused so that only one successor exists, but nothing was stolen: no lock.
        // (Before issue #14 an early read outside the transaction told the two cases apart.) With
        // several issuers, `updatedAt` is the other issuer's clock: a request signed before its
        // successor was issued (authenticate.ts signedBeforeSuccessor) is overtaken too, whatever
        // the clocks of the two issuers say (review of issue #16).
        if (
          (judged.stale.certRec.generation === inst.generation - 1 && inst.updatedAt >= now) ||
          (await signedBeforeSuccessor(tx, judged.stale, r.timestamp))
        )
          return {
            refusal: new SigilError('generation_mismatch', 'a concurrent renewal already advanced this instance'),
          };
        // Older than that: a stolen copy or a cloned machine. The lock commits with this
        // transaction; the refusal is raised after it.
        await tx.instances.setLocked(inst.id, true, staleLockReason(judged.stale), now);
        return { refusal: staleGenerationError(judged.stale) };
      }
      const { inst, certRec } = judged.current;

      const csr: ParsedCsr = take(csrCheck);
      if (spkiHash(csr.spkiDer) === auth.who.leaf.spkiHash)
        throw new SigilError('key_reused', 'the CSR carries the current key; renewal must rotate to a new key');
      // Only a proven claim counts: a renewal without key_attestation is a software, exportable key.
      let keyStorage: KeyStorage = 'software';
      let exportable = true;
      if (r.key_attestation !== undefined) {
        // The proof is the join method's to check (its `renewalKeyProof` capability): only it knows
        // what its join recorded to check against (tpm: the attestation key).
        const method = ctx.methods.get(inst.joinMethod)?.server;
        if (!method?.verifyRenewalKeyProof) {
          throw new SigilError(
            'bad_request',
            `key_attestation was sent, but instances joined with the ${inst.joinMethod} method have no renewal key proof (only methods with the renewalKeyProof capability: tpm)`,
          );
        }
        keyStorage = method.verifyRenewalKeyProof(r.key_attestation, inst.facts, csr.spkiDer, r.request_id).keyStorage;
        exportable = false;
      }
      const transportSpkiDer = transportCheck ? take(transportCheck) : undefined;
      // What the join relied on and can go bad since, re-checked by the join method (its
      // `checkRenewal` capability; x509: the device certificate against the rule's current CRLs).
      const revoked = await deviceRevoked(ctx, tx, inst, now);
      if (revoked) return { refusal: revoked };
      // Boot state re-proven (./attestation.ts): the quote is bound to this request and new key.
      const attested = await attestRenewal(
        ctx,
        tx,
        inst,
        r.attestation,
        () => renewalBinding(r.request_id, csr.spkiDer),
        {
          now,
          remote,
          requestId: r.request_id,
        },
      );
      if (!attested.ok) return { refusal: attested.refusal, audited: { method: inst.joinMethod } };
      // The fleet view's transport and agent version (./agent-facts.ts), recorded only when they
      // changed. They and a good attestation's facts are merged by the issue's own instance update
      // (issue.ts mergeFacts): one UPDATE of the row per renewal (issues #14, #16).
      const seen = agentFactsUpdate(inst.facts, { carrier, agentVersion: r.agent_version });
      const mergeFacts = attested.facts || seen ? { ...attested.facts, ...seen } : undefined;
      const bot = await resolveBot(tx, inst.bot);
      const { result, transportSerial } = await issueIdentity(ctx, tx, {
        op: 'renew',
        requestId: r.request_id,
        instanceId: inst.id,
        bot,
        spkiDer: csr.spkiDer,
        requestedTtlS: r.ttl_s,
        generation: inst.generation + 1,
        keyStorage,
        exportable,
        ...(transportSpkiDer ? { transportSpkiDer } : {}),
        ...(mergeFacts ? { mergeFacts } : {}),
      });
      const answer = await recordAnswer(ctx, tx, {
        op: 'renew',
        request: signed,
        result,
        now,
        audit: {
          bot: inst.bot,
          instanceId: inst.id,
          method: inst.joinMethod,
          remote,
          details: {
            serial: result.serial,
            previous_serial: certRec.serial,
            generation: result.generation,
            ttl_s: result.ttl_s,
            ttl_clamped: result.ttl_clamped,
            key_storage: keyStorage,
            exportable,
            ...(transportSerial ? { transport_serial: transportSerial } : {}),
            ...attested.details,
          },
        },
      });
      return { answer, fresh: true };
    });
    if ('refusal' in decision) {
      if (decision.audited) throw new AuditedRefusal(decision.refusal, decision.audited.method);
      throw decision.refusal;
    }
    if (decision.fresh) {
      // The presented identity was rotated away: its key and its leaf are not what the next
      // renewal presents (that one's came in this CSR and this answer). Dropped now, the caches
      // hold about one entry per live identity, not up to their bound (less old-generation heap
      // for the GC to mark; issue #14). Forgetting only costs a re-import or re-verify if the
      // old identity is presented again.
      ctx.publicKeys.forget(currentSpki);
      ctx.issuedLeaves.forget(auth.who.leafDer);
      ctx.metrics.renewals.inc({});
      ctx.metrics.issuance.observe(Number(process.hrtime.bigint() - started) / 1e9);
    }
    return signResponse(ctx, decision.answer);
  } catch (err) {
    if (err instanceof AuditedRefusal) {
      countAttestationFailure(ctx, 'renew', err.refusal, {
        method: err.method,
        bot: who?.bot ?? null,
        instanceId: who?.instanceId ?? null,
        remote,
      });
      throw err.refusal;
    }
    const e = toSigilError(err);
    await auditRefusal(ctx, 'renew', e, {
      bot: who?.bot ?? null,
      instanceId: who?.instanceId ?? null,
      remote,
      requestId: req?.request_id,
    });
    throw e;
  }
}
