/**
 * `renew`: the agent presents its current chain (JWS x5c), signed by its current key, with a
 * CSR of a NEW key. Checks, in order, each with its own code:
 *   authenticateRequest (./authenticate.ts: envelope shape, chain to our CA, signature by the leaf)
 *   → the payload names that signer: instance id and certificate serial (signer_mismatch)
 *   → idempotent replay, only to the same signer (./respond.ts; request_id_conflict) of a known request id (answered even if the cert has since expired:
 *     a lost response must never lock anyone out)
 *   → checkCurrentIdentity (./authenticate.ts: leaf expiry, timestamp freshness, instance and
 *     bot locks, generation: an older one locks the instance)
 *   → new key differs from the current one (key_reused) → key_attestation, when sent, is checked by
 *     the instance's join method (its renewalKeyProof capability; bad_request for a method without
 *     one): tpm proves the new key is in the instance's TPM (attest/key-attestation.ts; certify_invalid,
 *     certify_key_mismatch, key_not_tpm_resident) → transport_csr, when sent, is a CSR of a key of
 *     its own (./transport-cert.ts) → issue generation+1, recorded tpm/non-exportable only with
 *     that proof, with a transport certificate when asked.
 */
import { SigilError, toSigilError } from '../../errors.js';
import type { Jws } from '../../protocol/jws.js';
import { checkVersion, parseWith, renewRequestSchema, type RenewRequest } from '../../protocol/messages.js';
import { parseCsr } from '../../pki/csr.js';
import type { KeyStorage } from '../../keystore/signer.js';
import type { IssuerContext } from '../issuer.js';
import { resolveBot } from '../policy/resources.js';
import {
  authenticateRequest,
  checkCurrentIdentity,
  checkNamedSigner,
  type OpHooks,
  type Presented,
} from './authenticate.js';
import { issueIdentity, spkiHash } from './issue.js';
import { recordAnswer, replayIfSeen, signedRequest, signResponse } from './respond.js';
import { auditRefusal } from './refusal.js';
import { checkTransportCsr } from './transport-cert.js';

export async function handleRenew(
  ctx: IssuerContext,
  body: unknown,
  remote: string | null,
  hooks?: OpHooks,
): Promise<Jws> {
  const started = process.hrtime.bigint();
  let who: Presented | undefined;
  let req: RenewRequest | undefined;
  try {
    const auth = authenticateRequest(ctx, body, 'renewal', (w) => (who = w), hooks);
    const verified = auth.verified;
    checkVersion(verified.payload);
    req = parseWith(renewRequestSchema, verified.payload, 'bad_request', 'renew request');
    checkNamedSigner(auth.who, req);
    const signed = signedRequest(auth.jws, verified.payloadBytes, req.request_id, {
      keyHash: auth.who.leaf.spkiHash,
      instanceId: auth.who.instanceId,
    });

    const replay = await replayIfSeen(ctx.stores, signed);
    if (replay) return signResponse(ctx, replay);

    const now = ctx.now();
    const { inst, certRec } = await checkCurrentIdentity(ctx, auth.who, req.timestamp, now);

    const csr = parseCsr(req.csr);
    if (spkiHash(csr.spkiDer) === auth.who.leaf.spkiHash)
      throw new SigilError('key_reused', 'the CSR carries the current key; renewal must rotate to a new key');
    // Only a proven claim counts: a renewal without key_attestation is a software, exportable key.
    let keyStorage: KeyStorage = 'software';
    let exportable = true;
    if (req.key_attestation !== undefined) {
      // The proof is the join method's to check (its `renewalKeyProof` capability): only it knows
      // what its join recorded to check against (tpm: the attestation key).
      const method = ctx.methods.get(inst.joinMethod)?.server;
      if (!method?.verifyRenewalKeyProof) {
        throw new SigilError(
          'bad_request',
          `key_attestation was sent, but instances joined with the ${inst.joinMethod} method have no renewal key proof (only methods with the renewalKeyProof capability: tpm)`,
        );
      }
      keyStorage = method.verifyRenewalKeyProof(
        req.key_attestation,
        inst.facts,
        csr.spkiDer,
        req.request_id,
      ).keyStorage;
      exportable = false;
    }
    const currentSpki = Buffer.from(auth.who.leaf.fields.spki);
    const transportSpkiDer =
      req.transport_csr !== undefined ? checkTransportCsr(req.transport_csr, [csr.spkiDer, currentSpki]) : undefined;

    const bot = await resolveBot(ctx.stores, inst.bot);
    const r = req;
    const payload = await ctx.stores.withWriteTx(async (tx) => {
      const again = await replayIfSeen(tx, signed);
      if (again) return again;
      // Re-read under the write lock: a concurrent renewal of the same generation must not
      // produce two successors.
      const fresh = (await tx.instances.get(inst.id))!;
      if (fresh.generation !== certRec.generation)
        throw new SigilError('generation_mismatch', 'a concurrent renewal already advanced this instance');
      const { result, transportSerial } = await issueIdentity(ctx, tx, {
        op: 'renew',
        requestId: r.request_id,
        instanceId: inst.id,
        bot,
        spkiDer: csr.spkiDer,
        requestedTtlS: r.ttl_s,
        generation: fresh.generation + 1,
        keyStorage,
        exportable,
        ...(transportSpkiDer ? { transportSpkiDer } : {}),
      });
      return recordAnswer(ctx, tx, {
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
          },
        },
      });
    });
    ctx.metrics.renewals.inc({});
    ctx.metrics.issuance.observe(Number(process.hrtime.bigint() - started) / 1e9);
    return signResponse(ctx, payload);
  } catch (err) {
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
